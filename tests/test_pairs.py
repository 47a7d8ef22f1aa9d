"""The pair pipeline: shapes and dtypes, one augmentation draw for both images of a pair (the same flip
and crop), the pair split read by index, exact restarts, the input spec a model declares, and
``pair_training_data`` on SynthFaces' CK+ tree."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.tasks.expressions.pairs import (
    IMAGE_INPUT,
    NEUTRAL,
    PAIR_INPUT,
    TARGET,
    InputSpec,
    PairSplit,
    interleaved_images,
    pair_dataset,
    pair_training_stream,
    stack_pair,
    unstack_pair,
)
from kdface.tasks.expressions.pipeline import ExpressionAugment, prepare_eval

SIZE = 32


def _png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _marked(side: int, seed: int, marker: int) -> np.ndarray:
    """A grey image with a bright bar at the left edge (``marker``: its brightness): a flip moves it."""
    image = np.random.default_rng(seed).integers(40, 90, (side, side), dtype=np.uint8)
    image[:, : side // 6] = marker
    return image


def _source(n: int = 16, same: bool = False) -> tf.data.Dataset:
    """``n`` pairs of 40 x 40 grey images with the marker bar on the left: neutral and target differ
    (unless ``same``); the boxes are the whole image."""
    neutral = [_png(_marked(40, i, 250)) for i in range(n)]
    target = neutral if same else [_png(_marked(40, 100 + i, 200)) for i in range(n)]
    box = np.tile(np.array([0, 0, 40, 40], np.float32), (n, 1))
    return tf.data.Dataset.from_tensor_slices({
        "neutral": neutral, "target": target, "neutral_box": box, "target_box": box,
        "label": np.arange(n, dtype=np.int64) % 7, "key": [f"pair{i}" for i in range(n)],
    })  # fmt: skip


def _marker_on_the_left(images: np.ndarray) -> np.ndarray:
    """Per image ``(..., S, S, 3)``: whether the bright bar is on the left (not flipped)."""
    left, right = (
        images[..., :, :4, :].mean(axis=(-3, -2, -1)),
        images[..., :, -4:, :].mean(axis=(-3, -2, -1)),
    )
    assert np.all(np.abs(left - right) > 0.3)  # one side holds the bar, whatever the crop
    return left > right


def test_input_spec():
    assert IMAGE_INPUT.shape(SIZE) == (SIZE, SIZE, 3) and PAIR_INPUT.shape(SIZE) == (2, SIZE, SIZE, 3)
    assert InputSpec.from_card(PAIR_INPUT.card()) == PAIR_INPUT and InputSpec.from_card({}) == IMAGE_INPUT
    assert (NEUTRAL, TARGET) == (0, 1)
    with pytest.raises(ValueError, match="input kind"):
        InputSpec("triplet")


def test_a_pair_model_is_one_input_that_predict_and_saving_take(tmp_path):
    pairs = keras.Input(PAIR_INPUT.shape(8), name="pairs")
    neutral, target = unstack_pair(pairs)
    difference = keras.layers.Subtract()([keras.layers.Flatten()(target), keras.layers.Flatten()(neutral)])
    model = keras.Model(pairs, keras.layers.Dense(3, name="logits")(difference))
    x = np.random.default_rng(0).uniform(size=(4, 2, 8, 8, 3)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    swapped = model.predict(np.stack([x[:, TARGET], x[:, NEUTRAL]], axis=1), verbose=0)
    assert expected.shape == (4, 3) and not np.allclose(expected, swapped)  # the order of the two matters
    model.save(tmp_path / "pair.keras")
    loaded = keras.saving.load_model(tmp_path / "pair.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    stacked = stack_pair(tf.zeros((4, 8, 8, 3)), tf.ones((4, 8, 8, 3)))
    assert stacked.shape == (4, 2, 8, 8, 3) and float(tf.reduce_mean(stacked[:, TARGET])) == 1.0


def test_evaluation_batches_are_both_test_views():
    source = _source(5)
    pairs, labels, keys = next(iter(pair_dataset(source, image_size=SIZE, batch_size=4, with_key=True)))
    assert pairs.shape == (4, 2, SIZE, SIZE, 3) and pairs.dtype == tf.float32
    assert labels.dtype == tf.int32 and labels.numpy().tolist() == [0, 1, 2, 3] and keys[0] == b"pair0"
    first = next(iter(source))
    np.testing.assert_array_equal(
        pairs[0, NEUTRAL], prepare_eval(first["neutral"], first["neutral_box"], SIZE)
    )
    np.testing.assert_array_equal(pairs[0, TARGET], prepare_eval(first["target"], first["target_box"], SIZE))
    assert len(list(pair_dataset(source, image_size=SIZE, batch_size=4))) == 2


def test_pair_split_interleaves_neutral_and_target(tmp_path):
    source = _source(6)
    flat = list(interleaved_images(source).as_numpy_iterator())
    originals = list(source.as_numpy_iterator())
    assert [e["image"] for e in flat] == [p[k] for p in originals for k in ("neutral", "target")]
    for split in (PairSplit.load(source), PairSplit.load(source, tmp_path / "stores")):
        assert len(split) == 6 and len(split.images) == 12
        assert split.labels.tolist() == [0, 1, 2, 3, 4, 5] and split.keys[2] == b"pair2"
        read = split.images.image_reader()
        assert read(tf.constant(2 * 3 + TARGET)).numpy() == originals[3]["target"]
        assert split.class_counts(7).tolist() == [1, 1, 1, 1, 1, 1, 0]


def test_training_pairs_share_one_flip():
    split = PairSplit.load(_source(16))
    flips_only = ExpressionAugment(noise_probability=0.0, random_crop=False, flip=True)
    stream = pair_training_stream(
        split, image_size=SIZE, batch_size=16, num_classes=7, augment=flips_only, seed=3
    )
    batch, labels = next(iter(stream))
    assert batch.shape == (16, 2, SIZE, SIZE, 3) and batch.dtype == tf.float32 and labels.dtype == tf.int32
    left = _marker_on_the_left(batch.numpy())
    np.testing.assert_array_equal(left[:, NEUTRAL], left[:, TARGET])  # the same flip for both images
    assert 0 < left[:, NEUTRAL].sum() < 16  # and flips did happen, in some pairs only


def test_training_pairs_share_one_crop_and_noise_and_restart_exactly():
    split = PairSplit.load(_source(8, same=True))  # neutral == target: one draw gives identical views
    augment = ExpressionAugment(noise_probability=0.5, random_crop=True, flip=True)

    def stream(**kwargs):
        return pair_training_stream(split, image_size=SIZE, batch_size=4, num_classes=7, augment=augment, seed=1,
                                    **kwargs)  # fmt: skip

    batches = [b.numpy() for b, _ in stream().take(6)]
    for batch in batches:
        np.testing.assert_array_equal(batch[:, NEUTRAL], batch[:, TARGET])
    assert not np.array_equal(batches[0], batches[2])  # epoch 1 draws anew
    restarted = next(iter(stream(start_epoch=1, skip_batches=1)))[0].numpy()
    np.testing.assert_array_equal(restarted, batches[3])  # epoch e, batch b: a function of (seed, e, b)
    balanced = pair_training_stream(split, image_size=SIZE, batch_size=4, num_classes=7, balanced=True)
    assert next(iter(balanced))[0].shape == (4, 2, SIZE, SIZE, 3)


def test_pair_training_data_on_synthfaces_ckplus(tmp_path):
    from kdface.data import synthfaces
    from kdface.tasks.expressions.training import ExpressionConfig, pair_training_data

    root = synthfaces.generate(tmp_path / "synthfaces", synthfaces.SynthFacesConfig.tiny())
    config = ExpressionConfig(dataset="synthface-ck+", data_dir=str(root), tfds_dir=str(tmp_path / "tfds"),
                              train_split="train-fold2", image_size=SIZE, batch_size=4, val_fraction=0.2).resolved()  # fmt: skip
    data = pair_training_data(config)
    assert isinstance(data.split, PairSplit) and data.num_classes == 8 and data.train_size == len(data.split)
    assert data.card["input"] == "pair" and data.card["pair_folds"] == [0, 1, 3, 4, 5, 6, 7, 8, 9]
    assert data.card["pair_options"] == {"folds": 10, "peak_frames": 3, "neutral_pairs": False}
    x, y = next(iter(data.stream()))
    assert x.shape == (4, 2, SIZE, SIZE, 3) and y.shape == (4,)
    vx, vy = next(iter(data.val))
    assert vx.shape[1:] == (2, SIZE, SIZE, 3) and vx.dtype == tf.float32
