"""Recognition methods: the HR/LR pipeline, the frozen teacher, the optimizer and schedule, face-id
backbones loaded by other methods (--backbone-weights), and teacher -> student -> test.py end to end."""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import run_script

ROOT = Path(__file__).resolve().parents[1]


def _image(size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# --- pipeline ------------------------------------------------------------------------------------------


def test_training_views_share_the_flip_and_follow_each_originals_order():
    from kdface.tasks.recognition.pipeline import Resolution, training_views

    image = tf.constant(_image(16))
    for order in ("fskd", "askd"):
        resolution = Resolution(16, down_size=4, flip_order=order)
        seen_flip = set()
        for position in range(12):
            hr, lr = (
                t.numpy() for t in training_views(image, tf.constant([3, position], tf.int64), resolution)
            )
            flipped = np.array_equal(hr, image.numpy()[:, ::-1])
            assert flipped or np.array_equal(hr, image.numpy())
            seen_flip.add(flipped)
            source = image.numpy()
            if order == "fskd":  # degrade (top-left of each 4x4 block), then flip both
                expected = np.repeat(np.repeat(source[::4, ::4], 4, 0), 4, 1)
                expected = expected[:, ::-1] if flipped else expected
            else:  # flip, then degrade the flipped image
                base = source[:, ::-1] if flipped else source
                expected = np.repeat(np.repeat(base[::4, ::4], 4, 0), 4, 1)
            np.testing.assert_array_equal(lr, expected)
        assert seen_flip == {True, False}


def test_multi_resolution_draws_the_ladder_with_the_originals_probabilities():
    from kdface.tasks.recognition.pipeline import Resolution, draw_size

    equal = Resolution(64, down_size=1)
    assert equal.choices == (8, 16, 32, 64) and equal.probabilities() == (0.25,) * 4
    unequal = Resolution(64, down_size=1, equal=False)
    assert unequal.probabilities() == pytest.approx((1 / 6, 1 / 6, 1 / 6, 0.5))
    draws = [int(draw_size(unequal, tf.constant([1, i], tf.int64))) for i in range(3000)]
    counts = {s: draws.count(s) / len(draws) for s in (8, 16, 32, 64)}
    assert counts[64] == pytest.approx(0.5, abs=0.04) and counts[8] == pytest.approx(1 / 6, abs=0.03)
    assert Resolution(64, down_size=0).choices == (64,) and Resolution(64, down_size=16).choices == (16,)


def test_stream_is_a_pure_function_of_seed_epoch_and_position():
    from kdface.tasks.recognition.pipeline import Resolution, identity_training_stream

    images = [tf.io.encode_png(_image(16, seed=i)).numpy() for i in range(8)]
    table = tf.constant(images)
    labels = np.arange(8) % 4

    def stream(start_epoch=0, skip=0):
        return identity_training_stream(lambda i: table[i], labels, resolution=Resolution(16, down_size=1),
                                        batch_size=2, pairs=True, seed=5, start_epoch=start_epoch,
                                        skip_batches=skip)  # fmt: skip

    full = [b for _, b in zip(range(6), stream(), strict=False)]
    resumed = [b for _, b in zip(range(3), stream(start_epoch=1, skip=1), strict=False)]
    for a, b in zip(full[5:], resumed[:1], strict=True):  # epoch 1 batch 1 is the 6th batch (4 per epoch)
        np.testing.assert_array_equal(a[0]["lr"], b[0]["lr"])
        np.testing.assert_array_equal(a[1], b[1])
    x, y = full[0]
    assert x["hr"].shape == (2, 16, 16, 3) and x["hr"].dtype == tf.float32 and y.dtype == tf.int32


# --- optimizer and schedule ------------------------------------------------------------------------------


def test_coupled_sgd_is_torch_sgd_with_weight_decay_while_the_rate_is_constant():
    from kdface.training.optimizers import CoupledSGD

    w = keras.Variable(np.array([1.0, -2.0], np.float32))
    opt = CoupledSGD(0.1, momentum=0.9, nesterov=True, coupled_weight_decay=0.5)
    grads = [np.array([0.3, 0.1], np.float32), np.array([-0.2, 0.4], np.float32)]
    p, buf = np.array([1.0, -2.0]), np.zeros(2)
    for g in grads:
        opt.apply([tf.constant(g)], [w])
        d = g + 0.5 * p  # torch: d_p = g + wd p; buf = m buf + d_p; p -= lr (d_p + m buf)
        buf = 0.9 * buf + d
        p = p - 0.1 * (d + 0.9 * buf)
    np.testing.assert_allclose(w.numpy(), p, rtol=1e-6)


def test_step_schedule_drops_at_the_v1_iterations():
    from kdface.tasks.recognition.training import RecognitionConfig, step_schedule

    config = RecognitionConfig(preset="paper", epochs=47).resolved("teacher")
    schedule = step_schedule(config, steps_per_epoch=1000)  # 47,000 steps: drops at 18k/28k/36k/44k
    rates = [float(schedule(s)) for s in (0, 17999, 18000, 28000, 36000, 44000)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 1e-3, 1e-4, 1e-5], rtol=1e-5)


