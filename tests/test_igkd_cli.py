"""End to end on a tiny SynthFaces: train_teacher.py --method fer --masked-view (the occlusion
baseline) and train_student.py --method igkd -> test.py on the test and occluded splits ->
kdface.predict_expressions and photo mode."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_script

import kdface
from kdface.data import synthfaces

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("igkd_e2e")
    data = work / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    common = ["--dataset", "synthface", "--data-dir", data, "--tfds-dir", work / "tfds", "--batch-size", "8",
              "--epochs", "1", "--val-fraction", "0.2"]  # fmt: skip
    models = work / "models"
    # the plain classifier at 32 px (quick; it has no fusion conv needing a 3 x 3 map), IGKD at 96
    run_script(ROOT / "train_teacher.py", "--method", "fer", "--masked-view", *common, "--image-size", "32",
         "--out", models / "baseline.keras", "--run-dir", work / "runs" / "baseline", cwd=work)  # fmt: skip
    log = run_script(ROOT / "train_student.py", "--method", "igkd", *common, "--image-size", "96", "--out", models / "igkd.keras",
               "--run-dir", work / "runs" / "igkd", cwd=work)  # fmt: skip
    return work, data, models, log


@pytest.mark.slow
def test_igkd_trains_and_saves_the_clean_student_with_its_class_names(trained):
    work, _, models, log = trained
    for term in ("baseline", "fd", "rd", "knowledge_learning", "knowledge_feedback", "teacher_accuracy"):
        assert f"{term}:" in log  # every term is logged per epoch
    card = json.loads((models / "igkd.json").read_text())
    assert card["task"] == "expressions" and card["method"] == "igkd"
    assert card["class_names"] == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert card["image_size"] == 96 and card["resize_size"] == 110
    history = (work / "runs" / "igkd" / "history.csv").read_text().splitlines()
    assert len(history) == 2 and "val_accuracy" in history[0]
    # the saved model is the student alone: images in, 7 probabilities out
    import keras

    model = keras.saving.load_model(models / "igkd.keras", safe_mode=True)
    assert model.input_shape == (None, 96, 96, 3) and model.output_shape == (None, 7)
    assert not any(v.path.startswith(("teacher", "classifier_t", "classifier_s1")) for v in model.weights)


@pytest.mark.slow
def test_test_cli_reports_accuracy_per_class_and_confusion(trained):
    work, data, models, _ = trained
    out = work / "test"
    run_script(ROOT / "test.py", "--model", models / "baseline.keras", "--model", models / "igkd.keras", "--data-dir", data,
         "--tfds-dir", work / "tfds", "--out", out, cwd=work)  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    occluded_list = (data / "rafdb" / "rafdb_occlusion_list.txt").read_bytes().count(b"\r\n")
    for name in ("baseline", "igkd"):
        splits = report[name]["splits"]
        assert set(splits) == {"test", "occluded"}
        assert splits["test"]["count"] == 12 and splits["occluded"]["count"] == occluded_list
        assert 0 <= splits["test"]["accuracy"] <= 100
        assert np.array(splits["test"]["confusion"]).sum() == 12
        assert (out / f"confusion_{name}_occluded.png").stat().st_size > 1000
        rows = (out / f"predictions_{name}_test.csv").read_text().splitlines()
        assert rows[0].startswith("key,label,predicted,p_surprise") and len(rows) == 13
    assert "Mean class acc. %" in (out / "report.md").read_text()


@pytest.mark.slow
def test_predict_expressions_and_photo_mode(trained, tmp_path):
    work, data, models, _ = trained
    face = cv2.cvtColor(
        cv2.imread(str(data / "rafdb/Image/aligned/test_0001_aligned.jpg")), cv2.COLOR_BGR2RGB
    )
    results = kdface.predict_expressions(models / "igkd.keras", [face, face[10:90, 5:95]])
    assert len(results) == 2 and results[0]["expression"] in results[0]["probabilities"]
    assert abs(sum(results[0]["probabilities"].values()) - 1) < 1e-4
    from skimage import data as samples

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(samples.astronaut(), cv2.COLOR_RGB2BGR))
    from kdface.tasks.expressions.evaluation import (
        predict_photo,  # what test.py --image runs (in-process: faster)
    )

    predict_photo(models / "igkd.keras", photo, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "astronaut_expressions.json").read_text())
    assert len(result["faces"]) == 1 and (tmp_path / "out" / "astronaut_expressions.png").exists()
    assert result["faces"][0]["expression"] in result["faces"][0]["probabilities"]


def test_roles_a_method_does_not_have_are_explained():
    log = run_script(ROOT / "train_teacher.py", "--method", "igkd", cwd=ROOT, expect=2)
    assert "trains its teacher jointly" in log
