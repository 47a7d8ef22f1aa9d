"""End to end on a tiny SynthFaces: train_teacher.py --method scn with injected label noise ->
label_noise.csv, the label report (JSON, plot, model card) -> test.py on the test and training
splits with per-image importance weights."""

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import run_script

from kdface.data import synthfaces

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_scn_with_label_noise_trains_reports_and_tests(tmp_path):
    data = tmp_path / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    model = tmp_path / "models" / "scn.keras"
    run_dir = tmp_path / "runs" / "scn"
    log = run_script(ROOT / "train_teacher.py", "--method", "scn", "--dataset", "synthface", "--data-dir", data,
               "--tfds-dir", tmp_path / "tfds", "--batch-size", "8", "--epochs", "2", "--image-size", "32",
               "--val-fraction", "0.2", "--label-noise", "0.3", "--relabel-epoch", "2", "--margin", "0.3",
               "--out", model, "--run-dir", run_dir, cwd=tmp_path)  # fmt: skip
    # 19 training samples after the 20 % validation hold-out: round(0.3 * 19) = 6 flipped
    assert "label noise: 6 of 19 training labels replaced" in log
    for term in ("weighted_ce:", "rank_regularization:", "importance:", "importance_gap:", "relabels:"):
        assert term in log
    rows = list(csv.DictReader((run_dir / "label_noise.csv").open()))
    assert len(rows) == 19 and sum(int(r["flipped"]) for r in rows) == 6
    assert all((r["original"] != r["noisy"]) == (r["flipped"] == "1") for r in rows)
    report = json.loads((run_dir / "label_report.json").read_text())
    assert report["samples"] == 19 and report["flipped"] == 6
    assert report["importance_clean"]["count"] == 13 and 0 < report["importance_clean"]["mean"] < 1
    assert (run_dir / "label_report.png").stat().st_size > 1000
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["method"] == "scn" and card["task"] == "expressions"
    assert card["label_noise"] == {"fraction": 0.3, "seed": 0, "flipped": 6, "samples": 19}
    assert card["label_report"] == report
    assert card["config"]["relabel_scope"] == "all" and card["config"]["augment_style"] == "scn"

    # test.py, in-process (faster than a second subprocess; loaded by path: "test" is also a stdlib package)
    spec = importlib.util.spec_from_file_location("kdface_test_cli", ROOT / "test.py")
    test_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_cli)

    out = tmp_path / "test"
    test_cli.main(["--model", str(model), "--data-dir", str(data), "--tfds-dir", str(tmp_path / "tfds"),
                   "--split", "test", "--split", "train", "--out", str(out)])  # fmt: skip
    result = json.loads((out / "report.json").read_text())["scn"]["splits"]
    assert result["test"]["count"] == 12 and result["train"]["count"] == 24
    assert 0 < result["test"]["importance"]["mean"] < 1
    rows = list(csv.DictReader((out / "predictions_scn_train.csv").open()))
    assert len(rows) == 24 and "importance" in rows[0]
    weights = np.array([float(r["importance"]) for r in rows])
    assert np.all((weights > 0) & (weights < 1))
    assert (out / "importance_scn_test.png").stat().st_size > 1000
    assert "Mean importance" in (out / "report.md").read_text()


def test_scn_has_no_student():
    log = run_script(ROOT / "train_student.py", "--method", "scn", cwd=ROOT, expect=2)
    assert "python train_teacher.py --method scn" in log


@pytest.mark.slow
def test_scn_training_on_raf_db_errors_on_or_skips_a_bad_image(tmp_path, capsys, monkeypatch):
    """SCN on RAF-DB in its own layout (list_patition_label.txt) with a truncated training image:
    stops naming the file and the label line (exit 2), or under --on-bad-sample skip trains on the
    rest and lists it (in-process through the CLI entry point)."""
    from fer_fixtures import rafdb_samples, write_rafdb_scn

    from kdface.cli import training_main

    data = tmp_path / "raf"
    write_rafdb_scn(data, rafdb_samples(n_train=12, n_test=2))
    victim = data / "Image/aligned/train_00003_aligned.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    monkeypatch.chdir(tmp_path)
    argv = ["--method", "scn", "--dataset", "raf-db", "--data-dir", str(data), "--tfds-dir", str(tmp_path / "tfds"),
            "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--val-fraction", "0", "--label-noise", "0.25"]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        training_main(
            "teacher", "", argv + ["--out", str(tmp_path / "a.keras"), "--run-dir", str(tmp_path / "a")]
        )
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "list_patition_label.txt:3 -> " in last and victim.name in last, (
        last
    )
    training_main("teacher", "", argv + ["--out", str(tmp_path / "b.keras"), "--run-dir", str(tmp_path / "b"),
                                         "--on-bad-sample", "skip"])  # fmt: skip
    out = capsys.readouterr().out
    assert "label noise: 3 of 11 training labels replaced" in out  # 12 - 1 skipped; round(2.75)
    listing = json.loads((tmp_path / "b" / "skipped_samples.json").read_text())
    assert listing["count"] == 1 and victim.name in listing["skipped"][0]["path"]
    assert json.loads((tmp_path / "b.json").read_text())["label_report"]["samples"] == 11
