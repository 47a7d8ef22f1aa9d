"""The landmark ``tf.data`` pipeline: decode -> crop (GT box + pad) -> augment -> resize -> batch.

Cropping, resizing, flipping, rotation, zoom and shift are one affine map applied in a single
resampling (``ImageProjectiveTransformV3``); the landmarks go through the same map exactly, and a
flip also relabels them with the dataset's left/right permutation. Randomness is stateless and
seeded per element, so ``deterministic=True`` gives the same batches on every run.

Input elements are dicts from :func:`kdface.tasks.landmarks.sources.load_landmark_split`:
``image`` (encoded bytes or uint8 ``HxWx3``), ``landmarks`` ``(N, 2)`` kdface pixels, ``box`` ``(4,)``.
Output elements are ``(image float32 SxSx3 in [0,1], target (2N,))`` with targets normalised to the
crop (see :mod:`kdface.tasks.landmarks.points`), or ``(image, target, meta)`` with ``with_meta=True``.

Training reads a :func:`landmark_training_stream`: an endless stream of batches in which epoch
``e``'s order and augmentation depend only on ``(seed, e)``, so a resumed run can start it at any
epoch and batch and see exactly the batches the uninterrupted run saw (see
:func:`kdface.data.streams.epoch_stream`).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from kdface.tasks.landmarks.points import flip_permutation


@dataclasses.dataclass(frozen=True)
class CropConfig:
    """Crop = landmark bounding box (optionally united with the dataset's box) + padding on each side.

    The KD-Loss original pads the GT landmark box by 5-10 px on 300W (spec §4.1); ``pad_frac`` adds
    a fraction of the box's size, which suits datasets of very different resolutions.
    """

    pad_px: float = 10.0
    pad_frac: float = 0.0
    union_dataset_box: bool = False


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Online augmentation (the original augmented offline, spec §4.5; these are its ranges)."""

    flip: float = 0.5  # probability of a horizontal flip
    rotation: float = 0.5  # radians, uniform in [-rotation, rotation]
    zoom: float = 0.1  # uniform in [1 - zoom, 1 + zoom]
    shift: float = 0.05  # fraction of the crop, uniform in [-shift, shift] per axis
    brightness: float = 0.15
    contrast: float = 0.3
    saturation: float = 0.3
    gamma: float = 0.4  # log-uniform gamma in [1/(1+g), 1+g]
    blur: float = 0.2  # probability of a 3x3 box blur

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0)

    @property
    def enabled(self) -> bool:
        return any(dataclasses.astuple(self))


def _decode(image):
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def crop_box(landmarks, box, crop: CropConfig):
    """``(x0, y0, x1, y1)`` of the crop in kdface pixels."""
    low = tf.reduce_min(landmarks, axis=0)
    high = tf.reduce_max(landmarks, axis=0)
    if crop.union_dataset_box:
        low = tf.minimum(low, box[:2])
        high = tf.maximum(high, box[2:])
    pad = crop.pad_px + crop.pad_frac * (high - low)
    return tf.concat([low - pad, high + pad], axis=0)


def _uniform(seed, low, high, shape=()):
    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _photometric(image, seeds, aug: AugmentConfig):
    if aug.brightness:
        image = image + _uniform(seeds[0], -aug.brightness, aug.brightness)
    if aug.contrast:
        mean = tf.reduce_mean(image)
        image = (image - mean) * _uniform(seeds[1], 1 - aug.contrast, 1 + aug.contrast) + mean
    if aug.saturation:
        image = tf.image.adjust_saturation(
            tf.clip_by_value(image, 0, 1), _uniform(seeds[2], 1 - aug.saturation, 1 + aug.saturation)
        )
    if aug.gamma:
        log_gamma = _uniform(seeds[3], -math.log1p(aug.gamma), math.log1p(aug.gamma))
        image = tf.pow(tf.clip_by_value(image, 1e-6, 1), tf.exp(log_gamma))
    if aug.blur:
        blurred = tf.nn.avg_pool2d(image[None], 3, 1, "SAME")[0]
        image = tf.where(_uniform(seeds[4], 0, 1) < aug.blur, blurred, image)
    return tf.clip_by_value(image, 0.0, 1.0)


