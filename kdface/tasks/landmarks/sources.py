"""Landmark datasets by name: ``load_landmark_split("300w", "common", data_dir=...)`` prepares the
TFDS builder over the raw tree (once, :mod:`kdface.data.sources`) and returns its split as a
:class:`LandmarkSource` with images left encoded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf

from kdface.data.sources import DEFAULT_TFDS_DIR, check_raw_dir, prepare_builder, read_split, split_records
from kdface.errors import ConfigError, UnknownNameError
from kdface.registry import unknown_name_message
from kdface.tasks.landmarks import builders, wflw
from kdface.tasks.landmarks.points import NORMALISERS, NUM_POINTS

_BUILDERS = {
    "synthface": builders.KdfaceSynthfaces,
    "300w": builders.KdfaceW300,
    "cofw": builders.KdfaceCofw,
    "wflw": builders.KdfaceWflw,
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


def check_landmark_inputs(
    name: str, splits=(), data_dir=None, tfds_dir=None, *, check_dir: bool = False
) -> None:
    """The dataset and split names (:class:`~kdface.errors.UnknownNameError`, with a close match) and,
    with ``check_dir``, the raw folder and ``tfds_dir`` (:func:`kdface.data.sources.check_raw_dir`);
    reads only, so it runs before anything is written."""
    if name not in _BUILDERS:
        raise UnknownNameError(unknown_name_message("landmark dataset", name, _BUILDERS))
    for split in splits or ():
        base = split.partition("[")[0]
        if base not in _SPLITS[name]:
            raise UnknownNameError(unknown_name_message("split", split, _SPLITS[name], f" for {name!r}"))
    if check_dir:
        check_raw_dir(_BUILDERS[name], name, data_dir, tfds_dir)


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
    check_landmark_inputs(name, [split], data_dir, check_dir=True)
    base, _, slicing = split.partition("[")
    if slicing and "+" in _SPLITS[name][base]:
        raise ConfigError(f"split {base!r} of {name!r} is a union and cannot be sliced")
    builder, manual_dir, skipped = prepare_builder(_BUILDERS[name], name, data_dir, tfds_dir, synthfaces_preset,
                                                   on_bad_sample)  # fmt: skip
    skipped = split_records(skipped, _SPLITS[name][base].split("+"), on_bad_sample)
    tfds_split = _SPLITS[name][base] + (f"[{slicing}" if slicing else "")
    ds = read_split(builder, tfds_split)
    size = int(builder.info.splits[tfds_split].num_examples)
    if name == "wflw" and base in wflw.ATTRIBUTES:
        index = wflw.ATTRIBUTES.index(base)
        ds = ds.filter(lambda example: example["attributes"][index])
        size = -1  # unknown until iterated
    keep = ("image", "landmarks", "box", "key")
    ds = ds.map(lambda example: {k: example[k] for k in keep})
    return LandmarkSource(ds, name, split, NUM_POINTS[name], NORMALISERS[name], size, manual_dir, skipped)
