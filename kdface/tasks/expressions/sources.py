"""Expression datasets by name: ``load_expression_split("raf-db", "test", data_dir=...)`` prepares
the TFDS builder over the raw tree (once, :mod:`kdface.data.sources`) and returns the split as an
:class:`ExpressionSource`, which also carries the class names and the per-class counts of the split
(for a class-balanced sampler).

Several user names share one builder (``raf-db`` and ``occlusion-raf-db`` are splits of the prepared
RAF-DB), so each raw folder is prepared once.

CK+ (``ck+``, and SynthFaces' CK+ tree ``synthface-ck+``) is prepared as neutral/target **pairs** of
one subject, one TFDS split per subject-independent fold (:mod:`kdface.tasks.expressions.ckplus`):
:func:`load_pair_split` returns a :class:`PairSource`, and :func:`load_expression_split` the same
split's target images alone (for single-image methods). Their splits name the test fold:
``test-fold3`` is fold 3's pairs, ``train-fold3`` the other folds'; ``test`` / ``train`` are fold 0's
(:func:`pair_tfds_split`). The protocol's options (:class:`PairOptions`: folds, peak frames, neutral
pairs) are part of what is prepared.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from kdface.data.sources import (
    DEFAULT_TFDS_DIR,
    check_raw_dir,
    encoded_images,
    prepare_builder,
    read_split,
    split_records,
)
from kdface.errors import ConfigError, MissingFileError, UnknownNameError
from kdface.io.atomic import write_json
from kdface.registry import unknown_name_message
from kdface.tasks.expressions import builders, ckplus
from kdface.tasks.expressions.labels import CLASS_NAMES, class_names

EXPRESSION_BUILDERS = {
    "synthface": builders.KdfaceSynthfacesExpressions,
    "rafdb": builders.KdfaceRafdb,
    "fedro": builders.KdfaceFedro,
    "ferplus": builders.KdfaceFerplus,
    "affectnet": builders.KdfaceAffectnet,
    "ckplus": builders.KdfaceCkplus,
    "synthface-ckplus": builders.KdfaceSynthfacesCkplus,
}
PAIR_BUILDERS = ("ckplus", "synthface-ckplus")  # builders of pairs, split by fold
# User-facing name -> (builder key, {user split: TFDS split of that builder}).
EXPRESSION_SPLITS = {
    "synthface": ("synthface", {"train": "train", "test": "test", "occluded": "occluded"}),
    "raf-db": ("rafdb", {"train": "train", "test": "test"}),
    "occlusion-raf-db": ("rafdb", {"test": "occlusion"}),
    "ferplus": ("ferplus", {"train": "train", "valid": "valid", "train-valid": "trainvalid", "test": "test"}),
    "occlusion-ferplus": ("ferplus", {"test": "occlusion"}),
    "affectnet": ("affectnet", {"train": "train", "val": "val"}),
    "occlusion-affectnet": ("affectnet", {"test": "occlusion"}),
    "fed-ro": ("fedro", {"test": "test"}),
    # pairs: train/test of fold 0, or of fold k as train-fold<k>/test-fold<k> (pair_tfds_split)
    "ck+": ("ckplus", {"train": "train", "test": "test"}),
    "synthface-ck+": ("synthface-ckplus", {"train": "train", "test": "test"}),
}
EXPRESSION_TEST_SPLITS = {
    "synthface": ("test", "occluded"),
    "raf-db": ("test",),
    "occlusion-raf-db": ("test",),
    "ferplus": ("test",),
    "occlusion-ferplus": ("test",),
    "affectnet": ("val",),
    "occlusion-affectnet": ("test",),
    "fed-ro": ("test",),
    "ck+": ("test",),
    "synthface-ck+": ("test",),
}
# Default class count per builder, and the counts a user may ask for (8 on a 7-class dataset: a
# contempt output with no examples; 7 on AffectNet: contempt left out when preparing).
_DEFAULT_CLASSES = {"synthface": 7, "rafdb": 7, "fedro": 7, "ferplus": 8, "affectnet": 8, "ckplus": 8,
                    "synthface-ckplus": 8}  # fmt: skip
_ALLOWED_CLASSES = {
    "synthface": (7, 8),
    "rafdb": (7, 8),
    "fedro": (7, 8),
    "ferplus": (8,),
    "affectnet": (7, 8),
    "ckplus": (8,),  # contempt is a CK+ label, and neutral the optional 8th class
    "synthface-ckplus": (8,),
}
_OCCLUSION_HINT = {
    "rafdb": "rafdb_occlusion_list.txt",
    "ferplus": builders.FERPLUS_OCCLUSION_LIST,
    "affectnet": builders.AFFECTNET_OCCLUSION_LIST,
}
_LABELS_FILE = "kdface_labels.json"


@dataclasses.dataclass
class ExpressionSource:
    """A prepared expression split. ``dataset`` yields dicts ``image`` (encoded bytes), ``label``
    (int64 kdface class index), ``box`` (float32 ``(4,)``), ``key``; ``class_counts[c]`` is the
    number of examples of class ``c`` in this split (slice included), ``len == num_classes``."""

    dataset: tf.data.Dataset
    name: str
    split: str
    class_names: tuple[str, ...]
    num_classes: int
    size: int
    data_dir: Path
    skipped: list = dataclasses.field(default_factory=list)  # records of samples skipped while preparing
    class_counts: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PairOptions:
    """CK+'s protocol options (:mod:`kdface.tasks.expressions.ckplus`): ``folds`` of the
    subject-independent cross-validation, the ``peak_frames`` last frames each paired with the onset,
    and ``neutral_pairs`` (the optional 8th class)."""

    folds: int = ckplus.DEFAULT_FOLDS
    peak_frames: int = ckplus.DEFAULT_PEAK_FRAMES
    neutral_pairs: bool = False


@dataclasses.dataclass
class PairSource:
    """A prepared split of pairs. ``dataset`` yields dicts ``neutral`` and ``target`` (encoded bytes),
    ``neutral_box`` and ``target_box`` (float32 ``(4,)``), ``label`` (int64 kdface class), ``key``,
    ``subject``, ``sequence`` and ``fold`` (int32); ``class_counts`` as :class:`ExpressionSource`'s."""

    dataset: tf.data.Dataset
    name: str
    split: str
    class_names: tuple[str, ...]
    num_classes: int
    size: int
    data_dir: Path
    options: PairOptions
    folds: tuple[int, ...]  # the folds this split holds
    skipped: list = dataclasses.field(default_factory=list)
    class_counts: list = dataclasses.field(default_factory=list)


