"""The tf.data pipeline for expression recognition: face crops, IGKD's two views, balanced sampling.

Every model takes RGB images in ``[0, 1]``; ImageNet normalisation happens inside the model.
Geometry follows the originals (spec A2, B3): the face crop is resized so its shorter side is
``resize_size = round(image_size * 256 / 224)`` (256 for 224), then cropped to ``image_size``
(random crop when training, centre crop otherwise). Training adds, in the original's order:
Gaussian noise (p 0.5, variance 30, on uint8 before resizing), the crop and a horizontal flip.

The **masked view** (IGKD, spec A2.4) is torchvision's ``RandomErasing`` applied to the same
augmented crop: area ``U(0.15, 0.25)`` of the image, aspect ``exp(U(ln 0.33, ln 3.3))``, up to
10 tries for a box that fits, position uniform; filled with one value ``v ~ U[0, 1)`` per sample
*in normalised space*, i.e. ``mean_c + v * std_c`` in the ``[0, 1]`` pixels kdface models take.

Training data is an epoch stream (:mod:`kdface.data.streams`) over a split with random access by
index: epoch ``e`` is a list of indices drawn from ``(seed, e)`` alone, either a permutation or, with
the **class-balanced sampler** (IGKD's ``ImbalancedDatasetSampler``), ``N`` draws with replacement
with probability ``1 / n_class`` per sample. Every random draw is stateless, keyed by
``(epoch seed, position in the epoch)``, so a resumed run sees the same batches. Training reads the
encoded images of a :class:`FileBackedSplit` from a file-backed store (:mod:`kdface.data.image_store`)
and holds only keys, boxes and labels, so memory stays flat as the split grows; an
:class:`InMemorySplit` (small splits, tests) holds them in memory and in the input graph.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from kdface.data.image_store import ImageStore, StoreKey, cached_store, store_source
from kdface.errors import RunError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Purposes of the per-element random streams (folded into the element's seed).
_NOISE, _NOISE_ON, _CROP, _FLIP, _ERASE = 1, 2, 3, 4, 5


def resize_size(image_size: int) -> int:
    """The shorter side the face is resized to before cropping (256 for a 224 crop)."""
    return int(round(image_size * 256 / 224))


@dataclasses.dataclass(frozen=True)
class ExpressionAugment:
    """Training augmentation. The default is IGKD's (spec A2.2-3): noise with ``noise_probability``,
    random crop, horizontal flip with p 0.5, independently. ``exclusive`` is SCN's (spec B3): with
    probability ``noise_probability`` apply exactly one of {flip, noise}, chosen evenly."""

    noise_probability: float = 0.5
    noise_variance: float = 30.0
    random_crop: bool = True
    flip: bool = True
    exclusive: bool = False

    @classmethod
    def none(cls) -> ExpressionAugment:
        return cls(noise_probability=0.0, random_crop=False, flip=False)

    @classmethod
    def scn(cls) -> ExpressionAugment:
        """SCN's ``basic_aug``: p 0.5, one of flip / Gaussian noise (variance 30); no random crop."""
        return cls(noise_probability=0.5, random_crop=False, flip=True, exclusive=True)

    @property
    def enabled(self) -> bool:
        return self.noise_probability > 0 or self.random_crop or self.flip


@dataclasses.dataclass(frozen=True)
class ErasingConfig:
    """torchvision ``RandomErasing``. The defaults are IGKD's (spec A2.4); ``value`` is the fill in
    normalised space: ``None`` draws one ``v ~ U[0, 1)`` per sample (IGKD's ``value="random"``
    variant), ``0.0`` fills with the ImageNet mean colour (torchvision's default ``value=0``, SCN's)."""

    probability: float = 1.0
    scale: tuple[float, float] = (0.15, 0.25)
    ratio: tuple[float, float] = (0.33, 3.3)
    attempts: int = 10
    value: float | None = None

    @classmethod
    def scn(cls) -> ErasingConfig:
        """SCN's ``transforms.RandomErasing(scale=(0.02, 0.25))``: p 0.5, ratio (0.3, 3.3), value 0."""
        return cls(probability=0.5, scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0.0)


