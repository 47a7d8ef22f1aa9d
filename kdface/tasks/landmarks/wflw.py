"""WFLW (Wider Facial Landmarks in the Wild): 98 points, one text line per face.

Layout (as distributed)::

    <root>/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt
    <root>/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt
    <root>/WFLW_images/<event folder>/<image>.jpg

Each line holds 207 space-separated fields: 196 coordinates ``x0 y0 ... x97 y97``, the box
``x_min y_min x_max y_max``, six 0/1 attribute flags (pose, expression, illumination, make-up,
occlusion, blur) and the image path relative to ``WFLW_images``. Coordinates are 0-based pixel
centres, so ``x_kdface = x_file + 0.5`` (the box likewise).

Splits: ``train`` (7500 faces), ``test`` (2500) and the standard test subsets ``pose``,
``expression``, ``illumination``, ``makeup``, ``occlusion``, ``blur`` (test faces with that flag set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdface.data.validation import as_policy, safe_relative_path
from kdface.tasks.landmarks.points import DataFormatError, LandmarkSample

NUM_POINTS = 98
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
NUM_FIELDS = 2 * NUM_POINTS + 4 + len(ATTRIBUTES) + 1  # 207
LINE_FORMAT = "207 space-separated fields: 196 coordinates, 4 box ints, 6 attribute flags (0/1), image path"

ANNOTATION_DIR = "WFLW_annotations/list_98pt_rect_attr_train_test"
ANNOTATION_FILES = {
    "train": "list_98pt_rect_attr_train.txt",
    "test": "list_98pt_rect_attr_test.txt",
}
IMAGE_DIR = "WFLW_images"
SPLITS = ("train", "test") + ATTRIBUTES

# No image is this large; beyond it a number is garbage (and would overflow float32).
COORDINATE_LIMIT = 1e6
# WFLW stores 0-based pixel centres; kdface pixels have the origin at the corner.
WFLW_OFFSET = 0.5


def _excerpt(text: str, limit: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"{text[:limit]}..."


def parse_line(text: str, path, line_number: int):
    """Parse one annotation line.

    Returns ``(landmarks, box, attributes, relative_image_path)``: ``(98, 2)`` float32 kdface pixels,
    ``(x0, y0, x1, y1)`` kdface pixels, a dict of the six attribute flags as bools, and the image
    path relative to ``WFLW_images``. Raises :class:`DataFormatError` naming ``path:line_number``.
    """
    fields = text.split()

    def fail(got):
        raise DataFormatError(path, LINE_FORMAT, line=line_number, got=got)

    if len(fields) != NUM_FIELDS:
        fail(f"{len(fields)} fields: {_excerpt(text)}")
    n_coords = 2 * NUM_POINTS
    numbers = np.empty(n_coords + 4, np.float64)
    for i, field in enumerate(fields[: n_coords + 4]):
        try:
            numbers[i] = float(field)
        except ValueError:
            fail(f"field {i + 1} is {_excerpt(field, 20)!r}")
        if not np.isfinite(numbers[i]):
            fail(f"field {i + 1} is {_excerpt(field, 20)!r} (not finite)")
    flags = fields[n_coords + 4 : n_coords + 4 + len(ATTRIBUTES)]
    for i, flag in enumerate(flags):
        if flag not in ("0", "1"):
            fail(f"attribute {ATTRIBUTES[i]!r} (field {n_coords + 5 + i}) is {_excerpt(flag, 20)!r}")
    if np.abs(numbers).max() > COORDINATE_LIMIT:
        fail(f"a coordinate of {np.abs(numbers).max():.3g} (beyond +-{COORDINATE_LIMIT:.0e} pixels)")
    landmarks = (numbers[:n_coords].reshape(NUM_POINTS, 2) + WFLW_OFFSET).astype(np.float32)
    box = tuple(float(v) + WFLW_OFFSET for v in numbers[n_coords:])
    attributes = {name: flag == "1" for name, flag in zip(ATTRIBUTES, flags, strict=True)}
    return landmarks, box, attributes, fields[-1]


def annotation_path(root, split: str) -> Path:
    """The annotation file that ``split`` reads (test subsets read the test file)."""
    if split not in SPLITS:
        raise ValueError(f"unknown WFLW split {split!r}; expected one of {list(SPLITS)}")
    return Path(root) / ANNOTATION_DIR / ANNOTATION_FILES["train" if split == "train" else "test"]


def read_split(root, split: str, bad=None):
    """Yield :class:`LandmarkSample` for ``train``, ``test`` or a test subset (see module doc).

    Keys are ``f"{relative_image_path}#{line_number}"`` (an image can hold several faces). ``bad`` is
    the :class:`~kdface.data.validation.BadSamples` policy for malformed lines and missing images
    (default: raise). Image paths that leave ``WFLW_images`` are always refused.
    """
    path = annotation_path(root, split)
    if not path.is_file():
        raise DataFormatError(path, f"the WFLW annotation file for split {split!r}")
    bad = as_policy(bad)
    image_root = Path(root) / IMAGE_DIR
    subset = split if split in ATTRIBUTES else None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                landmarks, box, attributes, rel = parse_line(text, path, line_number)
            except DataFormatError as err:
                bad.handle(err)
                continue
            image_path = safe_relative_path(image_root, rel, path, line_number)
            if subset is not None and not attributes[subset]:
                continue
            try:
                exists = image_path.is_file()
            except OSError as exc:  # e.g. a name over the file system's limit (ENAMETOOLONG)
                bad.handle(DataFormatError(path, "an image path the file system accepts", line=line_number,
                                           got=f"{_excerpt(rel)} ({exc.strerror})"))  # fmt: skip
                continue
            if not exists:
                bad.handle(DataFormatError(path, f"an image at {image_path}", line=line_number, got=rel))
                continue
            yield LandmarkSample(
                key=f"{rel}#{line_number}",
                landmarks=landmarks,
                image_path=str(image_path),
                box=box,
                attributes=attributes,
                origin=f"{path}:{line_number}",
            )
