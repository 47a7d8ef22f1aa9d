"""TinyFace closed-set identification data (spec §6.2), as AdaFace preprocesses it.

Layout (``aligned_pad_0.1_pad_high``; F-SKD's ``evaluation/tinyface_helper.py`` reads it)::

    <root>/Probe/<label>_<rest>.jpg
    <root>/Gallery_Match/<label>_<rest>.jpg
    <root>/Gallery_Distractor/<anything>.jpg     (the README spells it Gallery_Disctractor; both accepted)

Images are found recursively (``.jpg``, ``.jpeg``, ``.png``, any case) and sorted by path, so the
order does not depend on the file system (the original keeps ``os.walk`` order; the CMC metric does
not depend on it). A probe or match image's label is ``int(filename.split('_')[0])``; distractors get
label :data:`DISTRACTOR_LABEL` (-100). The gallery is the match images followed by the distractors.

A missing folder, a folder without images, or a probe/match name without an integer before the first
``_`` is a :class:`~kdface.errors.DataFormatError` naming the folder or file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from kdface.errors import DataFormatError

DISTRACTOR_LABEL = -100
PROBE = "Probe"
GALLERY_MATCH = "Gallery_Match"
GALLERY_DISTRACTOR = ("Gallery_Distractor", "Gallery_Disctractor")  # the code's name, the README's
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_LABEL = re.compile(r"[0-9]{1,9}")
NAME = "'<integer label>_<rest>.<jpg|jpeg|png>' (an integer before the first '_')"


@dataclasses.dataclass
class TinyFace:
    """Probe and gallery images with labels; gallery = matches then distractors (label -100)."""

    probe_paths: list[Path]
    probe_labels: np.ndarray  # (P,) int64
    gallery_paths: list[Path]
    gallery_labels: np.ndarray  # (G,) int64
    num_distractors: int


def _images(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [
            Path(dirpath) / f
            for f in filenames
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
        ]
    if not found:
        raise DataFormatError(folder, f"TinyFace images ({', '.join(IMAGE_SUFFIXES)})", got="none")
    return sorted(found)


def _folder(root: Path, names) -> Path:
    names = (names,) if isinstance(names, str) else names
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataFormatError(
        root / names[0], f"the TinyFace folder {' or '.join(names)} under {root}", got="missing"
    )


def _label(path: Path) -> int:
    head = path.name.split("_")[0]
    if "_" not in path.name or not _LABEL.fullmatch(head):
        raise DataFormatError(path, f"a TinyFace image name {NAME}", got=path.name)
    return int(head)


def read_tinyface(root) -> TinyFace:
    """Probe and gallery (matches + distractors) of the TinyFace tree at ``root`` (see the module doc)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(
            root, "the TinyFace folder (Probe/, Gallery_Match/, Gallery_Distractor/)", got="missing"
        )
    probe = _images(_folder(root, PROBE))
    match = _images(_folder(root, GALLERY_MATCH))
    distractors = _images(_folder(root, GALLERY_DISTRACTOR))
    return TinyFace(
        probe_paths=probe,
        probe_labels=np.array([_label(p) for p in probe], np.int64),
        gallery_paths=match + distractors,
        gallery_labels=np.array([_label(p) for p in match] + [DISTRACTOR_LABEL] * len(distractors), np.int64),
        num_distractors=len(distractors),
    )


__all__ = ["DISTRACTOR_LABEL", "TinyFace", "read_tinyface"]