def _fold(seed, purpose: int):
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), purpose)


def erasing_box(seed, height: int, width: int, config: ErasingConfig = ErasingConfig()):
    """``(top, left, h, w, applied)`` of one torchvision-style erasing box (int32 scalars, bool).

    ``applied`` is False when the probability draw says no or no candidate fits in ``attempts``.
    """
    area = float(height * width)
    n = config.attempts
    u = tf.random.stateless_uniform([n, 4], _fold(seed, 0))
    target = area * (config.scale[0] + (config.scale[1] - config.scale[0]) * u[:, 0])
    log_lo, log_hi = math.log(config.ratio[0]), math.log(config.ratio[1])
    aspect = tf.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (h < height) & (w < width) & (h > 0) & (w > 0)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    h, w = h[first], w[first]
    # i ~ U{0..H-h}, j ~ U{0..W-w}
    top = tf.minimum(tf.cast(u[first, 2] * tf.cast(height - h + 1, tf.float32), tf.int32), height - h)
    left = tf.minimum(tf.cast(u[first, 3] * tf.cast(width - w + 1, tf.float32), tf.int32), width - w)
    draw = tf.random.stateless_uniform([], _fold(seed, 1))
    applied = tf.reduce_any(fits) & (draw < config.probability)
    return top, left, h, w, applied


def random_erasing(image, seed, config: ErasingConfig = ErasingConfig()):
    """``image`` (``H x W x 3`` in ``[0, 1]``) with one box set to a flat ``mean + v * std`` (``v``:
    ``config.value``, or ``U[0, 1)`` per sample: one value in normalised space, as torchvision erases
    the normalised tensor)."""
    height, width = int(image.shape[0]), int(image.shape[1])
    top, left, h, w, applied = erasing_box(seed, height, width, config)
    if config.value is None:
        v = tf.random.stateless_uniform([], _fold(seed, 2))
    else:
        v = tf.constant(float(config.value))
    fill = tf.constant(IMAGENET_MEAN) + v * tf.constant(IMAGENET_STD)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w) & applied
    return tf.where(inside[:, :, None], tf.broadcast_to(fill, image.shape), image)


def _decode_face(encoded, box):
    """Decode and cut the face box (clipped to the image) out of an encoded image: uint8 ``H x W x 3``."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    x0 = tf.clip_by_value(tf.cast(tf.floor(box[0]), tf.int32), 0, w - 1)
    y0 = tf.clip_by_value(tf.cast(tf.floor(box[1]), tf.int32), 0, h - 1)
    x1 = tf.clip_by_value(tf.cast(tf.math.ceil(box[2]), tf.int32), x0 + 1, w)
    y1 = tf.clip_by_value(tf.cast(tf.math.ceil(box[3]), tf.int32), y0 + 1, h)
    return image[y0:y1, x0:x1]


def _resize_shorter(image, size: int):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    new = tf.maximum(new, size)
    return tf.image.resize(tf.cast(image, tf.float32), new, antialias=True)


def _center_crop(image, size: int):
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def prepare_eval(encoded, box, image_size: int):
    """The test view: shorter side to ``resize_size``, centre crop, ``[0, 1]`` float32."""
    face = _decode_face(encoded, box)
    image = _center_crop(_resize_shorter(face, resize_size(image_size)), image_size)
    image = tf.clip_by_value(image, 0.0, 255.0) / 255.0
    return tf.ensure_shape(image, (image_size, image_size, 3))


def prepare_train(encoded, box, seed, image_size: int, augment: ExpressionAugment):
    """One training view (noise, resize, crop, flip) in ``[0, 1]``, from the element's ``seed``."""
    face = _decode_face(encoded, box)
    noise_on = tf.random.stateless_uniform([], _fold(seed, _NOISE_ON)) < augment.noise_probability
    flip_on = tf.random.stateless_uniform([], _fold(seed, _FLIP)) < 0.5
    if augment.exclusive:  # SCN: one augmentation or none; the flip draw picks which
        noise_on, flip_on = noise_on & ~flip_on, noise_on & flip_on
    if augment.noise_probability > 0:
        noisy = tf.cast(face, tf.float32) + math.sqrt(augment.noise_variance) * tf.random.stateless_normal(
            tf.shape(face), _fold(seed, _NOISE)
        )
        noisy = tf.cast(tf.clip_by_value(noisy, 0.0, 255.0), tf.uint8)  # truncation, as numpy astype
        face = tf.where(noise_on, noisy, face)
    resized = _resize_shorter(face, resize_size(image_size))
    if augment.random_crop:
        shape = tf.shape(resized)
        offsets = tf.random.stateless_uniform([2], _fold(seed, _CROP))
        top = tf.cast(offsets[0] * tf.cast(shape[0] - image_size + 1, tf.float32), tf.int32)
        left = tf.cast(offsets[1] * tf.cast(shape[1] - image_size + 1, tf.float32), tf.int32)
        image = resized[top : top + image_size, left : left + image_size]
    else:
        image = _center_crop(resized, image_size)
    if augment.flip:
        image = tf.where(flip_on, tf.reverse(image, axis=[1]), image)
    image = tf.clip_by_value(image, 0.0, 255.0) / 255.0
    return tf.ensure_shape(image, (image_size, image_size, 3))


