"""Models and cards saved before the task layer (kdface at 218004f) still load and evaluate with test.py.

The models are built here in the old shapes (a nested backbone with *list* outputs, unpacked by
position; SCN's ``importance`` layer) and saved with cards in the old format, field for field: no
``per_image_output`` (SCN), and a landmark card without ``task`` (the first kdface cards). test.py
must pick the task, crop, class names and per-image output from them as before.
"""

import csv
import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from kdface.data import synthfaces

SIZE = 32
_spec = importlib.util.spec_from_file_location(
    "kdface_test_cli", Path(__file__).resolve().parents[1] / "test.py"
)
test_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_cli)


def _old_backbone(name):
    """The old contract: ``[layer-4 map, pooled]``, taken by position."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", name="conv1")(inputs)
    x = keras.layers.Identity(name="features")(x)
    return keras.Model(inputs, [x, keras.layers.GlobalAveragePooling2D(name="pool")(x)], name=name)


def _expression_model(scn: bool):
    images = keras.Input((SIZE, SIZE, 3), name="image")
    _, pooled = _old_backbone("resnet18")(images)
    logits = keras.layers.Dense(7, name="classifier")(pooled)
    if scn:
        importance = keras.layers.Dense(1, activation="sigmoid", name="importance")(pooled)
        logits = keras.layers.Multiply(name="weighted_logits")([importance, logits])
    return keras.Model(
        images, keras.layers.Softmax(name="probabilities")(logits), name="scn" if scn else "fer"
    )


def _landmark_model():
    images = keras.Input((SIZE, SIZE, 3), name="image")
    _, pooled = _old_backbone("mobilenetv2_1.00_32")(images)
    return keras.Model(images, keras.layers.Dense(136, name="landmarks")(pooled), name="student")


CLASS_NAMES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
EXPRESSION_CARD = {  # what kdface.methods.fer.expression_card wrote at 218004f
    "task": "expressions", "dataset": "synthface", "class_names": CLASS_NAMES, "num_classes": 7,
    "image_size": SIZE, "resize_size": 37, "train_class_counts": [3] * 7,
    "config": {"dataset": "synthface", "image_size": SIZE, "augment_style": "igkd"}, "train_seconds": 1.0,
    "run_dir": "runs/x",
}  # fmt: skip
LANDMARK_CARD = {  # kdface.methods.kdloss.model_card, minus "task" (the first cards had none)
    "method": "kdloss", "role": "student_kd", "dataset": "synthface", "num_points": 68, "normaliser": [36, 45],
    "image_size": SIZE, "crop": {"pad_px": 0.0, "pad_frac": 0.08, "union_dataset_box": False},
    "config": {"dataset": "synthface", "image_size": SIZE}, "train_seconds": 1.0,
}  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    work = tmp_path_factory.mktemp("legacy")
    synthfaces.generate(work / "data", synthfaces.SynthFacesConfig.tiny())
    keras.utils.set_random_seed(0)
    models = {
        "fer": (_expression_model(scn=False), {"method": "fer", "role": "classifier", **EXPRESSION_CARD}),
        "scn": (
            _expression_model(scn=True),
            {"method": "scn", "role": "classifier", **EXPRESSION_CARD, "label_report": {"samples": 10}},
        ),  # fmt: skip
        "kd": (_landmark_model(), LANDMARK_CARD),
    }
    for name, (model, card) in models.items():
        model.save(work / f"{name}.keras")
        (work / f"{name}.json").write_text(json.dumps(card))
    return work


def _test(work, *args):
    test_cli.main(["--data-dir", str(work / "data"), "--tfds-dir", str(work / "tfds"), *map(str, args)])


@pytest.mark.slow
def test_old_expression_models_evaluate_with_their_per_image_output(saved):
    out = saved / "expression_report"
    _test(
        saved, "--model", saved / "fer.keras", "--model", saved / "scn.keras", "--split", "test", "--out", out
    )
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"fer", "scn"} and report["fer"]["class_names"] == CLASS_NAMES
    assert 0 < report["scn"]["splits"]["test"]["importance"]["mean"] < 1  # the legacy layer name
    assert "importance" not in report["fer"]["splits"]["test"]
    rows = list(csv.DictReader((out / "predictions_scn_test.csv").open()))
    assert rows and 0 < float(rows[0]["importance"]) < 1
    assert "Mean importance" in (out / "report.md").read_text()


@pytest.mark.slow
def test_an_old_landmark_card_without_a_task_evaluates_as_landmarks(saved):
    out = saved / "landmark_report"
    _test(saved, "--model", saved / "kd.keras", "--split", "common", "--out", out)
    report = json.loads((out / "report.json").read_text())
    assert report["kd"]["normaliser"] == [36, 45] and np.isfinite(report["kd"]["splits"]["common"]["nme"])
