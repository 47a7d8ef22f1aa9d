"""Expression datasets by name: ``load_expression_split("raf-db", "test", data_dir=...)`` prepares
the TFDS builder over the raw tree (once, :mod:`kdface.data.sources`) and returns the split as an
:class:`ExpressionSource`, which also carries the class names and the per-class counts of the split
(for a class-balanced sampler).

Several user names share one builder (``raf-db`` and ``occlusion-raf-db`` are splits of the prepared
RAF-DB), so each raw folder is prepared once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from kdface.data.sources import DEFAULT_TFDS_DIR, check_raw_dir, prepare_builder, read_split, split_records
from kdface.errors import ConfigError, MissingFileError, UnknownNameError
from kdface.io.atomic import write_json
from kdface.registry import unknown_name_message
from kdface.tasks.expressions import builders
from kdface.tasks.expressions.labels import CLASS_NAMES, class_names

EXPRESSION_BUILDERS = {
    "synthface": builders.KdfaceSynthfacesExpressions,
    "rafdb": builders.KdfaceRafdb,
    "fedro": builders.KdfaceFedro,
    "ferplus": builders.KdfaceFerplus,
    "affectnet": builders.KdfaceAffectnet,
}
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
}
# Default class count per builder, and the counts a user may ask for (8 on a 7-class dataset: a
# contempt output with no examples; 7 on AffectNet: contempt left out when preparing).
_DEFAULT_CLASSES = {"synthface": 7, "rafdb": 7, "fedro": 7, "ferplus": 8, "affectnet": 8}
_ALLOWED_CLASSES = {
    "synthface": (7, 8),
    "rafdb": (7, 8),
    "fedro": (7, 8),
    "ferplus": (8,),
    "affectnet": (7, 8),
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


def expression_datasets() -> list[str]:
    return sorted(EXPRESSION_SPLITS)


def _write_labels(builder, path: Path) -> None:
    """Every prepared split's labels in stored order (what ``as_dataset(shuffle_files=False)``
    yields), so that class counts of any slice need no pass over the images."""
    labels = {}
    for split in builder.info.splits:
        ds = builder.as_dataset(
            split=split, decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False
        )
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
    (instruction,) = tfds.core.ReadInstruction.from_spec(tfds_split).to_absolute(dict(builder.info.splits))
    chosen = labels[instruction.splitname][instruction.from_ : instruction.to]
    counts = [0] * max(num_classes, max(chosen, default=-1) + 1)
    for label in chosen:
        counts[label] += 1
    return counts


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
        if split.partition("[")[0] not in known:
            raise UnknownNameError(unknown_name_message("split", split, known, f" for {name!r}"))
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
) -> ExpressionSource:
    """A split of an expression dataset (:func:`expression_datasets`) as an :class:`ExpressionSource`.

    ``split`` may carry a TFDS slice, e.g. ``train[:90%]``. ``num_classes`` defaults to 7 for
    ``synthface``, ``raf-db`` and ``fed-ro`` (and their occlusion sets) and 8 for ``ferplus`` and
    ``affectnet``; ``affectnet`` also takes 7 (contempt left out), a 7-class dataset also takes 8 (a
    contempt class without examples). ``on_bad_sample``: ``error`` raises the first bad sample of the
    split (after preparing), ``skip`` leaves bad samples out and lists them in ``ExpressionSource.skipped``.
    """
    check_expression_inputs(name, [split], data_dir, num_classes=num_classes, check_dir=True)
    builder_key, splits = EXPRESSION_SPLITS[name]
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
