"""Neutral/target pairs for methods that compare two faces of one person (DoE, spec
``vitse_doe_fer.md`` §2-3): what input a method's model takes, and the tf.data pipeline that feeds it.

Input spec
----------
A method declares what its deployable model takes with an :class:`InputSpec`: :data:`IMAGE_INPUT`
(``(B, S, S, 3)``, every single-image method, unchanged) or :data:`PAIR_INPUT`, **one tensor**
``(B, 2, S, S, 3)`` with the neutral face at index :data:`NEUTRAL` (0) and the target at
:data:`TARGET` (1) of axis 1, RGB in ``[0, 1]`` like every kdface model. One array rather than two
named inputs keeps ``model.predict(np.stack([neutral, target], axis=1))`` a plain call, gives the
saved model and its LiteRT export one input as every other kdface model has, and is the original
DoE's layout (``[B, 2, C, H, W]``). Inside the model, :func:`unstack_pair` splits it again. The
layout is the pair models' own (:mod:`kdface.models.doe`: :data:`NEUTRAL`, :data:`TARGET`,
:func:`~kdface.models.doe.split_pair`), so the pipeline and the models cannot disagree. The model
card records the spec (``"input": "pair"``, :meth:`InputSpec.card`). Whatever reads data for a saved
model asks its spec (:meth:`InputSpec.of`) for the split (:meth:`InputSpec.load_split`: pairs, or a
pair dataset's target images) and its evaluation view (:meth:`InputSpec.eval_dataset`): ``test.py``
and ``python -m kdface.export`` (calibration, comparison) take pair models that way.

Pipeline
--------
Both images of a pair go through the expression pipeline's own steps
(:mod:`kdface.tasks.expressions.pipeline`), each with its own face box: for evaluation its test view
(:func:`~kdface.tasks.expressions.pipeline.prepare_eval`); for training its training view
(:func:`~kdface.tasks.expressions.pipeline.prepare_train`) drawn from **one seed for both**, so the
two images get the same flip, the same crop (the same crop window when the boxes match, as within a
CK+ sequence) and the same noise draw: the difference of their embeddings measures the expression,
not the augmentation. Training reads pairs by index from a :class:`PairSplit` in
epoch-indexed streams (:func:`~kdface.tasks.expressions.pipeline.indexed_stream`), so resume is exact
as for single images.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from kdface.models.doe import NEUTRAL, TARGET, split_pair
from kdface.tasks.expressions.pipeline import (
    ExpressionAugment,
    FileBackedSplit,
    InMemorySplit,
    evaluation_batches,
    expression_dataset,
    indexed_stream,
    prepare_eval,
    prepare_train,
)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a method's model takes: ``"image"`` ``(B, S, S, 3)`` or ``"pair"`` ``(B, 2, S, S, 3)``."""

    kind: str = "image"

    KINDS = ("image", "pair")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"input kind must be one of {self.KINDS}, got {self.kind!r}")

    @property
    def pairs(self) -> bool:
        return self.kind == "pair"

    def shape(self, image_size: int) -> tuple[int, ...]:
        """The model input's shape without the batch axis."""
        image = (int(image_size), int(image_size), 3)
        return (2, *image) if self.pairs else image

    def card(self) -> dict:
        """The model card's field naming the input (``{"input": "pair"}``)."""
        return {"input": self.kind}

    @classmethod
    def from_card(cls, card: dict) -> InputSpec:
        """The spec a model card records; cards without one are single-image models."""
        return cls(card.get("input", "image"))

    @classmethod
    def of(cls, model, card: dict) -> InputSpec:
        """The spec of ``model`` (a Keras model or an exported one): its card's, or, for a model without
        a card naming one, its input's rank (``(B, 2, S, S, 3)``: pairs)."""
        if "input" in card:
            return cls.from_card(card)
        return PAIR_INPUT if len(model.input_shape) == 5 else IMAGE_INPUT

    @property
    def unit(self) -> str:
        """What one example of the input is, in words (``"face"`` or ``"pair"``)."""
        return "pair" if self.pairs else "face"

    def image_size(self, input_shape) -> int:
        """The side ``S`` of a model's input shape (with its batch axis)."""
        return int(input_shape[2 if self.pairs else 1])

    def describe(self, image_size: int | None = None) -> str:
        """The input in words, for export records and messages."""
        s = "S" if image_size is None else int(image_size)
        if self.pairs:
            return (f"float32 (neutral, target) pairs (B, 2, {s}, {s}, 3) in [0, 1], the neutral face at index "
                    f"{NEUTRAL} of axis 1 and the target at {TARGET}")  # fmt: skip
        return f"float32 crops (B, {s}, {s}, 3) in [0, 1]"

    def random(self, batch: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch`` random inputs in ``[0, 1]`` (latency measurements)."""
        return rng.random((batch, *self.shape(image_size)), dtype=np.float32)

    def load_split(self, dataset: str, split: str, data_dir=None, tfds_dir="datasets/tfds",
                   on_bad_sample: str = "error", options=None):  # fmt: skip
        """A split as this input reads it: a pair dataset's :class:`~kdface.tasks.expressions.sources.PairSource`
        for pairs, an :class:`~kdface.tasks.expressions.sources.ExpressionSource` (a pair dataset's
        target images) for single images; ``options`` the pair protocol
        (:class:`~kdface.tasks.expressions.sources.PairOptions`, e.g. a card's,
        :func:`~kdface.tasks.expressions.evaluation.pair_options_of`)."""
        from kdface.tasks.expressions.sources import load_expression_split, load_pair_split

        if self.pairs:
            return load_pair_split(
                dataset, split, data_dir, tfds_dir, on_bad_sample=on_bad_sample, options=options
            )
        return load_expression_split(dataset, split, data_dir, tfds_dir, on_bad_sample=on_bad_sample,
                                     pair_options=options)  # fmt: skip

    def eval_dataset(self, source: tf.data.Dataset, *, image_size: int, batch_size: int, with_key: bool = False,
                     cache: bool = False) -> tf.data.Dataset:  # fmt: skip
        """The evaluation view of a :meth:`load_split` source's ``dataset``: batches of ``(inputs, labels)``
        (plus ``keys``), inputs ``(B, S, S, 3)`` or ``(B, 2, S, S, 3)``."""
        view = pair_dataset if self.pairs else expression_dataset
        return view(source, image_size=image_size, batch_size=batch_size, with_key=with_key, cache=cache)


IMAGE_INPUT = InputSpec("image")
PAIR_INPUT = InputSpec("pair")


def stack_pair(neutral, target):
    """``(..., S, S, 3)`` neutral and target images -> ``(..., 2, S, S, 3)`` pairs."""
    return tf.stack([neutral, target], axis=-4)


def unstack_pair(pairs):
    """``(B, 2, S, S, 3)`` pairs -> ``(neutral, target)``, each ``(B, S, S, 3)`` (tensors or Keras inputs)."""
    return split_pair(pairs)


def interleaved_images(source: tf.data.Dataset) -> tf.data.Dataset:
    """A pair source as single images, neutral then target of each pair (``image``, ``box``, ``label``,
    ``key``: the pair's label and key on both): what a :class:`PairSplit`'s image split holds."""

    def both(pair):
        return {
            "image": tf.stack([pair["neutral"], pair["target"]]),
            "box": tf.stack([pair["neutral_box"], pair["target_box"]]),
            "label": tf.stack([pair["label"], pair["label"]]),
            "key": tf.stack([pair["key"], pair["key"]]),
        }

    return source.map(both).unbatch()


@dataclasses.dataclass
class PairSplit:
    """A split of pairs with random access by index: pair ``i``'s neutral image is image ``2 i`` of
    ``images``, its target image ``2 i + 1``; ``labels`` and ``keys`` are the pairs' (``labels`` may be
    replaced, e.g. by label noise)."""

    images: FileBackedSplit | InMemorySplit
    labels: np.ndarray  # (N,) int32
    keys: np.ndarray  # object array of the pair keys (bytes)

    @classmethod
    def load(cls, source: tf.data.Dataset, cache_dir=None, max_bytes: int = 8 * 2**30) -> PairSplit:
        """``source`` (a :class:`~kdface.tasks.expressions.sources.PairSource`'s dataset) with its
        images in a file-backed store in ``cache_dir``, or in memory without one (small splits, tests)."""
        flat = interleaved_images(source)
        if cache_dir is None:
            images = InMemorySplit.load(flat, max_bytes)
        else:
            images = FileBackedSplit.load(flat, cache_dir, max_bytes)
        return cls(images, images.labels[0::2].copy(), images.keys[0::2].copy())

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


def pair_view(neutral, neutral_box, target, target_box, image_size: int, seed=None,
              augment: ExpressionAugment | None = None):  # fmt: skip
    """One pair as ``(2, S, S, 3)`` in ``[0, 1]``: both test views, or with ``seed`` both training
    views drawn from that one seed (the same flip, crop and noise draw)."""
    if seed is None:
        views = [prepare_eval(neutral, neutral_box, image_size), prepare_eval(target, target_box, image_size)]
    else:
        views = [prepare_train(image, box, seed, image_size, augment or ExpressionAugment())
                 for image, box in ((neutral, neutral_box), (target, target_box))]  # fmt: skip
    return stack_pair(*views)


def pair_dataset(source: tf.data.Dataset, *, image_size: int, batch_size: int, with_key: bool = False,
                 cache: bool = False) -> tf.data.Dataset:  # fmt: skip
    """One pass over a pair source in its order, as batches of ``(pairs (B, 2, S, S, 3), labels)``
    (plus ``keys`` if ``with_key``): for validation and evaluation. ``cache`` keeps the crops in memory."""

    def view(pair):
        return pair_view(pair["neutral"], pair["neutral_box"], pair["target"], pair["target_box"], image_size)

    return evaluation_batches(source, view, batch_size=batch_size, with_key=with_key, cache=cache)


def pair_training_stream(
    split: PairSplit,
    *,
    image_size: int,
    batch_size: int,
    num_classes: int,
    augment: ExpressionAugment | None = None,
    balanced: bool = False,
    seed: int = 0,
    start_epoch: int = 0,
    skip_batches: int = 0,
):
    """The endless training stream of ``(pairs (B, 2, S, S, 3), labels)``, epoch ``start_epoch`` from
    batch ``skip_batches`` on; both images of a pair share one augmentation draw (module doc).
    ``augment`` defaults to the standard :class:`~kdface.tasks.expressions.pipeline.ExpressionAugment`."""
    augment = augment or ExpressionAugment()
    read_image = split.images.image_reader()
    boxes = tf.constant(split.images.boxes)
    labels = tf.constant(split.labels)

    def element(seed, index):
        first = 2 * tf.cast(index, tf.int32)
        view = pair_view(read_image(first + NEUTRAL), boxes[first + NEUTRAL], read_image(first + TARGET),
                         boxes[first + TARGET], image_size, seed, augment)  # fmt: skip
        return view, labels[index]

    return indexed_stream(element, split.labels, batch_size=batch_size, num_classes=num_classes,
                          balanced=balanced, seed=seed, start_epoch=start_epoch, skip_batches=skip_batches)  # fmt: skip
