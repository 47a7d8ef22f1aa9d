"""The KD-Loss models: distiller train step, save -> load -> predict, pixel mapping."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.losses import kd_loss
from kdface.methods.kdloss import KDLossDistiller, build_regressor
from kdface.tasks.landmarks.points import landmarks_to_pixels

SIZE, POINTS = 32, 68


@pytest.fixture(scope="module")
def teachers():
    # the distiller is architecture-agnostic; small teachers keep the test quick
    tough = build_regressor("mobilenet_v2", POINTS, SIZE, dropout=0.5, name="tough")
    tolerant = build_regressor("mobilenet_v2", POINTS, SIZE, dropout=0.5, name="tolerant")
    return tough, tolerant


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, SIZE, SIZE, 3)).astype("float32"), rng.uniform(
        -0.4, 0.4, (n, 2 * POINTS)
    ).astype("float32")


def test_distiller_step_uses_frozen_teachers_in_inference_mode(teachers):
    tough, tolerant = teachers
    student = build_regressor("mobilenet_v2", POINTS, SIZE, name="student")
    distiller = KDLossDistiller(student, tough, tolerant)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    x, y = _batch()
    tough_before = [w.numpy().copy() for w in tough.weights]
    student_before = [w.numpy().copy() for w in student.trainable_weights]
    # the loss the step reports is kd_loss of the student against the teachers' inference outputs
    expected = kd_loss(
        y, student(x, training=True), tough(x, training=False), tolerant(x, training=False)
    ).total
    logs = distiller.train_on_batch(x, y, return_dict=True)
    assert {"loss", "main", "aloss_tough", "aloss_tolerant"} <= set(logs)
    np.testing.assert_allclose(logs["loss"], float(expected), rtol=1e-3)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(tough_before, tough.weights, strict=True))
    assert any(
        not np.array_equal(a, b.numpy())
        for a, b in zip(student_before, student.trainable_weights, strict=True)
    )


def test_cached_teacher_predictions_give_the_same_loss(teachers):
    tough, tolerant = teachers
    student = build_regressor("mobilenet_v2", POINTS, SIZE, name="student")
    distiller = KDLossDistiller(student, tough, tolerant)
    distiller.compile(optimizer=keras.optimizers.Adam(0.0), jit_compile=False)
    x, y = _batch(seed=1)
    live = distiller.test_on_batch(x, y, return_dict=True)["loss"]
    cached = {"image": x, "tough": tough.predict(x, verbose=0), "tolerant": tolerant.predict(x, verbose=0)}
    np.testing.assert_allclose(distiller.test_on_batch(cached, y, return_dict=True)["loss"], live, rtol=1e-4)


def test_teacher_with_another_input_size_sees_resized_images():
    small = build_regressor("mobilenet_v2", POINTS, SIZE, name="student")
    big_teacher = build_regressor("mobilenet_v2", POINTS, 2 * SIZE, name="big")
    distiller = KDLossDistiller(small, big_teacher, big_teacher)
    x, _ = _batch()
    tough, _ = distiller.teacher_predictions(tf.constant(x))
    assert tough.shape == (4, 2 * POINTS)


def test_save_load_predict_round_trip(tmp_path):
    model = build_regressor("mobilenet_v2", POINTS, SIZE, name="student")
    x, _ = _batch()
    before = model.predict(x, verbose=0)
    model.save(tmp_path / "student.keras")
    loaded = keras.saving.load_model(tmp_path / "student.keras")
    after = loaded.predict(x, verbose=0)
    assert after.shape == (4, 2 * POINTS)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_landmarks_to_pixels():
    pred = np.array([[-0.5, -0.5, 0.0, 0.25]], np.float32)  # two points
    np.testing.assert_allclose(landmarks_to_pixels(pred, image_size=64), [[[0, 0], [32, 48]]])
    np.testing.assert_allclose(landmarks_to_pixels(pred, image_size=(100, 50)), [[[0, 0], [50, 37.5]]])
    boxes = np.array([[10, 20, 110, 70]], np.float32)
    np.testing.assert_allclose(landmarks_to_pixels(pred, boxes=boxes), [[[10, 20], [60, 57.5]]])


def test_paper_architectures_match_the_spec_sizes():
    # spec §7: teacher EfficientNet-B3 + Dense(136) 10.99 M parameters, student MobileNetV2 + Dense 2.432 M
    from kdface.methods.kdloss import KDLossConfig, build_student, build_teacher

    config = KDLossConfig(preset="paper").resolved("teacher")
    teacher = build_teacher(config, 68, "tough")
    student = build_student(config, 68)
    assert teacher.input_shape == (None, 224, 224, 3) and teacher.output_shape == (None, 136)
    assert round(teacher.count_params() / 1e6, 2) == 10.99
    assert round(student.count_params() / 1e6, 3) == 2.432
    # keras.applications' EfficientNet expects [0, 255]: the [0, 1] input is scaled up inside
    scaling = teacher.get_layer("efficientnet_b3").get_layer("to_application_range")
    assert scaling.scale == 255.0 and scaling.offset == 0.0


def _batch_norms(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def test_bn_momentum_override_reaches_every_batchnorm_and_survives_saving(tmp_path):
    assert {layer.momentum for layer in _batch_norms(build_regressor("mobilenet_v2", POINTS, SIZE))} == {
        0.999
    }
    model = build_regressor("mobilenet_v2", POINTS, SIZE, name="student", bn_momentum=0.9)
    assert len(list(_batch_norms(model))) > 30
    assert {layer.momentum for layer in _batch_norms(model)} == {0.9}
    model.save(tmp_path / "m.keras")
    assert {layer.momentum for layer in _batch_norms(keras.saving.load_model(tmp_path / "m.keras"))} == {0.9}


def test_cached_teacher_predictions_stay_aligned_with_their_images():
    # A "teacher" whose output identifies its input (the image's mean, repeated): after caching,
    # shuffling and batching, every cached prediction must still belong to the image beside it.
    from kdface.methods.kdloss import KDLossConfig, teacher_predictions
    from kdface.tasks.landmarks.pipeline import CropConfig, landmark_training_stream
    from kdface.tasks.landmarks.sources import LandmarkSource

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 48, 48, 3), dtype=np.uint8)
    landmarks = np.tile(rng.uniform(10, 38, (1, 68, 2)), (20, 1, 1)).astype(np.float32)
    source = tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "landmarks": landmarks,
            "box": np.zeros((20, 4), np.float32),
            "key": [str(i) for i in range(20)],
        }
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    teacher = keras.Model(
        inputs,
        keras.layers.Lambda(
            lambda m: keras.ops.tile(keras.ops.mean(m, axis=-1, keepdims=True), (1, 2 * POINTS))
        )(mean),
    )
    config = KDLossConfig(augment=False, image_size=SIZE, batch_size=6, pad_px=0.0, pad_frac=0.1)
    cached = teacher_predictions(
        config, teacher, teacher, LandmarkSource(source, "x", "train", 68, (36, 45), 20, None)
    )
    ds = landmark_training_stream(source, image_size=SIZE, batch_size=6, crop=CropConfig(0.0, 0.1), seed=3,
                                  extra=cached)  # fmt: skip
    seen = 0
    for x, y in ds.take(6):  # two epochs of 3 full batches, each epoch shuffled differently
        expected = x["image"].numpy().mean(axis=(1, 2, 3))
        np.testing.assert_allclose(x["tough"].numpy()[:, 0], expected, atol=1e-5)
        np.testing.assert_allclose(x["tolerant"].numpy()[:, 5], expected, atol=1e-5)
        seen += len(y)
    assert seen == 36