def expression_datasets() -> list[str]:
    return sorted(EXPRESSION_SPLITS)


def pair_datasets() -> list[str]:
    """The expression datasets that have pairs (:func:`load_pair_split`)."""
    return sorted(name for name, (key, _) in EXPRESSION_SPLITS.items() if key in PAIR_BUILDERS)


_FOLD_SPLIT = re.compile(r"(train|test)(?:-fold([0-9]{1,3}))?")


def pair_tfds_split(split: str, folds: int = ckplus.DEFAULT_FOLDS) -> tuple[str, tuple[int, ...]]:
    """``(TFDS split, its folds)`` of a pair dataset's split: ``test-fold3`` is fold 3, ``train-fold3``
    every other fold, ``test`` / ``train`` those of fold 0; a slice applies to each fold
    (``train-fold3[:90%]`` -> ``fold0[:90%]+fold1[:90%]+...``)."""
    base, _, slicing = split.partition("[")
    match = _FOLD_SPLIT.fullmatch(base)
    if match is None:
        raise UnknownNameError(f"unknown split {split!r} of a pair dataset: expected train, test, "
                               f"train-fold<k> or test-fold<k> (k in 0..{folds - 1})")  # fmt: skip
    kind, fold = match.group(1), int(match.group(2) or 0)
    if fold >= folds:
        raise ConfigError(
            f"split {split!r}: fold {fold} of {folds}-fold cross-validation (folds 0..{folds - 1})"
        )
    chosen = (fold,) if kind == "test" else tuple(k for k in range(folds) if k != fold)
    suffix = f"[{slicing}" if slicing else ""
    return "+".join(f"fold{k}{suffix}" for k in chosen), chosen


def _write_labels(builder, path: Path) -> None:
    """Every prepared split's labels in stored order (what ``as_dataset(shuffle_files=False)``
    yields), so that class counts of any slice need no pass over the images."""
    labels = {}
    for split in builder.info.splits:
        ds = builder.as_dataset(split=split, decoders=encoded_images(builder), shuffle_files=False)
        ds = ds.map(lambda example: example["label"])
        labels[split] = [int(v) for v in ds.as_numpy_iterator()]
    write_json(path, labels)


