"""One entry point from a dataset name to a ``tf.data`` source of landmark examples.

``load_landmark_split("300w", "common", data_dir=...)`` prepares the TFDS builder over the raw tree
(once) and returns its split with images left encoded (decoded later, after shuffling).

Prepared TFRecords live under ``tfds_dir/<builder>-<hash of the raw folder's path>`` with a
fingerprint of the raw files (names, sizes, mtimes); if the raw tree changes, the prepared copy is
rebuilt instead of silently serving stale data. The bad-sample policy is part of the hash too (a
``skip`` preparation holds fewer examples); the samples it skipped are listed in
``kdface_skipped.json`` beside the records and travel with the :class:`LandmarkSource`.
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

from kdface.data import tfds_builders, wflw
from kdface.data.landmarks import NORMALISERS, NUM_POINTS
from kdface.io.atomic import write_json

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
    name: str, data_dir, tfds_dir=DEFAULT_TFDS_DIR, synthfaces_preset="demo", on_bad_sample="error"
):
    """Build (once) and return ``(builder, raw folder, skipped-sample records)`` for ``name``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown landmark dataset {name!r}; known: {datasets()}")
    builder_cls = _BUILDERS[name]
    kwargs, download_config = {"on_bad_sample": on_bad_sample}, {}
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
    tag = hashlib.sha256(f"{raw_dir}\0{on_bad_sample}".encode()).hexdigest()[:10]
    prepared_dir = Path(tfds_dir).resolve() / f"{name}-{tag}"
    stamp = prepared_dir / "kdface_fingerprint.json"
    skipped_file = prepared_dir / "kdface_skipped.json"
    if prepared_dir.exists():
        recorded = json.loads(stamp.read_text()) if stamp.exists() else {}
        if recorded.get("fingerprint") != _fingerprint(raw_dir):
            shutil.rmtree(prepared_dir)  # raw files changed (or an interrupted prepare): rebuild
    builder = builder_cls(data_dir=str(prepared_dir), **kwargs)
    if not stamp.exists():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False, **download_config)
        )
        builder.bad_samples.write(skipped_file)
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
    ``on_bad_sample``: ``error`` raises on the first bad sample, ``skip`` leaves bad samples out and
    lists them in ``LandmarkSource.skipped``.
    """
    base, _, slicing = split.partition("[")
    if base not in _SPLITS.get(name, {}):
        raise ValueError(f"unknown split {split!r} for {name!r}; known: {sorted(_SPLITS.get(name, {}))}")
    if slicing and "+" in _SPLITS[name][base]:
        raise ValueError(f"split {base!r} of {name!r} is a union and cannot be sliced")
    builder, manual_dir, skipped = prepare_builder(name, data_dir, tfds_dir, synthfaces_preset, on_bad_sample)
    tfds_split = _SPLITS[name][base] + (f"[{slicing}" if slicing else "")
    ds = builder.as_dataset(
        split=tfds_split,
        decoders={"image": tfds.decode.SkipDecoding()},
        shuffle_files=False,  # a fixed order: cached teacher predictions are zipped with it
    )
    size = int(builder.info.splits[tfds_split].num_examples)
    parts = set(_SPLITS[name][base].split("+"))
    skipped = [record for record in skipped if record.get("split") in parts]
    if name == "wflw" and base in wflw.ATTRIBUTES:
        index = wflw.ATTRIBUTES.index(base)
        ds = ds.filter(lambda example: example["attributes"][index])
        size = -1  # unknown until iterated
    keep = ("image", "landmarks", "box", "key")
    ds = ds.map(lambda example: {k: example[k] for k in keep})
    return LandmarkSource(ds, name, split, NUM_POINTS[name], NORMALISERS[name], size, manual_dir, skipped)
