"""300W: ``.pts`` files beside their images, in the iBUG folder layout.

Layout (as distributed by iBUG, and as SynthFaces writes it)::

    <root>/afw/*.jpg|png + .pts
    <root>/helen/trainset/  helen/testset/
    <root>/lfpw/trainset/   lfpw/testset/
    <root>/ibug/

Splits follow the standard protocol: train = LFPW-train + HELEN-train + AFW (3148 faces), test
common = LFPW-test + HELEN-test (554), challenging = iBUG (135), full = common + challenging (689).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from kdface.data.validation import as_policy
from kdface.io.atomic import write_text
from kdface.tasks.landmarks.points import DataFormatError, LandmarkSample

SPLIT_FOLDERS = {
    "train": ("lfpw/trainset", "helen/trainset", "afw"),
    "common": ("lfpw/testset", "helen/testset"),
    "challenging": ("ibug",),
}
SPLIT_FOLDERS["full"] = SPLIT_FOLDERS["common"] + SPLIT_FOLDERS["challenging"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# .pts stores MATLAB-style 1-based pixel centres; kdface pixels have the origin at the corner.
PTS_OFFSET = 0.5


def read_pts(path) -> np.ndarray:
    """Read a ``.pts`` file into ``(N, 2)`` float32 kdface pixels.

    Expected: ``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    # Real 300W files sometimes carry trailing blank lines; ignore those only.
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or not lines[0].strip().startswith("version"):
        raise DataFormatError(path, "'version: 1' on the first line", line=1, got=lines[0] if lines else "")
    if len(lines) < 3:
        raise DataFormatError(path, "a header of 3 lines ('version: 1', 'n_points: N', '{')", line=len(lines))
    header = lines[1].split(":")
    if (
        len(header) != 2
        or header[0].strip() != "n_points"
        or not re.fullmatch(r"[0-9]{1,6}", header[1].strip())
    ):
        raise DataFormatError(path, "'n_points: <int>'", line=2, got=lines[1])
    n = int(header[1])
    if lines[2].strip() != "{":
        raise DataFormatError(path, "'{'", line=3, got=lines[2])
    if len(lines) != n + 4 or lines[-1].strip() != "}":
        raise DataFormatError(
            path,
            f"{n} coordinate lines (n_points on line 2) then '}}' on line {n + 4}",
            line=min(len(lines), n + 4),
            got=lines[min(len(lines), n + 4) - 1],
        )
    points = np.empty((n, 2), np.float32)
    for i, text in enumerate(lines[3 : 3 + n]):
        fields = text.split()
        try:
            if len(fields) != 2:
                raise ValueError
            points[i] = (float(fields[0]), float(fields[1]))
        except ValueError:
            raise DataFormatError(path, "two numbers 'x y'", line=4 + i, got=text) from None
        if not np.all(np.isfinite(points[i])):
            raise DataFormatError(path, "finite coordinates", line=4 + i, got=text)
    return points - PTS_OFFSET


def write_pts(path, landmarks) -> None:
    """Write ``(N, 2)`` kdface pixels as a 300W ``.pts`` file (atomically)."""
    pts = np.asarray(landmarks, dtype=np.float64) + PTS_OFFSET
    body = "".join(f"{x:.3f} {y:.3f}\n" for x, y in pts)
    text = f"version: 1\nn_points: {len(pts)}\n{{\n{body}}}\n"
    write_text(path, text)


def _image_for(pts_path: Path) -> Path:
    for ext in IMAGE_EXTENSIONS:
        candidate = pts_path.with_suffix(ext)
        if candidate.exists():
            return candidate
    raise DataFormatError(pts_path, f"an image beside it with one of the extensions {IMAGE_EXTENSIONS}")


def read_split(root, split: str, bad=None):
    """Yield :class:`LandmarkSample` for one 300W split (``train``, ``common``, ``challenging``, ``full``).

    ``bad`` is the :class:`~kdface.data.validation.BadSamples` policy for malformed ``.pts`` files and
    missing images (default: raise).
    """
    if split not in SPLIT_FOLDERS:
        raise ValueError(f"unknown 300W split {split!r}; expected one of {sorted(SPLIT_FOLDERS)}")
    bad = as_policy(bad)
    root = Path(root)
    found = False
    for folder in SPLIT_FOLDERS[split]:
        directory = root / folder
        if not directory.is_dir():
            continue
        for pts_path in sorted(directory.glob("*.pts")):
            found = True
            try:
                landmarks = read_pts(pts_path)
                image_path = _image_for(pts_path)
            except DataFormatError as err:
                bad.handle(err)
                continue
            yield LandmarkSample(
                key=f"{folder}/{pts_path.stem}",
                landmarks=landmarks,
                image_path=str(image_path),
                attributes={"subset": folder.split("/")[0]},
                origin=str(pts_path),
            )
    if not found:
        raise DataFormatError(
            root, f"300W folders {SPLIT_FOLDERS[split]} with .pts files for split {split!r}"
        )