def crop_and_augment(image, landmarks, box, seed, *, image_size, crop: CropConfig, augment: AugmentConfig):
    """One element: returns ``(image SxSx3 float32, landmarks (N,2) in output pixels, crop box)``.

    The map from output pixel ``q`` (continuous) to source pixel ``p`` is
    ``p = c + R(theta) D F (q - S/2 - t) / zoom`` with ``D`` the non-uniform crop scale (the aspect
    ratio is not preserved, as in the original), ``F`` the optional flip, ``t`` the shift.
    """
    size = float(image_size)
    image = _decode(image)
    landmarks = tf.cast(landmarks, tf.float32)
    box = crop_box(landmarks, tf.cast(box, tf.float32), crop)
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 10))

    zoom = _uniform(seeds[0], 1 - augment.zoom, 1 + augment.zoom) if augment.zoom else tf.constant(1.0)
    theta = _uniform(seeds[1], -augment.rotation, augment.rotation) if augment.rotation else tf.constant(0.0)
    shift = _uniform(seeds[2], -augment.shift, augment.shift, [2]) * size if augment.shift else tf.zeros([2])
    flip = _uniform(seeds[3], 0, 1) < augment.flip if augment.flip else tf.constant(False)

    # Downscale large sources first with an anti-aliased resize: bilinear resampling alone aliases.
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    source_per_output = tf.minimum(box[2] - box[0], box[3] - box[1]) / (size * zoom)
    factor = tf.maximum(source_per_output / 1.5, 1.0)
    new_hw = tf.cast(tf.math.round(tf.stack([height, width]) / factor), tf.int32)
    image = tf.cond(
        factor > 1.0,
        lambda: tf.image.resize(tf.cast(image, tf.float32), new_hw, antialias=True),
        lambda: tf.cast(image, tf.float32),
    )
    rescale = tf.cast(new_hw[::-1], tf.float32) / tf.stack([width, height])
    landmarks = landmarks * rescale
    box = box * tf.tile(rescale, [2])

    centre = (box[:2] + box[2:]) / 2
    scale = (box[2:] - box[:2]) / size / zoom
    cos, sin = tf.cos(theta), tf.sin(theta)
    flip_sign = tf.where(flip, -1.0, 1.0)
    # A = R(theta) @ diag(sx, sy) @ diag(flip, 1)
    a = tf.reshape(
        tf.stack([cos * scale[0] * flip_sign, -sin * scale[1], sin * scale[0] * flip_sign, cos * scale[1]]),
        [2, 2],
    )
    offset = centre - tf.linalg.matvec(a, size / 2 + shift)
    # ImageProjectiveTransform works on pixel indices (centres at integers): shift by half a pixel.
    index_offset = offset + tf.linalg.matvec(a, [0.5, 0.5]) - 0.5
    transform = tf.stack([a[0, 0], a[0, 1], index_offset[0], a[1, 0], a[1, 1], index_offset[1], 0.0, 0.0])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=[image_size, image_size],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]
    out = out / 255.0

    points = tf.linalg.matvec(tf.linalg.inv(a), landmarks - offset)
    num_points = landmarks.shape[0]
    if augment.flip and num_points is not None:
        perm = tf.constant(flip_permutation(num_points), tf.int32)
        points = tf.cond(flip, lambda: tf.gather(points, perm), lambda: points)
    if augment.enabled:
        out = _photometric(out, seeds[4:9], augment)
    out = tf.ensure_shape(out, [image_size, image_size, 3])
    return out, points, box / tf.tile(rescale, [2])


