"""Memory of the expression training stream against the size of the training set."""

from __future__ import annotations

import time

import numpy as np

from bench.harness import current_rss_mb, peak_rss_mb, quiet_tensorflow


def synthetic_split(count: int, side: int = 100, seed: int = 0, num_classes: int = 7):
    """``count`` distinct JPEG faces' worth of bytes (smooth random colour fields with noise, ``side``
    px like RAF-DB's aligned 100 x 100 faces; a few KB each, as real ones) in an ``InMemorySplit``."""
    import cv2

    from kdface.tasks.expressions.pipeline import InMemorySplit

    rng = np.random.default_rng(seed)
    images = np.empty(count, dtype=object)
    for i in range(count):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        image = cv2.add(image, rng.integers(0, 12, image.shape, dtype=np.uint8))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        images[i] = encoded.tobytes()
    labels = rng.integers(0, num_classes, count).astype(np.int32)
    boxes = np.tile(np.array([[0, 0, side, side]], np.float32), (count, 1))
    keys = np.array([f"img_{i:06d}" for i in range(count)], dtype=object)
    return InMemorySplit(images, boxes, labels, keys)


def stream_memory(
    count: int, image_size: int = 96, batch_size: int = 32, max_batches: int | None = None
) -> dict:
    """Peak RSS of building the expression training stream (``expression_training_stream``, the demo
    preset's augmentation and class-balanced sampler) over ``count`` encoded images and iterating one
    epoch's worth of batches. Run once per data size, each in its own process; target: the peak for
    100k images within 10 % of the peak for 10k (memory that does not grow with the data set).
    Today kdface holds the encoded split in memory (an ``InMemorySplit`` plus the ``tf.constant``
    of its bytes the stream builds), so this measures how much that costs."""
    quiet_tensorflow()
    from kdface.tasks.expressions.pipeline import ExpressionAugment, expression_training_stream

    stages = {"after_import": current_rss_mb()}
    start = time.perf_counter()
    split = synthetic_split(count)
    generate_seconds = time.perf_counter() - start
    encoded_mb = sum(len(b) for b in split.images) / 2**20
    stages["after_split"] = current_rss_mb()
    stream = expression_training_stream(split, image_size=image_size, batch_size=batch_size, num_classes=7,
                                        augment=ExpressionAugment(), balanced=True, seed=0)  # fmt: skip
    stages["after_stream"] = current_rss_mb()
    batches = len(split) // batch_size if max_batches is None else min(max_batches, len(split) // batch_size)
    start = time.perf_counter()
    for _ in stream.take(batches):
        pass
    iterate_seconds = time.perf_counter() - start
    stages["after_epoch"] = current_rss_mb()
    return {"images": count, "encoded_mb": round(encoded_mb, 1), "mean_jpeg_bytes": round(encoded_mb * 2**20 / count),
            "batches": batches, "image_size": image_size, "batch_size": batch_size,
            "rss_mb_stages": {k: round(v, 1) for k, v in stages.items()}, "peak_rss_mb": round(peak_rss_mb(), 1),
            "generate_seconds": round(generate_seconds, 1), "iterate_seconds": round(iterate_seconds, 1),
            "images_per_s": round(batches * batch_size / iterate_seconds, 1)}  # fmt: skip
