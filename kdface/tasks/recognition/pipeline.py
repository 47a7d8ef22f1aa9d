"""Recognition input pipelines: the endless identity-classification stream (HR/LR pairs, flip, per-sample
resolution), and evaluation batches of verification pairs at a chosen resolution.

Images are aligned face crops (112 x 112 in CASIA-WebFace and SynthFaces). A training element is

* ``(lr, label)`` for a network trained on one view (a teacher at ``--down-size 0``: ``lr`` is the HR
  image; a no-KD low-resolution baseline at ``--down-size 14`` or ``1``);
* ``({"hr": hr, "lr": lr}, label)`` for a student distilled from an HR teacher (``pairs=True``).

Both are RGB float32 in ``[0, 1]``. The only augmentation is a horizontal flip with p = 0.5, applied to
the HR/LR pair alike, in each original's order (spec ``fskd_lowres_fr.md`` §2.1-2.2): F-SKD v1 degrades
then flips, A-SKD flips then degrades (with nearest sampling the two differ: the top-left pixel of a
block is another pixel after a flip). The resolution is drawn per sample
(:func:`kdface.data.resolution.draw_down_sizes` semantics), so a batch mixes resolutions.

Randomness is stateless, from ``(epoch seed, position in the epoch)``: a resumed run sees the same
batches (:mod:`kdface.data.streams`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kdface.data.resolution import (
    METHOD_NAMES,
    ORDER_NAMES,
    degradation_method,
    flip_order,
    low_resolution,
    low_resolution_tf,
    resolution_ladder,
)
from kdface.data.streams import epoch_stream

# The CLI's names (--degradation, --flip-order), as run configs and model cards keep them; Resolution
# maps each to the behaviour it names (kdface.data.resolution METHODS, ORDERS).
DEGRADATIONS = ("nearest", *METHOD_NAMES, "random", "linear")
FLIP_ORDERS = tuple(ORDER_NAMES)
_FLIP, _SIZE, _DEGRADE = 1, 2, 3  # purposes folded into an element's seed


@dataclasses.dataclass(frozen=True)
class Resolution:
    """How training views are degraded: ``down_size`` with the originals' meaning (0 = HR only,
    1 = multi-resolution, any other value a fixed side in pixels at ``image_size``), ``equal`` (the
    multi-resolution draw: uniform over the ladder, or HR half of the time), the ``degradation``
    method and the HR/LR ``flip_order``. Those two are kept as the behaviour they name
    (:func:`~kdface.data.resolution.degradation_method`, :func:`~kdface.data.resolution.flip_order`),
    whether given so or by the CLI's names (``"askd"``, ``"fskd"``)."""

    image_size: int
    down_size: int = 0
    equal: bool = True
    degradation: str = "nearest"
    flip_order: str = "degrade_then_flip"

    def __post_init__(self):
        object.__setattr__(self, "degradation", degradation_method(self.degradation, "degradation"))
        object.__setattr__(self, "flip_order", flip_order(self.flip_order, "flip_order"))

    @property
    def choices(self) -> tuple[int, ...]:
        """The sizes a sample can be drawn at."""
        if self.down_size == 0:
            return (self.image_size,)
        if self.down_size == 1:
            return tuple(resolution_ladder(self.image_size))
        return (int(self.down_size),)

    def probabilities(self) -> tuple[float, ...]:
        choices = self.choices
        if self.down_size != 1 or self.equal:
            return tuple(1.0 / len(choices) for _ in choices)
        # --equal false: HR with p 1/2, the rest uniform (spec §2.3)
        rest = 0.5 / (len(choices) - 1)
        return tuple(0.5 if size == self.image_size else rest for size in choices)


def _fold(seed, purpose: int):
    return tf.stack([tf.cast(seed[0], tf.int64) * 7 + purpose, tf.cast(seed[1], tf.int64)])