def _prepare_fn(image_size, crop, augment, target_transform, with_meta):
    size = float(image_size)

    def prepare(example, element_seed):
        image, points, box = crop_and_augment(
            example["image"], example["landmarks"], example["box"], element_seed,
            image_size=image_size, crop=crop, augment=augment,
        )  # fmt: skip
        target = tf.reshape(points / size - 0.5, [-1])
        if target_transform is not None:
            target = target_transform(target)
        if with_meta:
            meta = {"box": box, "landmarks": tf.cast(example["landmarks"], tf.float32), "key": example["key"]}
            return image, target, meta
        return image, target

    return prepare


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def landmark_dataset(
    source: tf.data.Dataset,
    *,
    image_size: int,
    batch_size: int,
    crop: CropConfig = CropConfig(),
    augment: AugmentConfig | None = None,
    seed: int = 0,
    deterministic: bool = True,
    target_transform=None,
    with_meta: bool = False,
    cache: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """One pass over ``source`` in its own order, as batches of ``(images, targets)`` (and ``meta``
    with the crop box and key if ``with_meta``): for validation, evaluation and teacher caching.

    ``target_transform`` maps a normalised target vector to another (the Tolerant-Teacher's ASM
    projection). ``cache`` keeps decoded crops in memory; only valid without augmentation.
    """
    augment = augment or AugmentConfig.none()
    if cache and augment.enabled:
        raise ValueError("cache=True would freeze one random augmentation per image; turn augmentation off")
    ds = source.with_options(_options(deterministic)).enumerate()
    prepare = _prepare_fn(image_size, crop, augment, target_transform, with_meta)
    ds = ds.map(lambda index, example: prepare(example, tf.stack([tf.constant(seed, tf.int64), index])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)  # fmt: skip
    if cache:
        ds = ds.cache()
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def landmark_training_stream(
    source: tf.data.Dataset,
    *,
    image_size: int,
    batch_size: int,
    crop: CropConfig = CropConfig(),
    augment: AugmentConfig | None = None,
    seed: int = 0,
    target_transform=None,
    start_epoch: int = 0,
    skip_batches: int = 0,
    shuffle_buffer: int = 2048,
    extra: tf.data.Dataset | None = None,
) -> tf.data.Dataset:
    """The endless training stream: epoch ``start_epoch`` from batch ``skip_batches`` on, then the
    following epochs, each shuffled and augmented as a function of ``(seed, epoch)`` only.

    Each epoch is ``len(source) // batch_size`` full batches (the remainder is dropped, so every
    step sees a full batch on every replica). Without augmentation the prepared crops are cached in
    memory once. ``extra`` is a dataset aligned with ``source`` (same order) whose elements are
    attached to the inputs as a dict ``{"image": ..., **extra}`` (e.g. cached teacher predictions).
    """
    from kdface.data.streams import epoch_stream, windowed_shuffle

    augment = augment or AugmentConfig.none()
    prepare = _prepare_fn(image_size, crop, augment, target_transform, with_meta=False)
    elements = source.with_options(_options(True))
    if extra is not None:
        elements = tf.data.Dataset.zip(elements, extra)
    else:
        elements = elements.map(lambda example: (example, ()))

    def with_extra(inputs, target, attached):
        if extra is None:
            return inputs, target
        return {"image": inputs, **attached}, target

    if not augment.enabled:
        # Crops are the same every epoch: prepare once (fixed seed; nothing random is drawn).
        fixed = tf.constant([seed, 0], tf.int64)
        prepared = elements.map(lambda example, attached: (*prepare(example, fixed), attached),
                                num_parallel_calls=tf.data.AUTOTUNE).cache()  # fmt: skip

        def one_epoch(epoch_seed, skip):
            ds = windowed_shuffle(prepared, epoch_seed, shuffle_buffer)
            ds = ds.skip(skip).map(with_extra, num_parallel_calls=tf.data.AUTOTUNE)
            return ds.batch(batch_size, drop_remainder=True)
    else:

        def one_epoch(epoch_seed, skip):
            ds = windowed_shuffle(elements, epoch_seed, shuffle_buffer)
            ds = ds.enumerate().skip(skip)  # skip before decoding: resuming mid-epoch costs no augmentation

            def element(index, pair):
                example, attached = pair
                image, target = prepare(example, tf.stack([epoch_seed, index]))
                return with_extra(image, target, attached)

            ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE)
            return ds.batch(batch_size, drop_remainder=True)

    return epoch_stream(one_epoch, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                        skip_batches=skip_batches)  # fmt: skip
