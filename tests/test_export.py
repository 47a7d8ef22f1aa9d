"""``python -m kdface.export`` on tiny models trained for a moment on a tiny SynthFaces: LiteRT (float32,
float16, int8, int8 with uint8 I/O) and SavedModel exports match the Keras model within the targets,
the .tflite files hold builtin ops only and run on ``ai_edge_litert``, ``test.py`` (reports and photo
mode) takes a .tflite like a .keras, and mistakes end with one ``error:`` line."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from kdface import export
from kdface.data import synthfaces
from kdface.errors import RunError
from kdface.io.litert import LiteRTModel, flex_operators
from kdface.tasks.expressions.labels import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
CROP = {"pad_px": 0.0, "pad_frac": 0.08, "union_dataset_box": False}
CARDS = {
    "landmark": {"task": "landmarks", "dataset": "synthface", "num_points": 68, "normaliser": [36, 45],
                 "image_size": SIZE, "crop": CROP},
    "expression": {"task": "expressions", "dataset": "synthface", "class_names": list(CLASS_NAMES[:7]),
                   "num_classes": 7, "image_size": SIZE, "per_image_output": "importance"},
    # no recognition task yet: any other output is compared by cosine similarity
    "embedding": {"task": "recognition", "dataset": "synthface", "image_size": SIZE},
}  # fmt: skip


def _features(images):
    # MobileNetV2's Conv-BN-ReLU6 blocks (ReLU6 bounds activations, which int8 quantisation needs: with plain
    # ReLU this toy network's int8 landmark NME moved by 0.6 points)
    x = images
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU(max_value=6.0)(x)
    return keras.layers.GlobalAveragePooling2D()(x)


def _build(kind: str) -> keras.Model:
    """Small Functional models with the outputs of kdface's deployable models: landmarks (B, 136);
    SCN-like probabilities with a per-image ``importance`` layer; an L2-normalised embedding."""
    images = keras.Input((SIZE, SIZE, 3), name="image")
    features = _features(images)
    if kind == "landmark":
        return keras.Model(images, keras.layers.Dense(136, name="landmarks")(features))
    if kind == "expression":
        importance = keras.layers.Dense(1, activation="sigmoid", name="importance")(features)
        logits = keras.layers.Multiply()([importance, keras.layers.Dense(7, name="classifier")(features)])
        return keras.Model(images, keras.layers.Softmax(name="probabilities")(logits))
    return keras.Model(images, keras.layers.UnitNormalization()(keras.layers.Dense(16)(features)))


def _train(model, kind: str, data, tfds):
    """A few epochs on the training split, so outputs are not those of a random network."""
    if kind == "landmark":
        from kdface.tasks.landmarks.pipeline import CropConfig, landmark_dataset
        from kdface.tasks.landmarks.sources import load_landmark_split

        source = load_landmark_split("synthface", "train", data, tfds)
        ds = landmark_dataset(
            source.dataset, image_size=SIZE, batch_size=8, crop=CropConfig(**CROP), cache=True
        )
        model.compile(keras.optimizers.Adam(3e-3), "mse")
    else:
        from kdface.tasks.expressions.pipeline import expression_dataset
        from kdface.tasks.expressions.sources import load_expression_split

        source = load_expression_split("synthface", "train", data, tfds)
        ds = expression_dataset(source.dataset, image_size=SIZE, batch_size=8, cache=True)
        model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(ds, epochs=40, verbose=0, shuffle=False)  # the cached pass, in its order


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data, tfds = root / "synthfaces", root / "tfds"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    keras.utils.set_random_seed(0)
    for kind, card in CARDS.items():
        model = _build(kind)
        if kind != "embedding":
            _train(model, kind, data, tfds)
        model.save(root / f"{kind}.keras")
        (root / f"{kind}.json").write_text(json.dumps(card))
    return root


@pytest.fixture(scope="module")
def exported(work):
    """``exported(kind, quantize, **options)`` -> the export record, each export done once."""
    done = {}

    def run(kind, quantize="none", fmt="litert", **options):
        key = (kind, quantize, fmt, tuple(sorted(options.items())))
        if key not in done:
            tag = "_".join([quantize, fmt, *(k for k, v in sorted(options.items()) if v is True)])
            out = work / "exports" / (f"{kind}_{tag}" + (".tflite" if fmt == "litert" else ""))
            done[key] = export.export_model(
                work / f"{kind}.keras", format=fmt, quantize=quantize, out=str(out), data_dir=str(work / "synthfaces"),
                tfds_dir=str(work / "tfds"), latency_runs=0, **options,
            )  # fmt: skip
        return done[key]

    return run


def _random_images(n=5, seed=1):
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), dtype=np.float32)


@pytest.mark.parametrize("kind", ["landmark", "expression"])
def test_float32_litert_matches_keras(work, exported, kind):
    record = exported(kind)
    comparison = record["comparison"]
    assert comparison["count"] > 0 and comparison["max_abs_diff"] < 1e-4 and comparison["target_met"]
    assert comparison["metric"] == {"landmark": "nme", "expression": "accuracy"}[kind]
    keras_model = keras.saving.load_model(work / f"{kind}.keras")
    litert = LiteRTModel(record["out"])
    x = _random_images()
    assert litert.input_shape == keras_model.input_shape and litert.output_shape == keras_model.output_shape
    np.testing.assert_allclose(litert.predict_on_batch(x), keras_model.predict_on_batch(x), atol=1e-4)
    np.testing.assert_allclose(litert.predict_on_batch(x[:1]), keras_model.predict_on_batch(x[:1]), atol=1e-4)
    card = json.loads(Path(record["out"]).with_suffix(".json").read_text())
    assert card == CARDS[kind]  # the card copy test.py reads beside the .tflite
    written = json.loads(Path(record["out"]).with_suffix(".export.json").read_text())
    assert written["comparison"] == comparison and written["builtin_ops_only"]


def test_scn_like_model_exports_its_per_image_output(work, exported):
    model = LiteRTModel(exported("expression")["out"])
    assert model.output_names == ["importance", "output_0"] and [layer.name for layer in model.layers] == [
        "importance"
    ]
    keras_model = keras.saving.load_model(work / "expression.keras")
    both = keras.Model(keras_model.input, [keras_model.output, keras_model.get_layer("importance").output])
    x = _random_images()
    for ours, theirs in zip(
        model.with_output("importance").predict_on_batch(x), both.predict_on_batch(x), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert model.predict_on_batch(x).shape == (5, 7)  # the view above leaves the model itself alone


def test_float16_halves_the_weights_and_stays_close(exported):
    float32, float16 = exported("landmark"), exported("landmark", "float16")
    assert float16["size_bytes"] < 0.7 * float32["size_bytes"]
    assert float16["comparison"]["max_abs_diff"] < 1e-2 and float16["comparison"]["target_met"]


@pytest.mark.parametrize("kind", ["landmark", "expression", "embedding"])
def test_int8_meets_the_targets(exported, kind):
    record = exported(kind, "int8", calibration_count=16)
    comparison = record["comparison"]
    assert record["calibration"]["count"] == 16 and record["calibration"]["split"] == "train"
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(record["operators"])  # full-integer inside, float32 at the edges
    assert comparison["target_met"], comparison
    if kind == "landmark":
        assert abs(comparison["nme_exported"] - comparison["nme_keras"]) <= 0.1
    elif kind == "expression":
        assert abs(comparison["accuracy_exported"] - comparison["accuracy_keras"]) <= 1.0
        assert comparison["argmax_agreement"] >= 90
    else:
        assert comparison["metric"] == "cosine" and comparison["cosine_mean"] >= 0.99
    model = LiteRTModel(record["out"])
    assert model.input_details["dtype"] == np.float32 and model.output_details()["dtype"] == np.float32


def test_int8_with_uint8_io(exported):
    record = exported("landmark", "int8", calibration_count=16, uint8_io=True)
    model = LiteRTModel(record["out"])
    assert model.input_details["dtype"] == np.uint8 and model.output_details()["dtype"] == np.uint8
    assert record["input"].startswith("uint8, real = (q - ")
    assert record["comparison"]["target_met"]  # the adapter quantises [0, 1] inputs with the file's scale


def test_exports_hold_builtin_ops_only(exported):
    for record in (exported("landmark"), exported("landmark", "float16"), exported("expression", "int8",
                                                                                    calibration_count=16)):  # fmt: skip
        content = Path(record["out"]).read_bytes()
        assert flex_operators(content) == [] and record["builtin_ops_only"]
        # ai_edge_litert ships no Flex delegate: loading and running is the check that none is needed
        assert np.isfinite(LiteRTModel(record["out"]).predict_on_batch(_random_images(2))).all()


@pytest.mark.parametrize("kind", ["landmark", "expression"])  # the SCN-like one has two outputs
def test_saved_model_export_matches_keras(exported, kind):
    record = exported(kind, fmt="saved_model")
    out = Path(record["out"])
    assert (out / "saved_model.pb").is_file() and record["comparison"]["max_abs_diff"] < 1e-5
    assert json.loads(out.with_suffix(".json").read_text()) == CARDS[kind]


def test_conversion_refuses_ops_without_a_builtin_kernel(tmp_path):
    class Erfinv(keras.layers.Layer):
        def call(self, x):
            return keras.ops.erfinv(x)

    images = keras.Input((8, 8, 3))
    model = keras.Model(images, Erfinv()(keras.layers.GlobalAveragePooling2D()(images)))
    with pytest.raises(RunError, match="builtin ops only.*Erfinv"):
        export.convert_litert(model, tmp_path / "x.tflite", "none")
    assert not list(tmp_path.iterdir())  # nothing half-written


def _test_cli():
    # loaded by path: "test" is also a stdlib package
    spec = importlib.util.spec_from_file_location("kdface_test_cli", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(tree):
    return {k: _keys(v) for k, v in tree.items()} if isinstance(tree, dict) else "value"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["landmark", "expression"])
def test_test_py_reports_a_tflite_like_its_keras(work, exported, kind, tmp_path):
    tflite = Path(exported(kind, "int8", calibration_count=16)["out"])
    reports = {}
    for model in (work / f"{kind}.keras", tflite):
        out = tmp_path / model.suffix[1:]
        _test_cli().main(["--model", str(model), "--data-dir", str(work / "synthfaces"),
                          "--tfds-dir", str(work / "tfds"), "--out", str(out)])  # fmt: skip
        (report,) = json.loads((out / "report.json").read_text()).values()
        reports[model.suffix] = report
        assert sorted(p.name.replace(model.stem, "M") for p in out.iterdir()) == sorted(
            p.name.replace(kind, "M") for p in (tmp_path / "keras").iterdir()
        )  # the same files
    keras_report, tflite_report = reports[".keras"], reports[".tflite"]
    keras_report.pop("model"), tflite_report.pop("model")
    assert _keys(tflite_report) == _keys(keras_report)
    if kind == "expression":
        assert set(tflite_report["splits"]["test"]["importance"]) == {"mean", "mean_correct", "mean_wrong"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["landmark", "expression"])
def test_photo_mode_on_a_tflite(work, exported, kind, tmp_path):
    import cv2
    from skimage import data as skdata

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    tflite = exported(kind)["out"]
    results = {}
    for model in (work / f"{kind}.keras", tflite):
        _test_cli().main(
            ["--model", str(model), "--image", str(photo), "--out", str(tmp_path / Path(model).suffix[1:])]
        )
        task = {"landmark": "landmarks", "expression": "expressions"}[kind]
        results[Path(model).suffix] = json.loads(
            (tmp_path / Path(model).suffix[1:] / f"astronaut_{task}.json").read_text()
        )
    faces, exported_faces = results[".keras"]["faces"], results[".tflite"]["faces"]
    assert len(faces) == len(exported_faces) >= 1
    key = "landmarks" if kind == "landmark" else "probabilities"
    for face, other in zip(faces, exported_faces, strict=True):
        ours = face[key] if kind == "landmark" else list(face[key].values())
        theirs = other[key] if kind == "landmark" else list(other[key].values())
        np.testing.assert_allclose(theirs, ours, atol=1e-3)


def test_cli_export_prints_the_comparison_and_latency(work, capsys):
    out = work / "cli" / "landmark_int8.tflite"
    export.main(["--model", str(work / "landmark.keras"), "--format", "litert", "--quantize", "int8",
                 "--calibration-count", "8", "--compare-count", "6", "--latency-runs", "2", "--out", str(out),
                 "--data-dir", str(work / "synthfaces"), "--tfds-dir", str(work / "tfds")])  # fmt: skip
    printed = capsys.readouterr().out
    for text in ("calibration: 8 images of synthface train", "builtin ops only:", "NME Keras", "target",
                 "latency, ms per face", "keras predict ", "keras predict_on_batch", "litert int8, 1 thread"):  # fmt: skip
        assert text in printed, printed
    record = json.loads(out.with_suffix(".export.json").read_text())
    assert record["comparison"]["count"] == 6 and record["quantize"] == "int8" and record["size_bytes"] > 0
    assert [row["runtime"] for row in record["latency"]["rows"]] == [
        "keras predict", "keras predict_on_batch", "litert int8, 1 thread"]  # fmt: skip
    for row in record["latency"]["rows"]:
        assert row["batch_1"] > 0 and row["batch_32"] > 0
    assert json.loads(out.with_suffix(".json").read_text()) == CARDS["landmark"]


def _error_line(capsys, main, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--model", "{work}/missing.keras"], "no such model file"),
        (["--format", "onnx"], "unknown export format 'onnx'"),
        (["--quantize", "int4"], "did you mean 'int8'"),
        (["--format", "saved_model", "--quantize", "int8"], "--quantize applies to --format litert"),
        (["--uint8-io"], "--uint8-io needs --quantize int8"),
        (["--calibration-dataset", "synthface"], "apply to --quantize int8 only"),
        (["--out", "{work}/x.onnx"], "ends with .tflite"),
        (["--quantize", "int8", "--calibration-dataset", "300x"], "unknown dataset '300x'"),
        (["--quantize", "int8", "--calibration-dataset", "300w", "--calibration-data-dir", "{work}/none"],
         "int8 calibration images from 300w train"),
        (["--model", "{work}/nodataset/landmark.keras", "--quantize", "int8"], "needs --calibration-dataset"),
    ],
)  # fmt: skip
def test_cli_mistakes_end_with_one_error_line(work, capsys, argv, expected):
    nodataset = work / "nodataset"
    if not nodataset.exists():
        nodataset.mkdir()
        shutil.copy(work / "landmark.keras", nodataset)
        (nodataset / "landmark.json").write_text(
            json.dumps({k: v for k, v in CARDS["landmark"].items() if k != "dataset"})
        )
    argv = [a.format(work=work) for a in argv]
    if "--model" not in argv:
        argv = ["--model", str(work / "landmark.keras"), *argv]
    argv += ["--no-compare", "--data-dir", str(work / "synthfaces"), "--tfds-dir", str(work / "tfds")]
    argv += ["--out", str(work / "mistakes" / "x.tflite")] * ("--out" not in argv)
    assert expected in _error_line(capsys, export.main, argv)


def test_test_py_without_the_litert_runtime_is_one_error_line(work, exported, capsys, monkeypatch):
    tflite = exported("landmark")["out"]
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    line = _error_line(capsys, _test_cli().main, ["--model", tflite, "--out", str(work / "no_runtime")])
    assert "pip install ai-edge-litert==2.3.0" in line


# --- pair models (DoE): (neutral, target) pairs in; calibrated and compared on a pair dataset's pairs ----------

PAIR_OPTIONS = {"folds": 10, "peak_frames": 3, "neutral_pairs": True}  # --neutral-class: neutral pairs too
PAIR_CARD = {"task": "expressions", "method": "doe", "dataset": "synthface-ck+", "class_names": list(CLASS_NAMES),
             "num_classes": 8, "image_size": SIZE, "input": "pair", "pair_options": PAIR_OPTIONS,
             "config": {"train_split": "train-fold0"}}  # fmt: skip


def _pairs(work, split):
    from kdface.tasks.expressions.pairs import PAIR_INPUT
    from kdface.tasks.expressions.sources import PairOptions

    return PAIR_INPUT.load_split("synthface-ck+", split, work / "synthfaces", work / "tfds",
                                 options=PairOptions(**PAIR_OPTIONS))  # fmt: skip


@pytest.fixture(scope="module")
def pair_model(work):
    """A tiny DoE (:func:`kdface.models.build_doe`: one frozen encoder on both images of a pair, the MLP on
    ``[target - neutral, target]``) trained for a moment on synthface-ck+'s fold-0 training pairs, with
    the card a ``--method doe --neutral-class`` run writes."""
    from kdface.models import build_doe
    from kdface.tasks.expressions.pairs import PAIR_INPUT
    from kdface.tasks.expressions.training import probabilities_model

    keras.utils.set_random_seed(0)
    image = keras.Input((SIZE, SIZE, 3), name="image")
    encoder = keras.Model(image, {"embedding": _features(image)}, name="tiny_encoder")
    network = build_doe(encoder, len(CLASS_NAMES), image_size=SIZE)
    model = probabilities_model(network.input, network.output, name="doe")
    ds = PAIR_INPUT.eval_dataset(
        _pairs(work, "train-fold0").dataset, image_size=SIZE, batch_size=8, cache=True
    )
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(ds, epochs=30, verbose=0, shuffle=False)
    path = work / "doe.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps(PAIR_CARD))
    return path


def _random_pairs(n=5, seed=2):
    return np.random.default_rng(seed).random((n, 2, SIZE, SIZE, 3), dtype=np.float32)


def test_pair_model_exports_with_a_pair_input_and_is_compared_on_the_held_out_pairs(work, pair_model, capsys):
    out = work / "exports" / "doe.tflite"
    record = export.export_model(pair_model, out=str(out), data_dir=str(work / "synthfaces"),
                                 tfds_dir=str(work / "tfds"), latency_runs=1)  # fmt: skip
    assert record["input_shape"] == [1, 2, SIZE, SIZE, 3] and record["builtin_ops_only"]
    assert record["input"].startswith(f"float32 (neutral, target) pairs (B, 2, {SIZE}, {SIZE}, 3)")
    comparison = record["comparison"]
    held_out = _pairs(
        work, "test-fold0"
    )  # the fold the card's train-fold0 held out, its neutral pairs included
    assert comparison["split"] == "test-fold0" and comparison["count"] == held_out.size > 0
    assert held_out.class_counts[CLASS_NAMES.index("neutral")] > 0
    assert (
        comparison["max_abs_diff"] < 1e-4
        and comparison["argmax_agreement"] == 100
        and comparison["target_met"]
    )
    assert record["latency"]["unit"] == "ms per pair" and all(
        row["batch_32"] > 0 for row in record["latency"]["rows"]
    )
    printed = capsys.readouterr().out
    assert (
        f"input (1, 2, {SIZE}, {SIZE}, 3) (batch axis resizable): float32 (neutral, target) pairs" in printed
    )
    assert "latency, ms per pair" in printed

    keras_model, litert = keras.saving.load_model(pair_model), LiteRTModel(out)
    assert litert.input_shape == keras_model.input_shape == (None, 2, SIZE, SIZE, 3)
    pairs = _random_pairs()
    for batch in (pairs, pairs[:1]):
        np.testing.assert_allclose(
            litert.predict_on_batch(batch), keras_model.predict_on_batch(batch), atol=1e-4
        )
    swapped = pairs[:, ::-1]  # the order matters: neutral first (the difference is target - neutral)
    assert not np.allclose(litert.predict_on_batch(swapped), litert.predict_on_batch(pairs), atol=1e-3)
    assert json.loads(out.with_suffix(".json").read_text()) == PAIR_CARD  # test.py finds "input": "pair"


@pytest.mark.parametrize("quantize, options", [("float16", {}), ("int8", {}), ("int8", {"uint8_io": True})])
def test_pair_model_quantises_calibrated_on_training_pairs(work, pair_model, quantize, options):
    tag = "_".join([quantize, *options])
    record = export.export_model(pair_model, quantize=quantize, out=str(work / "exports" / f"doe_{tag}.tflite"),
                                 data_dir=str(work / "synthfaces"), tfds_dir=str(work / "tfds"), latency_runs=0,
                                 compare_split="train-fold0", calibration_count=16 if quantize == "int8" else 200,
                                 **options)  # fmt: skip
    comparison = record["comparison"]
    assert (
        comparison["count"] == _pairs(work, "train-fold0").size
    )  # more pairs than the one held-out subject's
    model = LiteRTModel(record["out"])
    assert model.input_shape == (None, 2, SIZE, SIZE, 3) and record["input_shape"] == [1, 2, SIZE, SIZE, 3]
    if quantize == "float16":
        assert comparison["max_abs_diff"] < 1e-2 and comparison["argmax_agreement"] == 100
        return
    # "train" of the pair dataset it was trained on: the folds it trained on, not the one it is tested on
    calibration = record["calibration"]
    assert calibration["split"] == "train-fold0" and calibration["count"] == 16
    assert calibration["view"].startswith("(neutral, target) pairs")
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(record["operators"]) or options.get("uint8_io")
    assert comparison["argmax_agreement"] >= 90 and comparison["cosine_mean"] >= 0.99, comparison
    dtype = np.uint8 if options.get("uint8_io") else np.float32
    assert model.input_details["dtype"] == dtype and model.output_details()["dtype"] == dtype


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--dataset", "synthface"], "comparison: the model takes (neutral, target) pairs of one person; synthface"),
        (["--no-compare", "--quantize", "int8", "--calibration-dataset", "raf-db"],
         "int8 calibration: the model takes (neutral, target) pairs of one person; raf-db has single images"),
    ],
)  # fmt: skip
def test_pair_model_refuses_single_image_data_in_one_line(work, pair_model, capsys, argv, expected):
    argv = ["--model", str(pair_model), *argv, "--data-dir", str(work / "synthfaces"), "--tfds-dir",
            str(work / "tfds"), "--out", str(work / "mistakes" / "doe.tflite")]  # fmt: skip
    line = _error_line(capsys, export.main, argv)
    assert expected in line and "give a pair dataset (ck+, synthface-ck+)" in line, line
    assert not (work / "mistakes" / "doe.tflite").exists()


@pytest.mark.slow
def test_test_py_reports_a_pair_tflite_like_its_keras(work, pair_model, tmp_path):
    tflite = work / "exports" / "doe_for_test_py.tflite"
    export.export_model(pair_model, out=str(tflite), compare=False, latency_runs=0)
    reports = {}
    for model in (pair_model, tflite):
        out = tmp_path / model.suffix[1:]
        _test_cli().main(["--model", str(model), "--data-dir", str(work / "synthfaces"),
                          "--tfds-dir", str(work / "tfds"), "--out", str(out)])  # fmt: skip
        (reports[model.suffix],) = json.loads((out / "report.json").read_text()).values()
    ours, theirs = reports[".keras"], reports[".tflite"]
    assert theirs["input"] == ours["input"] == "pair" and list(theirs["splits"]) == ["test-fold0"]
    test = theirs["splits"]["test-fold0"]
    assert test["count"] == ours["splits"]["test-fold0"]["count"] == _pairs(work, "test-fold0").size
    assert (
        test["accuracy"] == ours["splits"]["test-fold0"]["accuracy"]
        and test["per_class"]["neutral"]["count"] > 0
    )