def _options(deterministic: bool = True) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return options


def evaluation_batches(source: tf.data.Dataset, inputs, *, batch_size: int, with_key: bool = False,
                       cache: bool = False) -> tf.data.Dataset:  # fmt: skip
    """One pass over ``source`` in its order, as batches of ``(inputs(example), labels)`` (plus ``keys``
    if ``with_key``): for validation and evaluation. ``inputs`` maps an example to the model input;
    ``cache`` keeps those in memory."""

    def element(example):
        x = inputs(example)
        label = tf.cast(example["label"], tf.int32)
        return (x, label, example["key"]) if with_key else (x, label)

    ds = source.with_options(_options()).map(element, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def expression_dataset(source: tf.data.Dataset, *, image_size: int, batch_size: int, with_key: bool = False,
                       cache: bool = False) -> tf.data.Dataset:  # fmt: skip
    """One pass over ``source`` in its order, as batches of ``(images, labels)`` (plus ``keys`` if
    ``with_key``): for validation and evaluation. ``cache`` keeps the decoded crops in memory."""

    def image(example):
        return prepare_eval(example["image"], example["box"], image_size)

    return evaluation_batches(source, image, batch_size=batch_size, with_key=with_key, cache=cache)


class _SplitArrays:
    """What every split holds in memory: ``boxes`` (N, 4) float32, ``labels`` (N,) int32, ``keys``."""

    boxes: np.ndarray
    labels: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)

    def image_reader(self):
        """``read(index)``: the encoded image at ``index`` (an int tensor), a scalar string tensor."""
        raise NotImplementedError

    def as_dataset(self) -> tf.data.Dataset:
        """The split as a dataset of examples in its order (for one evaluation pass, e.g. SCN's report)."""
        read = self.image_reader()
        ds = tf.data.Dataset.from_tensor_slices(
            {"index": np.arange(len(self), dtype=np.int64), "box": self.boxes, "label": self.labels,
             "key": self.keys.tolist()}
        )  # fmt: skip
        return ds.map(lambda example: {"image": read(example.pop("index")), **example},
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # fmt: skip


@dataclasses.dataclass
class InMemorySplit(_SplitArrays):
    """A split's encoded images, face boxes and labels, all held in memory (the images also in the
    input graph, as one constant): for small splits and tests. Training uses :class:`FileBackedSplit`."""

    images: np.ndarray  # object array of bytes
    boxes: np.ndarray  # (N, 4) float32
    labels: np.ndarray  # (N,) int32
    keys: np.ndarray  # object array of the keys (bytes, as the source yields them)

    @classmethod
    def load(cls, source: tf.data.Dataset, max_bytes: int = 8 * 2**30) -> InMemorySplit:
        images, boxes, labels, keys, total = [], [], [], [], 0
        for example in source.as_numpy_iterator():
            images.append(example["image"])
            boxes.append(example["box"])
            labels.append(example["label"])
            keys.append(example["key"])
            total += len(example["image"])
            if total > max_bytes:
                raise RunError(
                    f"the split's encoded images exceed {max_bytes / 2**30:.1f} GiB, too many to hold in "
                    "memory; a FileBackedSplit reads them from disk"
                )
        if not images:
            raise RunError("the training split is empty")
        return cls(np.array(images, dtype=object), np.stack(boxes).astype(np.float32),
                   np.array(labels, np.int32), np.array(keys, dtype=object))  # fmt: skip

    def image_reader(self):
        images = tf.constant(self.images.tolist(), tf.string)
        return lambda index: images[index]

    def as_dataset(self) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": self.images.tolist(),
                "box": self.boxes,
                "label": self.labels,
                "key": self.keys.tolist(),
            }
        )


