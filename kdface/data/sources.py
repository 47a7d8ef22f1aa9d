"""One entry point from a dataset name to a ``tf.data`` source of landmark or expression examples.

``load_landmark_split("300w", "common", data_dir=...)`` prepares the TFDS builder over the raw tree
(once) and returns its split with images left encoded (decoded later, after shuffling).
``load_expression_split("raf-db", "test", data_dir=...)`` does the same for the expression datasets
(:data:`EXPRESSION_SPLITS`); its :class:`ExpressionSource` also carries the class names and the
per-class counts of the split (for a class-balanced sampler).

The two kinds have separate registries (``synthface`` names the landmark SynthFaces builder for the
landmark loader, and the SynthFaces RAF-DB builder for the expression loader). Several user names
share one builder (``raf-db`` and ``occlusion-raf-db`` are splits of the prepared RAF-DB), so each
raw folder is prepared once.

Prepared TFRecords live under ``tfds_dir/<builder>-<hash of the raw folder's path>`` with a
fingerprint of the raw files (names, sizes, mtimes); if the raw tree changes, the prepared copy is
rebuilt instead of silently serving stale data. The bad-sample policy is not part of the hash:
``error`` and ``skip`` share one prepared copy. Preparation always leaves bad samples out and lists
them (file, line, reason, split) in ``kdface_skipped.json`` beside the records; loading a split under
``skip`` returns it with its list (in :class:`LandmarkSource` / :class:`ExpressionSource` ``.skipped``),
under ``error`` raises the :class:`~kdface.errors.DataFormatError` of the split's first bad sample.
So under ``error`` a bad sample is reported after the whole preparation pass, not at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from kdface.data import tfds_builders
from kdface.data.validation import POLICIES, recorded_error
from kdface.io.atomic import write_json
from kdface.tasks.expressions.labels import CLASS_NAMES, class_names
from kdface.tasks.landmarks import wflw
from kdface.tasks.landmarks.points import NORMALISERS, NUM_POINTS

DEFAULT_TFDS_DIR = Path("datasets/tfds")
DEFAULT_SYNTHFACES_DIR = Path("datasets/synthfaces")

_BUILDERS = {
    "synthface": tfds_builders.KdfaceSynthfaces,
    "300w": tfds_builders.KdfaceW300,
    "cofw": tfds_builders.KdfaceCofw,
    "wflw": tfds_builders.KdfaceWflw,
}
# User-facing split names -> TFDS split expressions (and, for WFLW subsets, an attribute filter).
_SPLITS = {
    "synthface": {
        "train": "train",
        "common": "common",
        "challenging": "challenging",
        "full": "common+challenging",
    },
    "300w": {
        "train": "train",
        "common": "common",
        "challenging": "challenging",
        "full": "common+challenging",
    },
    "cofw": {"train": "train", "test": "test"},
    "wflw": {"train": "train", "test": "test", **{name: "test" for name in wflw.ATTRIBUTES}},
}
TEST_SPLITS = {
    "synthface": ("common", "challenging", "full"),
    "300w": ("common", "challenging", "full"),
    "cofw": ("test",),
    "wflw": ("test", *wflw.ATTRIBUTES),
}
_RAW_SUFFIXES = {".pts", ".txt", ".mat", ".json", ".jpg", ".jpeg", ".png", ".bmp"}


@dataclasses.dataclass
class LandmarkSource:
    dataset: tf.data.Dataset
    name: str
    split: str
    num_points: int
    normaliser: tuple[int, int]
    size: int
    data_dir: Path
    skipped: list = dataclasses.field(default_factory=list)  # records of samples skipped while preparing


def datasets() -> list[str]:
    return sorted(_BUILDERS)


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in _RAW_SUFFIXES:
                stat = os.stat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def prepare_builder(
    name: str,
    data_dir,
    tfds_dir=DEFAULT_TFDS_DIR,
    synthfaces_preset="demo",
    on_bad_sample="error",
    kind: str = "landmark",
    builder_kwargs: dict | None = None,
):
    """Build (once) and return ``(builder, raw folder, skipped-sample records)`` for ``name``.

    ``kind`` picks the registry: ``"landmark"`` (:func:`datasets`) or ``"expression"`` (builder keys
    of :data:`EXPRESSION_BUILDERS`). ``builder_kwargs`` go to the builder and into the prepared
    folder's hash (AffectNet's ``num_classes`` changes what is prepared).

    The builder always records bad samples (as ``skip`` does) and the copy is shared by both
    policies; ``on_bad_sample`` only matters when preparing fails (a dataset-wide error, e.g. a split
    left empty): under ``error`` the first recorded bad sample is raised, as it stopped the
    preparation before. The loaders raise a split's bad samples under ``error``.
    """
    if on_bad_sample not in POLICIES:
        raise ValueError(f"on_bad_sample must be one of {POLICIES}, got {on_bad_sample!r}")
    registry = {"landmark": _BUILDERS, "expression": EXPRESSION_BUILDERS}.get(kind)
    if registry is None:
        raise ValueError(f"kind must be 'landmark' or 'expression', got {kind!r}")
    if name not in registry:
        raise ValueError(f"unknown {kind} dataset {name!r}; known: {sorted(registry)}")
    builder_cls = registry[name]
    kwargs, download_config = {"on_bad_sample": "skip", **(builder_kwargs or {})}, {}
    if name == "synthface":
        raw_dir = Path(data_dir) if data_dir else DEFAULT_SYNTHFACES_DIR / synthfaces_preset
        raw_dir.mkdir(parents=True, exist_ok=True)
        kwargs.update(root=raw_dir.resolve(), preset=synthfaces_preset)
    else:
        if data_dir is None:
            raise ValueError(
                f"--data-dir is required for {name!r}: it is not downloadable here.\n"
                + builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS
            )
        raw_dir = Path(data_dir)
        if not raw_dir.is_dir():
            raise FileNotFoundError(
                f"data folder {raw_dir} does not exist.\n{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            )
        download_config = {"manual_dir": str(raw_dir.resolve())}
    raw_dir = raw_dir.resolve()
    # The marker keeps kdface's copies from before bad samples were checked (hashed by the path alone)
    # from matching; copies hashed with the policy are simply not found: both are prepared again.
    identity = f"{raw_dir}\0bad samples recorded"
    if builder_kwargs:
        identity += "\0" + json.dumps(builder_kwargs, sort_keys=True)
    tag = hashlib.sha256(identity.encode()).hexdigest()[:10]
    prefix = name if kind == "landmark" else f"expression-{name}"  # landmark folders keep their names
    prepared_dir = Path(tfds_dir).resolve() / f"{prefix}-{tag}"
    stamp = prepared_dir / "kdface_fingerprint.json"
    skipped_file = prepared_dir / "kdface_skipped.json"
    if prepared_dir.exists():
        recorded = json.loads(stamp.read_text()) if stamp.exists() else {}
        if recorded.get("fingerprint") != _fingerprint(raw_dir):
            shutil.rmtree(prepared_dir)  # raw files changed (or an interrupted prepare): rebuild
    builder = builder_cls(data_dir=str(prepared_dir), **kwargs)
    if not stamp.exists():
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False, **download_config)
            )
        except Exception:
            if on_bad_sample == "error" and builder.bad_samples.skipped:
                # under "error" the first bad sample stopped the preparation before this error was reached
                raise recorded_error(builder.bad_samples.as_records()[0]) from None
            raise
        builder.bad_samples.write(skipped_file)
        if kind == "expression":
            _write_labels(builder, Path(builder.data_dir) / _LABELS_FILE)
        # Fingerprint after preparing: a generated dataset (SynthFaces) only exists now. Written
        # last, so an interrupted preparation is redone rather than half-used.
        write_json(stamp, {"fingerprint": _fingerprint(raw_dir), "raw_dir": str(raw_dir)})
    skipped = json.loads(skipped_file.read_text())["skipped"] if skipped_file.exists() else []
    return builder, raw_dir, skipped


def load_landmark_split(
    name: str,
    split: str,
    data_dir=None,
    tfds_dir=DEFAULT_TFDS_DIR,
    synthfaces_preset: str = "demo",
    on_bad_sample: str = "error",
) -> LandmarkSource:
    """A split as a :class:`LandmarkSource`; its dataset yields ``image`` still encoded.

    ``split`` may carry a TFDS slice, e.g. ``train[:95%]`` (how the validation set is held out).
    ``on_bad_sample``: ``error`` raises the first bad sample of the split (after preparing), ``skip``
    leaves bad samples out and lists them in ``LandmarkSource.skipped``.
    """
    base, _, slicing = split.partition("[")
    if base not in _SPLITS.get(name, {}):
        raise ValueError(f"unknown split {split!r} for {name!r}; known: {sorted(_SPLITS.get(name, {}))}")
    if slicing and "+" in _SPLITS[name][base]:
        raise ValueError(f"split {base!r} of {name!r} is a union and cannot be sliced")
    builder, manual_dir, skipped = prepare_builder(name, data_dir, tfds_dir, synthfaces_preset, on_bad_sample)
    parts = set(_SPLITS[name][base].split("+"))
    skipped = [record for record in skipped if record.get("split") in parts]
    if on_bad_sample == "error" and skipped:
        raise recorded_error(skipped[0])
    tfds_split = _SPLITS[name][base] + (f"[{slicing}" if slicing else "")
    ds = builder.as_dataset(
        split=tfds_split,
        decoders={"image": tfds.decode.SkipDecoding()},
        shuffle_files=False,  # a fixed order: cached teacher predictions are zipped with it
    )
    size = int(builder.info.splits[tfds_split].num_examples)
    if name == "wflw" and base in wflw.ATTRIBUTES:
        index = wflw.ATTRIBUTES.index(base)
        ds = ds.filter(lambda example: example["attributes"][index])
        size = -1  # unknown until iterated
    keep = ("image", "landmarks", "box", "key")
    ds = ds.map(lambda example: {k: example[k] for k in keep})
    return LandmarkSource(ds, name, split, NUM_POINTS[name], NORMALISERS[name], size, manual_dir, skipped)


# ------------------------------------------------------------------------------------------ expressions

EXPRESSION_BUILDERS = {
    "synthface": tfds_builders.KdfaceSynthfacesExpressions,
    "rafdb": tfds_builders.KdfaceRafdb,
    "fedro": tfds_builders.KdfaceFedro,
    "ferplus": tfds_builders.KdfaceFerplus,
    "affectnet": tfds_builders.KdfaceAffectnet,
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
    "ferplus": tfds_builders.FERPLUS_OCCLUSION_LIST,
    "affectnet": tfds_builders.AFFECTNET_OCCLUSION_LIST,
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
    if name not in EXPRESSION_SPLITS:
        raise ValueError(f"unknown expression dataset {name!r}; known: {expression_datasets()}")
    builder_key, splits = EXPRESSION_SPLITS[name]
    base, _, slicing = split.partition("[")
    if base not in splits:
        raise ValueError(f"unknown split {split!r} for {name!r}; known: {sorted(splits)}")
    num_classes = _DEFAULT_CLASSES[builder_key] if num_classes is None else int(num_classes)
    if num_classes not in _ALLOWED_CLASSES[builder_key]:
        raise ValueError(f"{name!r} takes num_classes in {_ALLOWED_CLASSES[builder_key]}, got {num_classes}")
    builder_kwargs = {"num_classes": num_classes} if builder_key == "affectnet" else None
    builder, raw_dir, skipped = prepare_builder(
        builder_key, data_dir, tfds_dir, synthfaces_preset, on_bad_sample, "expression", builder_kwargs
    )
    part = splits[base]
    skipped = [record for record in skipped if record.get("split") == part]
    if on_bad_sample == "error" and skipped:
        raise recorded_error(skipped[0])
    if part not in builder.info.splits:
        hint = _OCCLUSION_HINT.get(builder_key, "")
        raise ValueError(
            f"{name!r}: the prepared {builder_key} data in {raw_dir} has no {part!r} split"
            + (f" (put {hint} into {raw_dir})" if hint else "")
        )
    tfds_split = part + (f"[{slicing}" if slicing else "")
    ds = builder.as_dataset(
        split=tfds_split,
        decoders={"image": tfds.decode.SkipDecoding()},
        shuffle_files=False,  # a fixed order: cached teacher predictions are zipped with it
    )
    size = int(builder.info.splits[tfds_split].num_examples)
    counts = _class_counts(builder, tfds_split, num_classes)
    if len(counts) > num_classes:
        raise ValueError(
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