def decode_face(encoded, image_size: int):
    """An encoded aligned crop -> uint8 ``image_size`` x ``image_size`` x 3 (area-resized if it differs)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.shape(image)
    same = tf.logical_and(tf.equal(shape[0], image_size), tf.equal(shape[1], image_size))
    resized = tf.cond(
        same,
        lambda: image,
        lambda: tf.cast(
            tf.round(tf.clip_by_value(tf.image.resize(image, (image_size, image_size), "area"), 0.0, 255.0)),
            tf.uint8,
        ),
    )
    return tf.ensure_shape(resized, (image_size, image_size, 3))


def degrade(image, size, resolution: Resolution, seed):
    """``image`` (uint8 HWC) at ``size`` (a scalar int tensor), back at full size, uint8."""
    if resolution.degradation == "nearest":
        return low_resolution_tf(image[None], tf.reshape(size, [1]))[0]
    method = resolution.degradation

    def numpy_degrade(img, side, seed_values):
        rng = np.random.default_rng([int(v) & 0x7FFFFFFF for v in seed_values])
        return low_resolution(img, int(side), method=method, rng=rng)

    out = tf.numpy_function(numpy_degrade, [image, size, _fold(seed, _DEGRADE)], tf.uint8, stateful=False)
    return tf.ensure_shape(out, image.shape)


def draw_size(resolution: Resolution, seed):
    """One sample's side, drawn statelessly."""
    choices = resolution.choices
    if len(choices) == 1:
        return tf.constant(choices[0], tf.int32)
    cdf = np.cumsum(resolution.probabilities())
    u = tf.random.stateless_uniform([], _fold(seed, _SIZE), dtype=tf.float32)
    index = tf.minimum(tf.searchsorted(tf.constant(cdf[None], tf.float32), tf.reshape(u, [1, 1]))[0, 0],
                       len(choices) - 1)  # fmt: skip
    return tf.gather(tf.constant(choices, tf.int32), index)


def training_views(image, seed, resolution: Resolution):
    """``(hr, lr)`` uint8 views of one sample: the flip and the drawn resolution in the original's order."""
    flip = tf.random.stateless_uniform([], _fold(seed, _FLIP)) < 0.5
    size = draw_size(resolution, seed)

    def flipped(x):
        return tf.where(flip, tf.reverse(x, axis=[1]), x)

    if resolution.flip_order == "flip_then_degrade":
        hr = flipped(image)
        return hr, degrade(hr, size, resolution, seed)
    return flipped(image), flipped(degrade(image, size, resolution, seed))


def _to_float(image):
    return tf.cast(image, tf.float32) / 255.0


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    return options


def identity_training_stream(
    read_image,
    labels: np.ndarray,
    *,
    resolution: Resolution,
    batch_size: int,
    pairs: bool = False,
    seed: int = 0,
    start_epoch: int = 0,
    skip_batches: int = 0,
):
    """The endless training stream over a split of ``len(labels)`` images, epoch ``start_epoch`` from
    batch ``skip_batches`` on; ``read_image(index)`` gives the encoded image at ``index`` (e.g. a
    file-backed :class:`~kdface.data.image_store.ImageStore`'s reader). Each epoch is a fresh
    permutation, ``N // batch_size`` full batches (the original drops nothing; kdface keeps batches
    whole so every step has the same shape)."""
    labels_t = tf.constant(np.asarray(labels, np.int32))
    n = len(labels)
    image_size = resolution.image_size

    def element(epoch_seed, position, index):
        seed = tf.stack([epoch_seed, position])
        hr, lr = training_views(decode_face(read_image(index), image_size), seed, resolution)
        label = labels_t[index]
        if pairs:
            return {"hr": _to_float(hr), "lr": _to_float(lr)}, label
        return _to_float(lr), label

    def one_epoch(epoch_seed, skip):
        order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([tf.cast(epoch_seed, tf.int64),
                                                                      tf.constant(11, tf.int64)])))  # fmt: skip
        ds = tf.data.Dataset.from_tensor_slices(order).enumerate().skip(skip)
        ds = ds.map(lambda position, index: element(epoch_seed, position, index),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # fmt: skip
        return ds.batch(batch_size, drop_remainder=True)

    stream = epoch_stream(one_epoch, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                          skip_batches=skip_batches)  # fmt: skip
    return stream.with_options(_options())


def identity_eval_dataset(read_image, labels: np.ndarray, *, image_size: int, batch_size: int, size=None):
    """One pass in order as ``(image, label)`` batches, at ``size`` (nearest down-then-up) if given."""
    labels_t = tf.constant(np.asarray(labels, np.int32))

    def element(index):
        image = decode_face(read_image(index), image_size)
        if size is not None and size < image_size:
            image = low_resolution_tf(image[None], tf.constant([size], tf.int32))[0]
        return _to_float(image), labels_t[index]

    ds = tf.data.Dataset.range(len(labels)).map(
        element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options())


def pair_images_dataset(
    images: np.ndarray, *, batch_size: int, size: int | None, degradation: str = "nearest"
):
    """Decoded uint8 images ``(N, S, S, 3)`` -> ``(image, flipped image)`` float batches at ``size``
    (down-then-up with ``degradation``; ``None`` or ``S``: unchanged), for flip-concatenated embeddings."""
    full = images.shape[1]
    if size is not None and size < full:
        images = low_resolution(images, size, method=degradation if degradation != "random" else "linear")
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    return ds.map(lambda x: (_to_float(x), _to_float(tf.reverse(x, axis=[2])))).prefetch(tf.data.AUTOTUNE)