# What one sample of a FileBackedSplit holds in memory besides its key: box, label, store index entry,
# the key's object and pointer, and their copies as tensors in the input pipeline (an upper bound).
RESIDENT_BYTES_PER_SAMPLE = 160


@dataclasses.dataclass
class FileBackedSplit(_SplitArrays):
    """A split whose encoded images live in a file-backed :class:`~kdface.data.image_store.ImageStore`
    (read per element by native ops); boxes, labels and keys are held in memory."""

    store: ImageStore
    boxes: np.ndarray  # (N, 4) float32
    labels: np.ndarray  # (N,) int32
    keys: np.ndarray  # object array of the keys (bytes, as the source yields them)

    @classmethod
    def load(cls, source: tf.data.Dataset, cache_dir, max_bytes: int = 8 * 2**30) -> FileBackedSplit:
        """Read ``source`` once for its boxes, labels, keys and content key, and open the store of its
        images in ``cache_dir`` (written there by a second pass if it is not there yet).

        ``max_bytes`` bounds what is held in memory (:data:`RESIDENT_BYTES_PER_SAMPLE` plus the key a
        sample); the images are never held, whatever their size."""
        boxes, labels, keys, resident = [], [], [], 0

        def keep(batch):
            nonlocal resident
            boxes.append(batch["box"].astype(np.float32))
            labels.append(batch["label"].astype(np.int32))
            keys.append(batch["key"])
            resident += RESIDENT_BYTES_PER_SAMPLE * len(batch["key"]) + sum(map(len, batch["key"]))
            if resident > max_bytes:
                raise RunError(
                    f"the training split's keys, boxes and labels exceed {max_bytes / 2**30:.3g} GiB "
                    "(its images are read from disk). Raise --max-memory-gb, or train on a subset"
                )

        loaded = store_source(source, cache_dir, keep)
        if loaded is None:
            raise RunError("the training split is empty")
        store, written = loaded
        if written:
            print(f"wrote the training split's {len(store)} encoded images to {store.folder} (once; read "
                  "from there while training)")  # fmt: skip
        return cls(store, np.concatenate(boxes), np.concatenate(labels), np.concatenate(keys).astype(object))

    @classmethod
    def from_split(cls, split: InMemorySplit, cache_dir) -> FileBackedSplit:
        """``split``'s images written to (or found in) a store in ``cache_dir``; the arrays are shared."""
        key = StoreKey()
        for image in split.images:
            key.update(image)
        lengths = [len(image) for image in split.images]
        store, _ = cached_store(Path(cache_dir), key.hexdigest(), lengths, lambda: iter(split.images))
        return cls(store, split.boxes, split.labels, split.keys)

    def image_reader(self):
        return self.store.reader()


