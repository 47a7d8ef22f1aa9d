"""End to end on a tiny SynthFaces: train_teacher.py --method scn with injected label noise ->
label_noise.csv, the label report (JSON, plot, model card) -> test.py on the test and training
splits with per-image importance weights."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdface.data import synthfaces

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd, expect=0):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == expect, (
        f"{args[0]}: {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.mark.slow
def test_scn_with_label_noise_trains_reports_and_tests(tmp_path):
    data = tmp_path / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    model = tmp_path / "models" / "scn.keras"
    run_dir = tmp_path / "runs" / "scn"
    log = _run(ROOT / "train_teacher.py", "--method", "scn", "--dataset", "synthface", "--data-dir", data,
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
    log = _run(ROOT / "train_student.py", "--method", "scn", cwd=ROOT, expect=1)
    assert "python train_teacher.py --method scn" in log
