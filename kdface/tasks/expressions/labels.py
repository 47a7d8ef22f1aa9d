"""What every expression reader shares: kdface's one class order, samples, and their checks.

Class order inside kdface
-------------------------
Every dataset has its own label coding (spec C2). Readers convert to **one kdface order** at the
boundary, so a model trained on one dataset is evaluated on another without remapping:

    0 surprise, 1 fear, 2 disgust, 3 happiness, 4 sadness, 5 anger, 6 neutral, 7 contempt

This is RAF-DB's order (its raw labels 1..7 minus one) with contempt appended, so the 7-class
problem (RAF-DB, FED-RO, 7-class AffectNet) is the first 7 indices of the 8-class one (FERPlus, CK+,
8-class AffectNet). The class names travel with every saved model (its model card), so ``test.py``
and ``kdface.predict_expressions`` report names, not integers.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from kdface.data.validation import as_policy, check_face_box, check_sample_image
from kdface.errors import DataFormatError

CLASS_NAMES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral", "contempt")
NUM_BASIC = 7  # the basic expressions; contempt is the 8th class

# Each dataset's own label code -> kdface index (spec C2).
RAFDB_TO_KDFACE = {raw: raw - 1 for raw in range(1, 8)}  # RAF-DB raw labels 1..7
FERPLUS_TO_KDFACE = {0: 6, 1: 3, 2: 0, 3: 4, 4: 5, 5: 2, 6: 1, 7: 7}  # FERPlus vote columns 0..7
AFFECTNET_TO_KDFACE = {0: 6, 1: 3, 2: 4, 3: 0, 4: 1, 5: 2, 6: 5, 7: 7}  # AffectNet expression 0..7
CKPLUS_TO_KDFACE = {0: 6, 1: 5, 2: 7, 3: 2, 4: 1, 5: 3, 6: 4, 7: 0}  # CK+ emotion codes 0..7


def class_names(num_classes: int) -> tuple[str, ...]:
    """The first ``num_classes`` kdface class names (7: the basic expressions, 8: plus contempt)."""
    if num_classes not in (NUM_BASIC, len(CLASS_NAMES)):
        raise ValueError(f"num_classes must be 7 or 8, got {num_classes}")
    return CLASS_NAMES[:num_classes]


@dataclasses.dataclass
class ExpressionSample:
    """One labelled face as a reader returns it.

    Exactly one of ``image_path`` and ``image`` is set (FER2013's csv holds its pixels inline).
    ``label`` is a kdface class index (module doc). ``box`` is the dataset's face box
    ``(x0, y0, x1, y1)`` in pixels when the image is not already a face crop (AffectNet), else ``None``.
    ``origin`` is ``"file:line"`` of the annotation, for error messages.
    """

    key: str
    label: int
    image_path: str | None = None
    image: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    origin: str | None = None


def check_label(label, num_classes: int, path, line: int | None = None) -> int:
    """A kdface class index in ``[0, num_classes)``."""
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise DataFormatError(
            path, f"an integer class label in 0..{num_classes - 1}", line=line, got=repr(label)
        )
    if not 0 <= int(label) < num_classes:
        raise DataFormatError(
            path, f"a class label in 0..{num_classes - 1} ({', '.join(class_names(num_classes))})",
            line=line, got=str(label),
        )  # fmt: skip
    return int(label)


def validated_expression_samples(samples, num_classes: int, bad=None, with_size: bool = False):
    """Yield the :class:`ExpressionSample` s whose image decodes and whose label is in range; bad ones
    go to ``bad`` (raised or skipped). Used by every expression TFDS builder.

    ``with_size=True`` yields ``(sample, (height, width))`` of the validated image instead (the
    builders make the full-image box of a face crop from it).
    """
    bad = as_policy(bad)
    for sample in samples:
        where = sample.origin or sample.key
        try:
            hw = check_sample_image(sample)
            check_label(sample.label, num_classes, where)
            if sample.box is not None:
                check_face_box(sample.box, where, image_hw=hw)
        except DataFormatError as err:
            bad.handle(err)
            continue
        yield (sample, (int(hw[0]), int(hw[1]))) if with_size else sample


# --------------------------------------------------------------------------- helpers shared by the readers


def excerpt(text: str, limit: int = 60) -> str:
    """``text`` stripped and cut to ``limit`` characters, for error messages."""
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}..."


def text_lines(path):
    """``(line number, text)`` of every line of a text file; a BOM and CRLF endings are tolerated."""
    with open(path, encoding="utf-8-sig", errors="replace", newline=None) as handle:
        yield from enumerate(handle, start=1)


def csv_fields(text: str, path, line: int) -> list[str]:
    """One csv line's fields (quoted fields may hold commas)."""
    try:
        return next(csv.reader([text.rstrip("\r\n")]), [])
    except csv.Error as exc:
        raise DataFormatError(path, "a csv line", line=line, got=f"{excerpt(text)} ({exc})") from None


def count(stats, key: str) -> None:
    """``stats[key] += 1`` when the caller asked for ``stats``."""
    if stats is not None:
        stats[key] = stats.get(key, 0) + 1


def image_file_exists(path: Path, annotation, line: int | None, name: str) -> bool:
    """``path.is_file()``; a file-system refusal (e.g. a name over its length limit) is a
    :class:`DataFormatError` naming the annotation line, not an ``OSError``."""
    try:
        return Path(path).is_file()
    except OSError as exc:
        raise DataFormatError(annotation, "an image path the file system accepts", line=line,
                              got=f"{excerpt(name)} ({exc.strerror})") from None  # fmt: skip