def epoch_indices(epoch_seed, labels: np.ndarray, num_classes: int, balanced: bool):
    """The element indices of one epoch (a tensor): a permutation of all ``N`` elements, or with
    ``balanced`` ``N`` draws with replacement, ``P(i) = 1 / n_class(i)`` normalised (every class is
    drawn equally often on average)."""
    n = len(labels)
    u = tf.random.stateless_uniform([n], tf.stack([tf.cast(epoch_seed, tf.int64), tf.constant(7, tf.int64)]))
    if not balanced:
        return tf.argsort(u, stable=True)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = 1.0 / counts[labels]
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    cdf = tf.constant(cdf, tf.float64)
    return tf.minimum(tf.searchsorted(cdf, tf.cast(u, tf.float64), side="right"), n - 1)


def expression_training_stream(
    split: FileBackedSplit | InMemorySplit,
    *,
    image_size: int,
    batch_size: int,
    num_classes: int,
    augment: ExpressionAugment = ExpressionAugment(),
    erasing: ErasingConfig | None = None,
    view_erasing: ErasingConfig | None = None,
    with_index: bool = False,
    balanced: bool = False,
    seed: int = 0,
    start_epoch: int = 0,
    skip_batches: int = 0,
):
    """The endless training stream, epoch ``start_epoch`` from batch ``skip_batches`` on.

    Elements are ``(image, label)``, or with ``erasing`` ``({"image": clean, "masked": erased}, label)``
    where both views share the noise, crop and flip and differ only in the erased box (IGKD).
    ``view_erasing`` erases the one training view itself (SCN). ``with_index`` adds ``"index": i`` to
    the inputs (a dict then), ``i`` the sample's position in ``split`` (SCN keeps its mutable labels in
    a variable indexed by it). Each epoch is ``N // batch_size`` full batches. The encoded images are
    read by index through ``split.image_reader()``: from disk for a :class:`FileBackedSplit`.
    """
    read_image = split.image_reader()
    boxes = tf.constant(split.boxes)
    labels = tf.constant(split.labels)

    def element(seed, index):
        clean = prepare_train(read_image(index), boxes[index], seed, image_size, augment)
        if view_erasing is not None:
            clean = random_erasing(clean, _fold(seed, _ERASE), view_erasing)
        inputs = {"image": clean}
        if erasing is not None:
            inputs["masked"] = random_erasing(clean, _fold(seed, _ERASE), erasing)
        if with_index:
            inputs["index"] = tf.cast(index, tf.int32)
        return (inputs if len(inputs) > 1 else clean), labels[index]

    return indexed_stream(element, split.labels, batch_size=batch_size, num_classes=num_classes,
                          balanced=balanced, seed=seed, start_epoch=start_epoch, skip_batches=skip_batches)  # fmt: skip


def indexed_stream(element, labels: np.ndarray, *, batch_size: int, num_classes: int, balanced: bool = False,
                   seed: int = 0, start_epoch: int = 0, skip_batches: int = 0):  # fmt: skip
    """The endless epoch stream of ``element(seed, index)`` over a split with random access by index
    (``labels``: the split's, for the class-balanced sampler), from epoch ``start_epoch``, batch
    ``skip_batches``. ``seed`` is the element's stateless seed, ``(epoch seed, position in the epoch)``;
    each epoch is ``N // batch_size`` full batches."""
    from kdface.data.streams import epoch_stream

    def one_epoch(epoch_seed, skip):
        order = epoch_indices(epoch_seed, labels, num_classes, balanced)
        ds = tf.data.Dataset.from_tensor_slices(order).enumerate().skip(skip)  # skip before decoding
        ds = ds.map(lambda position, index: element(tf.stack([epoch_seed, position]), index),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # fmt: skip
        return ds.batch(batch_size, drop_remainder=True)

    stream = epoch_stream(one_epoch, seed=seed, batch_size=batch_size, start_epoch=start_epoch,
                          skip_batches=skip_batches)  # fmt: skip
    return stream.with_options(_options())
