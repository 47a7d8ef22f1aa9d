"""The frozen-teacher output cache (kdface/training/teacher_cache.py) as KD-Loss uses it: the cache
holds exactly what the live teachers compute on the student's views, is reused only under the same
key, and its key changes with the teacher file, the data and the crop."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.errors import ConfigError
from kdface.methods.kdloss import KDLossConfig, KDLossDistiller, teacher_predictions
from kdface.tasks.landmarks.pipeline import CropConfig, landmark_dataset, landmark_training_stream
from kdface.tasks.landmarks.sources import LandmarkSource
from kdface.training import teacher_cache

SIZE, POINTS, N = 32, 5, 14


def _source(seed=0):
    rng = np.random.default_rng(seed)
    data = {
        "image": rng.integers(0, 255, (N, 48, 48, 3), dtype=np.uint8),
        "landmarks": rng.uniform(8, 40, (N, POINTS, 2)).astype(np.float32),
        "box": np.zeros((N, 4), np.float32),
        "key": [str(i) for i in range(N)],
    }
    return LandmarkSource(tf.data.Dataset.from_tensor_slices(data), "toy", "train", POINTS, (0, 1), N, None)


def _teacher(path, size, seed):
    keras.utils.set_random_seed(seed)
    images = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(images)
    model = keras.Model(images, keras.layers.Dense(2 * POINTS)(keras.layers.GlobalAveragePooling2D()(h)))
    model.save(path)
    return keras.saving.load_model(path)


@pytest.fixture
def teachers(tmp_path):
    # the Tolerant-Teacher takes another input size: its cached outputs are of the resized view
    files = {"tough": tmp_path / "tough.keras", "tolerant": tmp_path / "tolerant.keras"}
    return {
        "tough": _teacher(files["tough"], SIZE, 0),
        "tolerant": _teacher(files["tolerant"], 2 * SIZE, 1),
    }, files


CONFIG = KDLossConfig(augment=False, image_size=SIZE, batch_size=4, pad_px=0.0, pad_frac=0.1)


def _cached(teachers, source, folder, config=CONFIG):
    models, files = teachers
    return teacher_predictions(
        config, models["tough"], models["tolerant"], source, files=files, folder=folder
    )


def _arrays(ds):
    return {k: np.stack([e[k] for e in ds.as_numpy_iterator()]) for k in ("tough", "tolerant")}


def test_cached_outputs_equal_the_live_teachers_on_the_students_views(teachers, tmp_path):
    models, _ = teachers
    source = _source()
    cached = _arrays(_cached(teachers, source, tmp_path / "cache"))
    (path,) = (tmp_path / "cache").glob("teachers-*.npz")
    # live: the distiller running its teachers on the training stream's (un-augmented) crops
    views = landmark_dataset(source.dataset, image_size=SIZE, batch_size=N, crop=CONFIG.crop())
    live = _distiller(models).teacher_predictions(next(iter(views))[0])
    np.testing.assert_allclose(cached["tough"], live[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(cached["tolerant"], live[1].numpy(), atol=1e-6)
    assert cached["tolerant"].shape == (N, 2 * POINTS)

    # A second run with the same key reads the file and runs no teacher.
    def refuse(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    for model in models.values():
        model.predict = refuse
    again = _arrays(_cached(teachers, source, tmp_path / "cache"))
    np.testing.assert_array_equal(again["tough"], cached["tough"])
    assert list((tmp_path / "cache").glob("teachers-*.npz")) == [path]


def _distiller(models):
    images = keras.Input((SIZE, SIZE, 3))
    student = keras.Model(
        images, keras.layers.Dense(2 * POINTS)(keras.layers.GlobalAveragePooling2D()(images))
    )
    return KDLossDistiller(student, models["tough"], models["tolerant"])


def test_the_key_changes_with_the_teacher_file_the_data_and_the_crop(teachers, tmp_path):
    models, files = teachers
    source = _source()
    preprocessing = {"image_size": SIZE, "crop": "a"}
    data = teacher_cache.dataset_fingerprint(source.dataset)
    key, _ = teacher_cache.cache_key(files, data, preprocessing)
    assert (
        key
        == teacher_cache.cache_key(
            files, teacher_cache.dataset_fingerprint(_source().dataset), preprocessing
        )[0]
    )
    assert key != teacher_cache.cache_key(files, data, {**preprocessing, "crop": "b"})[0]
    assert (
        key
        != teacher_cache.cache_key(
            files, teacher_cache.dataset_fingerprint(_source(1).dataset), preprocessing
        )[0]
    )

    before = _arrays(_cached(teachers, source, tmp_path / "cache"))
    # The Tough-Teacher retrained (here: other weights) and saved over its file: a new key, recomputed.
    changed = _teacher(files["tough"], SIZE, 5)
    assert teacher_cache.cache_key(files, data, preprocessing)[0] != key
    after = _arrays(_cached(({**models, "tough": changed}, files), source, tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("teachers-*.npz"))) == 2
    assert not np.allclose(after["tough"], before["tough"])
    np.testing.assert_array_equal(after["tolerant"], before["tolerant"])


def test_a_file_under_the_name_but_with_another_key_is_recomputed(teachers, tmp_path):
    source = _source()
    first = _arrays(_cached(teachers, source, tmp_path / "cache"))
    (path,) = (tmp_path / "cache").glob("teachers-*.npz")
    with np.load(path) as stored:
        forged = {k: stored[k] for k in stored.files}
    np.savez(path, **{**forged, "key": np.array("0" * 64), "tough": forged["tough"] + 1})
    np.testing.assert_array_equal(
        _arrays(_cached(teachers, source, tmp_path / "cache"))["tough"], first["tough"]
    )


def test_cached_outputs_follow_their_images_through_the_training_stream(teachers, tmp_path):
    models, _ = teachers
    source = _source()
    cached = _cached(teachers, source, tmp_path / "cache")
    stream = landmark_training_stream(source.dataset, image_size=SIZE, batch_size=4, crop=CropConfig(0.0, 0.1),
                                      seed=3, extra=cached)  # fmt: skip
    for x, _ in stream.take(4):  # shuffled differently each epoch
        live = _distiller(models).teacher_predictions(x["image"])
        np.testing.assert_allclose(x["tough"], live[0], atol=1e-5)
        np.testing.assert_allclose(x["tolerant"], live[1], atol=1e-5)


def test_caching_needs_un_augmented_views(teachers, tmp_path):
    with pytest.raises(ConfigError, match="augment"):
        _cached(teachers, _source(), tmp_path, KDLossConfig(augment=True, image_size=SIZE, batch_size=4))