def _class_counts(builder, tfds_split: str, num_classes: int) -> list[int]:
    """Examples per class in ``tfds_split`` (a slice included); longer than ``num_classes`` only if the
    split holds a label beyond it."""
    labels_file = Path(builder.data_dir) / _LABELS_FILE
    if not labels_file.exists():  # prepared by an older kdface: count once, keep it
        _write_labels(builder, labels_file)
    labels = json.loads(labels_file.read_text())
    instructions = tfds.core.ReadInstruction.from_spec(tfds_split).to_absolute(dict(builder.info.splits))
    chosen = [label for ins in instructions for label in labels[ins.splitname][ins.from_ : ins.to]]
    counts = [0] * max(num_classes, max(chosen, default=-1) + 1)
    for label in chosen:
        counts[label] += 1
    return counts


def held_out_split(split: str, folds: int = ckplus.DEFAULT_FOLDS) -> str | None:
    """The test split of the subjects a model trained on the pair dataset split ``split`` never saw:
    ``test-fold3`` for ``train-fold3`` (a slice too), ``test`` (fold 0) for ``train``; ``None`` for any
    split that is not one fold's training folds."""
    base = split.partition("[")[0]
    match = _FOLD_SPLIT.fullmatch(base)
    if match is None or match.group(1) != "train":
        return None
    fold = int(match.group(2) or 0)
    if fold >= folds:
        return None
    return f"test-fold{fold}" if match.group(2) is not None else "test"


def is_pair_dataset(name: str) -> bool:
    """Whether ``name`` is an expression dataset of neutral/target pairs (:func:`pair_datasets`)."""
    return name in EXPRESSION_SPLITS and EXPRESSION_SPLITS[name][0] in PAIR_BUILDERS


def check_expression_inputs(name: str, splits=(), data_dir=None, tfds_dir=None, num_classes=None, *,
                            check_dir: bool = False) -> None:  # fmt: skip
    """The dataset and split names (:class:`~kdface.errors.UnknownNameError`, with a close match), the
    class count (:class:`~kdface.errors.ConfigError`) and, with ``check_dir``, the raw folder and
    ``tfds_dir`` (:func:`kdface.data.sources.check_raw_dir`); reads only, so it runs before anything
    is written."""
    if name not in EXPRESSION_SPLITS:
        raise UnknownNameError(unknown_name_message("expression dataset", name, EXPRESSION_SPLITS))
    builder_key, known = EXPRESSION_SPLITS[name]
    for split in splits or ():
        base = split.partition("[")[0]
        if builder_key in PAIR_BUILDERS and _FOLD_SPLIT.fullmatch(base):
            continue  # the fold's range is checked against the prepared folds (pair_tfds_split)
        if base not in known:
            hint = " (or train-fold<k> / test-fold<k>)" if builder_key in PAIR_BUILDERS else ""
            raise UnknownNameError(unknown_name_message("split", split, known, f" for {name!r}{hint}"))
    if num_classes is not None and int(num_classes) not in _ALLOWED_CLASSES[builder_key]:
        allowed = " or ".join(map(str, _ALLOWED_CLASSES[builder_key]))
        raise ConfigError(f"--num-classes {num_classes}: {name!r} has num_classes {allowed}")
    if check_dir:
        check_raw_dir(EXPRESSION_BUILDERS[builder_key], name, data_dir, tfds_dir)


