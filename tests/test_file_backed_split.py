"""The file-backed training split: its store (kdface.data.image_store), and streams byte-identical to
the in-memory path they replace (same seed, epoch and position: same batches, so resume stays exact)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from helpers import encoded_split

from kdface.data import image_store
from kdface.data.image_store import INDEX_FILE, ImageStore, StoreKey, cached_store, pack_name
from kdface.errors import RunError
from kdface.tasks.expressions import pipeline
from kdface.tasks.expressions.pipeline import (
    _ERASE,
    ErasingConfig,
    ExpressionAugment,
    FileBackedSplit,
    InMemorySplit,
    _fold,
    _options,
    epoch_indices,
    expression_training_stream,
    prepare_train,
    random_erasing,
)


def _reference_stream(split: InMemorySplit, *, image_size, batch_size, num_classes, augment=None,
                      erasing=None, view_erasing=None, with_index=False, balanced=False, seed=0, start_epoch=0,
                      skip_batches=0):  # fmt: skip
    """expression_training_stream as it was before the file-backed store: the split's encoded images
    embedded in the input graph as one constant."""
    from kdface.data.streams import epoch_stream

    augment = ExpressionAugment() if augment is None else augment
    images = tf.constant(split.images.tolist(), tf.string)
    boxes = tf.constant(split.boxes)
    labels = tf.constant(split.labels)

    def element(epoch_seed, position, index):
        seed = tf.stack([epoch_seed, position])
        clean = prepare_train(images[index], boxes[index], seed, image_size, augment)
        if view_erasing is not None:
            clean = random_erasing(clean, _fold(seed, _ERASE), view_erasing)
        inputs = {"image": clean}
        if erasing is not None:
            inputs["masked"] = random_erasing(clean, _fold(seed, _ERASE), erasing)
        if with_index:
            inputs["index"] = tf.cast(index, tf.int32)
        return (inputs if len(inputs) > 1 else clean), labels[index]

    def one_epoch(epoch_seed, skip):
        order = epoch_indices(epoch_seed, split.labels, num_classes, balanced)
        ds = tf.data.Dataset.from_tensor_slices(order).enumerate().skip(skip)
        ds = ds.map(lambda position, index: element(epoch_seed, position, index),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # fmt: skip
        return ds.batch(batch_size, drop_remainder=True)

    stream = epoch_stream(one_epoch, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                          skip_batches=skip_batches)  # fmt: skip
    return stream.with_options(_options())


def _batches(stream, n):
    out = []
    for x, y in stream.take(n):
        x = x if isinstance(x, dict) else {"image": x}
        out.append({**{k: v.numpy() for k, v in x.items()}, "label": y.numpy()})
    return out


def _assert_identical(a, b):
    assert len(a) == len(b)
    for batch_a, batch_b in zip(a, b, strict=True):
        assert batch_a.keys() == batch_b.keys()
        for key in batch_a:
            assert batch_a[key].dtype == batch_b[key].dtype and batch_a[key].shape == batch_b[key].shape
            assert batch_a[key].tobytes() == batch_b[key].tobytes(), key


STREAMS = {
    "igkd": dict(erasing=ErasingConfig(), balanced=True),
    "scn": dict(augment=ExpressionAugment.scn(), view_erasing=ErasingConfig.scn(), with_index=True),
    "plain-resumed": dict(augment=ExpressionAugment.none(), start_epoch=2, skip_batches=1),
    "balanced-resumed": dict(balanced=True, seed=7, start_epoch=1, skip_batches=2),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_file_backed_stream_is_byte_identical_to_the_in_memory_one(name, tmp_path):
    memory = encoded_split([0, 1, 2, 0, 1, 2, 0, 1, 1, 0, 2, 0, 0], size=40, seed=3, in_memory=True)
    files = FileBackedSplit.from_split(memory, tmp_path)
    kwargs = dict(image_size=32, batch_size=4, num_classes=3, **STREAMS[name])
    expected = _batches(_reference_stream(memory, **kwargs), 7)  # crosses two epoch boundaries
    _assert_identical(_batches(expression_training_stream(files, **kwargs), 7), expected)
    _assert_identical(_batches(expression_training_stream(memory, **kwargs), 7), expected)


def test_the_stream_graph_holds_no_images(tmp_path):
    memory = encoded_split([0, 1, 2] * 20, size=64, in_memory=True)  # ~12 KB of PNG each
    total = sum(len(image) for image in memory.images)
    kwargs = dict(image_size=32, batch_size=4, num_classes=3)

    def graph_bytes(split):
        return len(expression_training_stream(split, **kwargs)._as_serialized_graph().numpy())

    assert graph_bytes(memory) > total  # the old path: every image is in the graph
    assert graph_bytes(FileBackedSplit.from_split(memory, tmp_path)) < total / 10


def _source(images, labels, boxes, keys):
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": np.asarray(labels, np.int64), "box": boxes, "key": keys}
    )


def test_load_writes_the_store_once_and_matches_the_in_memory_split(tmp_path, monkeypatch, capsys):
    memory = encoded_split([0, 1, 2, 1, 1, 0], size=24, in_memory=True)
    source = _source(memory.images.tolist(), memory.labels, memory.boxes, memory.keys.tolist())
    loaded = InMemorySplit.load(source)
    split = FileBackedSplit.load(source, tmp_path / "stores")
    assert "wrote the training split's 6 encoded images" in capsys.readouterr().out
    assert split.store.folder.parent == (tmp_path / "stores").resolve()
    np.testing.assert_array_equal(split.boxes, loaded.boxes)
    np.testing.assert_array_equal(split.labels, loaded.labels)
    assert split.labels.dtype == np.int32 and split.keys.tolist() == loaded.keys.tolist()
    assert [split.store.read_numpy(i) for i in range(len(split))] == loaded.images.tolist()
    assert split.class_counts(3).tolist() == loaded.class_counts(3).tolist()
    read = split.image_reader()
    assert [read(tf.constant(i)).numpy() for i in range(len(split))] == loaded.images.tolist()
    for a, b in zip(
        split.as_dataset().as_numpy_iterator(), loaded.as_dataset().as_numpy_iterator(), strict=True
    ):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # the labels are the caller's to replace (label noise), the store is shared
    noisy = dataclasses.replace(split, labels=np.zeros(6, np.int32))
    assert noisy.store is split.store and len(noisy) == 6

    def no_write(*args, **kwargs):
        raise AssertionError("the store was written again")

    monkeypatch.setattr(ImageStore, "write", no_write)
    again = FileBackedSplit.load(source, tmp_path / "stores")
    assert again.store.folder == split.store.folder and "wrote" not in capsys.readouterr().out


def test_a_store_is_keyed_by_content_and_an_incomplete_one_is_written_again(tmp_path):
    images = [bytes([i]) * (100 + i) for i in range(10)]
    key = StoreKey()
    for image in images:
        key.update(image)
    lengths = [len(image) for image in images]
    store, written = cached_store(tmp_path, key.hexdigest(), lengths, lambda: iter(images))
    assert written and [store.read_numpy(i) for i in range(10)] == images
    assert cached_store(tmp_path, key.hexdigest(), lengths, lambda: iter(images))[1] is False
    # other content, other folder; the same bytes cut differently are other content too
    other = StoreKey()
    for image in [images[0] + images[1], *images[2:]]:
        other.update(image)
    assert other.hexdigest() != key.hexdigest()
    # a truncated pack, a missing pack or a missing index: not a store; written again
    pack = store.folder / pack_name(0)
    pack.write_bytes(pack.read_bytes()[:-1])
    assert ImageStore.open(store.folder) is None
    assert cached_store(tmp_path, key.hexdigest(), lengths, lambda: iter(images))[1] is True
    pack.unlink()
    assert ImageStore.open(store.folder) is None
    (store.folder / INDEX_FILE).unlink()
    assert ImageStore.open(store.folder) is None
    store, written = cached_store(tmp_path, key.hexdigest(), lengths, lambda: iter(images))
    assert written and [store.read_numpy(i) for i in range(10)] == images
    # lengths other than the caller's: not this split's store
    assert ImageStore.open(store.folder, [1] * 10) is None


def test_a_source_that_changes_between_passes_writes_no_index(tmp_path):
    images = [b"a" * 10, b"b" * 10]
    key = StoreKey()
    for image in images:
        key.update(image)
    with pytest.raises(ValueError, match="not the ones keyed"):
        ImageStore.write(tmp_path, [b"a" * 10, b"c" * 10], expected_key=key.hexdigest())
    assert not (tmp_path / INDEX_FILE).exists() and ImageStore.open(tmp_path) is None


def test_packs_hold_up_to_pack_bytes_and_a_large_image_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(image_store, "PACK_BYTES", 100)
    images = [b"x" * 40, b"y" * 40, b"z" * 40, b"L" * 250, b"s" * 10, b"t" * 100]
    store = ImageStore.write(tmp_path, images)
    assert store.index[:, 0].tolist() == [0, 0, 1, 2, 3, 4]
    assert [p.stat().st_size for p in store.pack_paths()] == [80, 40, 250, 10, 100]
    assert ImageStore.open(tmp_path, [len(i) for i in images]) is not None
    read = store.reader()
    order = tf.constant([5, 3, 0, 3, 1, 4, 2])
    out = tf.data.Dataset.from_tensor_slices(order).map(read, num_parallel_calls=4, deterministic=True)
    assert list(out.as_numpy_iterator()) == [images[i] for i in order.numpy()]
    assert not list(tmp_path.glob(".*"))  # no temporaries left


def test_max_bytes_bounds_what_stays_in_memory_not_the_images(tmp_path):
    memory = encoded_split([0, 1, 2] * 4, size=48, in_memory=True)
    source = _source(memory.images.tolist(), memory.labels, memory.boxes, memory.keys.tolist())
    images = sum(len(image) for image in memory.images)
    in_memory = 12 * (pipeline.RESIDENT_BYTES_PER_SAMPLE + 2)
    assert images > 10 * in_memory
    assert len(FileBackedSplit.load(source, tmp_path, max_bytes=in_memory)) == 12
    with pytest.raises(RunError, match="keys, boxes and labels exceed"):
        FileBackedSplit.load(source, tmp_path, max_bytes=in_memory // 2)
    with pytest.raises(RunError, match="empty"):
        FileBackedSplit.load(source.take(0), tmp_path)


def test_training_data_reads_the_split_from_a_store_beside_the_prepared_data(tmp_path, capsys):
    from kdface.data import synthfaces
    from kdface.errors import ConfigError
    from kdface.tasks.expressions.training import ExpressionConfig, training_data

    root = synthfaces.generate(tmp_path / "synthfaces", synthfaces.SynthFacesConfig.tiny())
    config = ExpressionConfig(data_dir=str(root), tfds_dir=str(tmp_path / "tfds"), image_size=32, batch_size=4,
                              label_noise=0.2).resolved()  # fmt: skip
    data = training_data(config)
    assert "wrote the training split's" in capsys.readouterr().out
    split = data.split
    assert isinstance(split, FileBackedSplit) and len(split) == data.train_size
    assert split.store.folder.parent == (tmp_path / "tfds" / "kdface-image-stores").resolve()
    np.testing.assert_array_equal(split.labels, data.noise.noisy)  # label noise replaces labels, not images
    x, y = next(iter(data.stream()))
    assert x.shape == (4, 32, 32, 3) and y.shape == (4,)
    again = training_data(config)
    assert again.split.store.folder == split.store.folder and "wrote" not in capsys.readouterr().out
    with pytest.raises(ConfigError, match="max_memory_gb"):
        ExpressionConfig(max_memory_gb=0).resolved()
