"""Memory of the expression training stream against the size of the training set."""

from __future__ import annotations

import time

import numpy as np

from bench.harness import current_rss_mb, peak_rss_mb, quiet_tensorflow


def synthetic_source(count: int, side: int = 100, pool: int = 1000, seed: int = 0, num_classes: int = 7):
    """A tf.data source of ``count`` expression examples (``image`` JPEG bytes, ``box``, ``label``,
    ``key``), as a prepared TFDS split yields them, holding only a pool of ``pool`` distinct JPEGs
    (smooth random colour fields with noise, ``side`` px like RAF-DB's aligned 100 x 100 faces, a few KB
    each) that example ``i`` takes ``i % pool`` of. Returns ``(dataset, mean JPEG bytes)``."""
    import cv2
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(min(pool, count)):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 12, image.shape, dtype=np.uint8))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        images.append(encoded.tobytes())
    pool_images = tf.constant(images)
    labels = tf.constant(rng.integers(0, num_classes, count), tf.int64)
    box = tf.constant([0, 0, side, side], tf.float32)

    def example(i):
        return {"image": pool_images[i % len(images)], "box": box, "label": labels[i],
                "key": tf.strings.join(["img_", tf.strings.as_string(i, width=7, fill="0")])}  # fmt: skip

    return tf.data.Dataset.range(count).map(example), float(np.mean([len(b) for b in images]))


def stream_memory(count: int, image_size: int = 96, batch_size: int = 32, max_batches: int | None = None,
                  split: str = "file_backed") -> dict:  # fmt: skip
    """Peak RSS of what expression training does with ``count`` encoded images: load the split as
    ``training_data`` does (``FileBackedSplit.load``: keys, boxes and labels in memory, the images
    written once to a file-backed store and read back by index; ``split="in_memory"`` measures the
    older ``InMemorySplit`` instead), build ``expression_training_stream`` (the demo preset's
    augmentation and class-balanced sampler) and iterate one epoch's worth of batches. Run once per
    data size, each in its own process; target: the peak for 100k images within 10 % of the peak for
    10k (memory that does not grow with the data set)."""
    import tempfile

    quiet_tensorflow()
    from kdface.tasks.expressions.pipeline import (
        ExpressionAugment,
        FileBackedSplit,
        InMemorySplit,
        expression_training_stream,
    )

    stages = {"after_import": current_rss_mb()}
    source, mean_bytes = synthetic_source(count)
    with tempfile.TemporaryDirectory(prefix="kdface-bench-store-") as store:
        start = time.perf_counter()
        if split == "file_backed":
            loaded = FileBackedSplit.load(source, store)
        elif split == "in_memory":
            loaded = InMemorySplit.load(source)
        else:
            raise ValueError(f"split must be file_backed or in_memory, got {split!r}")
        load_seconds = time.perf_counter() - start
        stages["after_split"] = current_rss_mb()
        stream = expression_training_stream(loaded, image_size=image_size, batch_size=batch_size, num_classes=7,
                                            augment=ExpressionAugment(), balanced=True, seed=0)  # fmt: skip
        stages["after_stream"] = current_rss_mb()
        batches = (
            len(loaded) // batch_size if max_batches is None else min(max_batches, len(loaded) // batch_size)
        )
        start = time.perf_counter()
        for _ in stream.take(batches):
            pass
        iterate_seconds = time.perf_counter() - start
        stages["after_epoch"] = current_rss_mb()
    return {"images": count, "split": split, "encoded_mb": round(count * mean_bytes / 2**20, 1),
            "mean_jpeg_bytes": round(mean_bytes), "batches": batches, "image_size": image_size,
            "batch_size": batch_size, "rss_mb_stages": {k: round(v, 1) for k, v in stages.items()},
            "peak_rss_mb": round(peak_rss_mb(), 1), "load_seconds": round(load_seconds, 1),
            "iterate_seconds": round(iterate_seconds, 1),
            "images_per_s": round(batches * batch_size / iterate_seconds, 1)}  # fmt: skip