def load_expression_split(
    name: str,
    split: str,
    data_dir=None,
    tfds_dir=DEFAULT_TFDS_DIR,
    synthfaces_preset: str = "demo",
    on_bad_sample: str = "error",
    num_classes: int | None = None,
    pair_options: PairOptions | None = None,
) -> ExpressionSource:
    """A split of an expression dataset (:func:`expression_datasets`) as an :class:`ExpressionSource`.

    ``split`` may carry a TFDS slice, e.g. ``train[:90%]``. ``num_classes`` defaults to 7 for
    ``synthface``, ``raf-db`` and ``fed-ro`` (and their occlusion sets) and 8 for ``ferplus``,
    ``affectnet`` and the CK+ sets; ``affectnet`` also takes 7 (contempt left out), a 7-class dataset
    also takes 8 (a contempt class without examples). ``on_bad_sample``: ``error`` raises the first bad
    sample of the split (after preparing), ``skip`` leaves bad samples out and lists them in
    ``ExpressionSource.skipped``. A pair dataset (:func:`pair_datasets`) gives its pairs' target images
    (each frame once), under ``pair_options`` (default :class:`PairOptions`).
    """
    check_expression_inputs(name, [split], data_dir, num_classes=num_classes, check_dir=True)
    builder_key, splits = EXPRESSION_SPLITS[name]
    if builder_key in PAIR_BUILDERS:
        pairs = load_pair_split(
            name, split, data_dir, tfds_dir, synthfaces_preset, on_bad_sample, pair_options
        )
        targets = pairs.dataset.map(
            lambda pair: {
                "image": pair["target"],
                "label": pair["label"],
                "box": pair["target_box"],
                "key": pair["key"],
            }
        )
        return ExpressionSource(targets, name, split, pairs.class_names, pairs.num_classes, pairs.size, pairs.data_dir,
                                pairs.skipped, pairs.class_counts)  # fmt: skip
    base, _, slicing = split.partition("[")
    num_classes = _DEFAULT_CLASSES[builder_key] if num_classes is None else int(num_classes)
    builder_kwargs = {"num_classes": num_classes} if builder_key == "affectnet" else None
    builder, raw_dir, skipped = prepare_builder(
        EXPRESSION_BUILDERS[builder_key], f"expression-{builder_key}", data_dir, tfds_dir, synthfaces_preset,
        on_bad_sample, builder_kwargs, after_prepare=lambda b: _write_labels(b, Path(b.data_dir) / _LABELS_FILE),
    )  # fmt: skip
    part = splits[base]
    skipped = split_records(skipped, [part], on_bad_sample)
    if part not in builder.info.splits:
        hint = _OCCLUSION_HINT.get(builder_key, "")
        raise MissingFileError(
            f"{name!r}: the prepared {builder_key} data in {raw_dir} has no {part!r} split"
            + (f" (put {hint} into {raw_dir})" if hint else "")
        )
    tfds_split = part + (f"[{slicing}" if slicing else "")
    ds = read_split(builder, tfds_split)
    size = int(builder.info.splits[tfds_split].num_examples)
    counts = _class_counts(builder, tfds_split, num_classes)
    if len(counts) > num_classes:
        raise ConfigError(
            f"{name!r} split {split!r} holds labels up to {len(counts) - 1} ({CLASS_NAMES[len(counts) - 1]}), "
            f"more than num_classes={num_classes}"
        )
    ds = ds.map(
        lambda example: {
            "image": example["image"],
            "label": tf.cast(example["label"], tf.int64),
            "box": example["box"],
            "key": example["key"],
        }
    )
    return ExpressionSource(
        ds, name, split, class_names(num_classes), num_classes, size, raw_dir, skipped, counts
    )


def load_pair_split(
    name: str,
    split: str,
    data_dir=None,
    tfds_dir=DEFAULT_TFDS_DIR,
    synthfaces_preset: str = "demo",
    on_bad_sample: str = "error",
    options: PairOptions | None = None,
) -> PairSource:
    """A split of a pair dataset (:func:`pair_datasets`: ``ck+``, ``synthface-ck+``) as a
    :class:`PairSource`: ``train`` / ``test`` of fold 0, ``train-fold<k>`` / ``test-fold<k>`` of fold
    ``k`` (:func:`pair_tfds_split`), a slice allowed. ``options`` (default :class:`PairOptions`) pick
    the prepared copy; ``on_bad_sample`` as in :func:`load_expression_split`.
    """
    options = options or PairOptions()
    check_expression_inputs(name, [split], data_dir, check_dir=True)
    builder_key, _ = EXPRESSION_SPLITS[name]
    if builder_key not in PAIR_BUILDERS:
        raise UnknownNameError(
            f"{name!r} has no neutral/target pairs; the pair datasets are {pair_datasets()}"
        )
    tfds_split, folds = pair_tfds_split(split, options.folds)
    builder, raw_dir, skipped = prepare_builder(
        EXPRESSION_BUILDERS[builder_key], f"expression-{builder_key}", data_dir, tfds_dir, synthfaces_preset,
        on_bad_sample, dataclasses.asdict(options),
        after_prepare=lambda b: _write_labels(b, Path(b.data_dir) / _LABELS_FILE),
    )  # fmt: skip
    skipped = split_records(skipped, [f"fold{k}" for k in folds], on_bad_sample)
    num_classes = _DEFAULT_CLASSES[builder_key]
    counts = _class_counts(builder, tfds_split, num_classes)
    ds = read_split(builder, tfds_split).map(
        lambda example: {
            "neutral": example["neutral"],
            "target": example["target"],
            "neutral_box": example["neutral_box"],
            "target_box": example["target_box"],
            "label": tf.cast(example["label"], tf.int64),
            "key": example["key"],
            "subject": example["subject"],
            "sequence": example["sequence"],
            "fold": example["fold"],
        }
    )
    size = int(builder.info.splits[tfds_split].num_examples)
    return PairSource(ds, name, split, class_names(num_classes), num_classes, size, raw_dir, options, folds,
                      skipped, counts)  # fmt: skip