def test_config_rejects_a_down_size_that_does_not_divide_the_image():
    from kdface.errors import ConfigError
    from kdface.tasks.recognition.training import RecognitionConfig

    with pytest.raises(ConfigError, match="must divide the image size 32"):
        RecognitionConfig(down_size=12).resolved("teacher")
    with pytest.raises(ConfigError, match="lr-milestones"):
        RecognitionConfig(lr_milestones="0.5,0.2").resolved("teacher")


# --- models ---------------------------------------------------------------------------------------------


def _tiny(attention="cbam_fskd", name=None):
    from kdface.backbones import create_backbone

    return create_backbone("iresnet18", image_size=32, head="pool", attention=attention, name=name)


def test_student_step_leaves_the_frozen_teacher_exactly_unchanged():
    from kdface.heads import MarginHead
    from kdface.methods.fskd import FSKD
    from kdface.tasks.recognition.training import LowResolutionDistiller

    keras.utils.set_random_seed(0)
    teacher = _tiny(name="teacher")
    for layer in teacher.layers:  # non-trivial running statistics, so inference mode matters
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.1, np.float32))
    before = [np.array(w) for w in teacher.get_weights()]
    student = LowResolutionDistiller(_tiny(name="student"), MarginHead(5), teacher, FSKD, 20.0)
    student.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x = {"hr": rng.random((4, 32, 32, 3), np.float32), "lr": rng.random((4, 32, 32, 3), np.float32)}
    student_before = [np.array(w) for w in student.backbone.get_weights()]
    logs = student.train_on_batch(x, np.array([0, 1, 2, 3]), return_dict=True)
    assert logs["distill"] > 0 and np.isfinite(logs["loss"])
    for a, b in zip(before, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # weights and BN statistics
    assert any(
        not np.array_equal(a, b) for a, b in zip(student_before, student.backbone.get_weights(), strict=True)
    )
    assert not teacher.trainable_variables


def test_face_id_backbone_loads_into_another_method_and_a_mismatch_is_named(tmp_path):
    from kdface.backbones import create_backbone
    from kdface.errors import DataFormatError
    from kdface.heads import MarginHead
    from kdface.tasks.recognition.training import FaceRecognizer

    keras.utils.set_random_seed(1)
    backbone = create_backbone("resnet18", image_size=32)
    model = FaceRecognizer(backbone, MarginHead(4))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.train_on_batch(np.random.default_rng(0).random((4, 32, 32, 3), np.float32), np.arange(4))
    path = tmp_path / "faceid.keras"
    model.deploy_model.save(path)
    from kdface.methods.fer import FERConfig, build_classifier

    # an expression classifier at its own size, initialised from the face-id backbone (--backbone-weights)
    config = FERConfig(weights=str(path), image_size=64).resolved()
    classifier = build_classifier(config, num_classes=7)
    (loaded,) = [layer for layer in classifier.layers if isinstance(layer, keras.Model)]
    for a, b in zip(backbone.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(DataFormatError, match="missing"):
        create_backbone("resnet50", image_size=32, weights=str(path))


def test_askd_refuses_a_teacher_without_cbam(tmp_path):
    from kdface.errors import ConfigError
    from kdface.methods.askd import ASKDConfig, train_student

    teacher = tmp_path / "teacher.keras"
    teacher.write_bytes(b"not read: the card decides")
    teacher.with_suffix(".json").write_text(
        json.dumps({"task": "recognition", "architecture": {"attention": "none"}})
    )
    with pytest.raises(ConfigError, match="has no CBAM"):
        train_student(ASKDConfig(teacher=str(teacher)))


# --- end to end ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_teacher_student_and_verification_end_to_end(tmp_path):
    from kdface.data import synthfaces

    data = tmp_path / "synthfaces"
    synthfaces.generate(
        data, synthfaces.SynthFacesConfig.tiny(w300_train=0, w300_common=0, w300_challenging=0)
    )
    common = ["--dataset", "synthface", "--data-dir", data, "--tfds-dir", tmp_path / "tfds", "--image-size", "32",
              "--batch-size", "4", "--epochs", "2", "--backbone", "iresnet18"]  # fmt: skip
    teacher = tmp_path / "models" / "teacher.keras"
    log = run_script(ROOT / "train_teacher.py", "--method", "fskd", "--mode", "cbam", "--down-size", "0", *common,
                     "--out", teacher, "--run-dir", tmp_path / "runs" / "teacher", cwd=tmp_path)  # fmt: skip
    card = json.loads(teacher.with_suffix(".json").read_text())
    assert card["task"] == "recognition" and card["architecture"]["attention"] == "cbam_fskd"
    assert teacher.with_suffix(".margin.npz").is_file()
    students = {}
    for method in ("fskd", "askd"):
        students[method] = tmp_path / "models" / f"{method}.keras"
        log = run_script(ROOT / "train_student.py", "--method", method, "--teacher", teacher, "--down-size", "1",
                         *common, "--out", students[method], "--run-dir", tmp_path / "runs" / method, cwd=tmp_path)  # fmt: skip
        assert "distill" in log
        card = json.loads(students[method].with_suffix(".json").read_text())
        assert card["resolution"]["sizes"] == [4, 8, 16, 32] and card["distillation"]["method"] == method
    spec = importlib.util.spec_from_file_location("kdface_test_cli", ROOT / "test.py")
    test_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_cli)
    out = tmp_path / "test"
    test_cli.main(["--model", str(teacher), "--model", str(students["fskd"]), "--data-dir", str(data),
                   "--out", str(out), "--down-size", "32", "--down-size", "8"])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    rows = report["fskd"]["rows"]
    assert [r["size"] for r in rows] == [32, 8] and all(0 <= r["accuracy"] <= 100 for r in rows)
    assert len(rows[0]["fold_accuracies"]) == 10
    assert "Recognition evaluation" in (out / "report.md").read_text() and (out / "roc.png").is_file()

    # the embedding model ships: int8 LiteRT calibrated on training identities, compared on the pairs
    exported = tmp_path / "models" / "teacher_int8.tflite"
    log = run_script("-m", "kdface.export", "--model", teacher, "--format", "litert", "--quantize", "int8",
                     "--data-dir", data, "--tfds-dir", tmp_path / "tfds", "--out", exported, "--calibration-count", "16",
                     "--latency-runs", "2", cwd=ROOT)  # fmt: skip
    record = json.loads(exported.with_suffix(".export.json").read_text())
    assert record["calibration"]["split"] == "train" and record["comparison"]["metric"] == "cosine"
    assert record["comparison"]["count"] == 40  # tiny: 20 pairs
    test_cli.main(["--model", str(exported), "--data-dir", str(data), "--out", str(tmp_path / "test_tflite")])
    tflite_rows = json.loads((tmp_path / "test_tflite" / "report.json").read_text())["teacher_int8"]["rows"]
    assert [r["size"] for r in tflite_rows] == [32]
