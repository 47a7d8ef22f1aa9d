"""End to end through the three CLIs on a tiny SynthFaces: teachers -> students -> test.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from kdface.data import synthfaces

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e")
    data = work / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    common = ["--dataset", "synthface", "--data-dir", data, "--tfds-dir", work / "tfds", "--image-size", "32",
              "--batch-size", "8", "--epochs", "1"]  # fmt: skip
    models = work / "models"
    for teacher in ("tough", "tolerant"):
        # MobileNetV2 teachers: the plumbing is what is tested here; tracing EfficientNet-B3's
        # training step alone takes about a minute on 2 cores (its build is tested elsewhere).
        _run(ROOT / "train_teacher.py", "--method", "kdloss", "--teacher", teacher, *common, "--asm-fit-epochs", "1",
             "--teacher-backbone", "mobilenet_v2",
             "--out", models / f"{teacher}.keras", "--run-dir", work / "runs" / teacher, cwd=work)  # fmt: skip
    _run(ROOT / "train_student.py", "--method", "kdloss", "--tough", models / "tough.keras", "--tolerant",
         models / "tolerant.keras", *common, "--out", models / "kd.keras", "--run-dir", work / "runs" / "kd", cwd=work)  # fmt: skip
    _run(ROOT / "train_student.py", "--no-kd", *common, "--out", models / "no_kd.keras", "--run-dir",
         work / "runs" / "no_kd", cwd=work)  # fmt: skip
    return work, data, models


@pytest.mark.slow
def test_training_writes_models_cards_and_runs(trained):
    work, _, models = trained
    for name in ("tough", "tolerant", "kd", "no_kd"):
        assert (models / f"{name}.keras").exists()
        card = json.loads((models / f"{name}.json").read_text())
        assert card["num_points"] == 68 and card["image_size"] == 32 and card["task"] == "landmarks"
        run = work / "runs" / name
        assert (
            (run / "history.csv").exists()
            and (run / "config.json").exists()
            and (run / "tensorboard").is_dir()
        )
    assert (models / "tolerant.asm.npz").exists() and (work / "runs" / "tolerant" / "asm.npz").exists()
    history = (work / "runs" / "kd" / "history.csv").read_text().splitlines()
    assert {"aloss_tough", "aloss_tolerant", "main", "val_nme"} <= set(history[0].split(","))
    # the demo preset caches the teachers' outputs (no augmentation), on disk in the run directory
    assert len(list((work / "runs" / "kd" / "teacher_cache").glob("teachers-*.npz"))) == 1
    # the saved student is the plain network: loads without kdface objects, predicts landmarks
    student = keras.saving.load_model(models / "kd.keras")
    assert student.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape == (2, 136)


@pytest.mark.slow
def test_test_cli_reports_every_split(trained):
    work, data, models = trained
    out = work / "eval"
    printed = _run(ROOT / "test.py", "--model", models / "kd.keras", "--model", models / "no_kd.keras",
                   "--data-dir", data, "--tfds-dir", work / "tfds", "--out", out, cwd=work)  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    for name in ("kd", "no_kd"):
        assert set(report[name]["splits"]) == {"common", "challenging", "full"}
        for summary in report[name]["splits"].values():
            assert np.isfinite(summary["nme"]) and 0 <= summary["fr"] <= 100 and 0 <= summary["auc"] <= 1
    assert "NME" in printed
    markdown = (out / "report.md").read_text()
    assert "| model" in markdown.lower() or "model |" in markdown.lower()
    assert (out / "ced.png").stat().st_size > 0 and (out / "overlays_kd_common.png").exists()


@pytest.mark.slow
def test_photo_mode_detects_the_astronaut(trained, tmp_path):
    from skimage import data as skdata

    work, _, models = trained
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    _run(
        ROOT / "test.py",
        "--model",
        models / "kd.keras",
        "--image",
        photo,
        "--out",
        tmp_path / "photo",
        cwd=work,
    )
    result = json.loads((tmp_path / "photo" / "astronaut_landmarks.json").read_text())
    assert len(result["faces"]) >= 1
    assert np.asarray(result["faces"][0]["landmarks"]).shape == (68, 2)
    assert (tmp_path / "photo" / "astronaut_landmarks.png").exists()
