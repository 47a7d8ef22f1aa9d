"""Bad input: a clear error, or a counted skip (``--on-bad-sample error|skip``).

Every reader takes a :class:`BadSamples` policy. A per-sample problem (a malformed annotation line
or file, a missing, empty, corrupt, truncated or absurdly sized image, NaN/Inf or wrong-count
landmarks, an out-of-range label) is a :class:`~kdface.errors.DataFormatError` naming the file, the
line and what was expected. Under ``error`` (the default) it is raised; under ``skip`` the sample is
left out, counted and listed, and the list is written into the run directory.

Problems with the dataset as a whole (a missing annotation file, a split with no samples) are always
errors. Annotation paths that leave the dataset root are always refused
(:class:`~kdface.errors.UnsafeFileError`): that is a hostile file, not a bad sample.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from kdface.errors import DataFormatError, UnsafeFileError
from kdface.io.atomic import write_json

POLICIES = ("error", "skip")

# An image side outside this range is not a face photo (or is a decompression bomb).
MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 32768
MAX_IMAGE_PIXELS = 120_000_000
# Landmarks further than this (in image sizes) outside the image are annotation garbage.
LANDMARK_MARGIN = 0.5


@dataclasses.dataclass(frozen=True)
class SkippedSample:
    path: str
    line: int | None
    reason: str
    split: str | None = None


class BadSamples:
    """What to do with a bad sample, and the record of those skipped."""

    def __init__(self, policy: str = "error"):
        if policy not in POLICIES:
            raise ValueError(f"on_bad_sample must be one of {POLICIES}, got {policy!r}")
        self.policy = policy
        self.skipped: list[SkippedSample] = []
        self.split: str | None = None  # set by a builder while it generates one split

    def handle(self, error: DataFormatError) -> None:
        """Raise ``error`` under ``error``; record it under ``skip``."""
        if self.policy == "error":
            raise error
        self.skipped.append(SkippedSample(error.path, error.line, str(error), self.split))

    def __len__(self) -> int:
        return len(self.skipped)

    def as_records(self) -> list[dict]:
        return [dataclasses.asdict(s) for s in self.skipped]

    def write(self, path) -> Path:
        return write_json(path, {"policy": self.policy, "count": len(self), "skipped": self.as_records()})


def recorded_error(record: dict) -> DataFormatError:
    """The :class:`~kdface.errors.DataFormatError` that a record of :meth:`BadSamples.as_records` was
    made from, with the same message (file, line, what was expected and what was found).

    ``str(DataFormatError(path, expected, line, got))`` is ``"<path>[:<line>]: expected <expected>[, got
    <got!r>]"`` and the record keeps that message as ``reason``, so ``expected`` is taken as everything
    after the ``"<path>[:<line>]: expected "`` prefix (the ``got`` part included).
    """
    path, line, reason = record["path"], record.get("line"), record["reason"]
    prefix = f"{path}: expected " if line is None else f"{path}:{line}: expected "
    return DataFormatError(path, reason.removeprefix(prefix), line=line)


def as_policy(bad) -> BadSamples:
    """``None`` -> a fresh ``error`` policy; a string -> that policy; a :class:`BadSamples` as is."""
    if bad is None:
        return BadSamples("error")
    if isinstance(bad, str):
        return BadSamples(bad)
    return bad


# --------------------------------------------------------------------------- paths


def safe_relative_path(root, relative: str, annotation, line: int | None = None) -> Path:
    """``root / relative`` for a path read from an annotation file, refusing escapes.

    Absolute paths (POSIX or Windows) and paths whose ``..`` parts climb out of ``root`` raise
    :class:`UnsafeFileError` naming the annotation file and line.
    """
    text = relative.strip()
    if not text:
        raise DataFormatError(
            annotation, "an image path relative to the dataset root", line=line, got=relative
        )
    if "\x00" in text:
        raise UnsafeFileError(annotation, f"image path {text!r} contains a NUL byte", line=line)
    windows = PureWindowsPath(text)
    if PurePosixPath(text).is_absolute() or windows.drive or windows.root:
        raise UnsafeFileError(
            annotation, f"image path {text!r} is absolute; it must be relative to {root}", line=line
        )
    normal = posixpath.normpath(text.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        raise UnsafeFileError(annotation, f"image path {text!r} leaves the dataset root {root}", line=line)
    return Path(root) / normal


# --------------------------------------------------------------------------- images


def _check_size(height: int, width: int, path, line=None) -> None:
    if (
        min(height, width) < MIN_IMAGE_SIDE
        or max(height, width) > MAX_IMAGE_SIDE
        or height * width > MAX_IMAGE_PIXELS
    ):
        raise DataFormatError(
            path,
            f"an image between {MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE} pixels a side "
            f"(at most {MAX_IMAGE_PIXELS} pixels)",
            line=line,
            got=f"{width} x {height}",
        )


def check_image_bytes(data: bytes, path, line: int | None = None) -> tuple[int, int]:
    """Validate an encoded image and return its ``(height, width)``.

    The header is read first (so an absurd size is refused before anything is allocated), then the
    image is decoded fully with the decoder training uses, which catches truncated and corrupt files.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DataFormatError(path, "a non-empty image file", line=line, got="0 bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise DataFormatError(path, "an image of sane dimensions", line=line, got=str(exc)[:100]) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataFormatError(
            path, "an image file (JPEG, PNG, BMP, GIF or WebP)", line=line, got=str(exc)[:100]
        ) from None
    _check_size(height, width, path, line)
    import tensorflow as tf

    try:
        decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as exc:
        message = str(exc).split("\n")[0].split("}}")[-1].strip()[:100]
        raise DataFormatError(
            path, "an image that decodes completely (not truncated or corrupt)", line=line, got=message
        ) from None
    if tuple(decoded.shape[:2]) != (height, width):
        raise DataFormatError(path, f"an image of {width} x {height} as its header says", line=line,
                              got=f"{decoded.shape[1]} x {decoded.shape[0]}")  # fmt: skip
    return height, width


def check_image_file(path, line: int | None = None, annotation=None) -> tuple[int, int]:
    """Validate the image at ``path``; errors name ``annotation:line`` too when given."""
    path = Path(path)
    where = path
    if annotation is not None:
        where = f"{annotation}{'' if line is None else f':{line}'} -> {path}"
    if not path.is_file():
        raise DataFormatError(where, "an image file", got="missing")
    return check_image_bytes(path.read_bytes(), where)


def check_image_array(image: np.ndarray, path, line: int | None = None) -> tuple[int, int]:
    """Validate an in-memory ``H x W x 3`` uint8 image (COFW embeds its images)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataFormatError(path, "a uint8 H x W x 3 image", line=line, got=f"{image.shape} {image.dtype}")
    _check_size(image.shape[0], image.shape[1], path, line)
    return image.shape[0], image.shape[1]


# --------------------------------------------------------------------------- annotations


def check_landmarks(landmarks, num_points: int, image_hw, path, line: int | None = None) -> np.ndarray:
    """``(num_points, 2)`` finite points lying within the image (plus a generous margin)."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (num_points, 2):
        raise DataFormatError(path, f"{num_points} landmarks (x, y)", line=line, got=f"shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise DataFormatError(path, "finite landmark coordinates", line=line, got="NaN or Inf")
    height, width = image_hw
    low = -LANDMARK_MARGIN * np.array([width, height])
    high = (1 + LANDMARK_MARGIN) * np.array([width, height])
    outside = np.any((points < low) | (points > high), axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DataFormatError(
            path,
            f"landmarks inside the {width} x {height} image (give or take {LANDMARK_MARGIN:.0%} of its size)",
            line=line,
            got=f"point {i} at ({points[i, 0]:.1f}, {points[i, 1]:.1f})",
        )
    return points.astype(np.float32)


def check_sample_image(sample) -> tuple[int, int]:
    """Validate a reader sample's image (a file, or an in-memory array) and return its ``(H, W)``."""
    if sample.image_path is not None:
        return check_image_file(sample.image_path, annotation=sample.origin)
    return check_image_array(np.asarray(sample.image), sample.origin or sample.key)


def check_face_box(box, path, image_hw=None) -> np.ndarray:
    """A face box ``(x0, y0, x1, y1)`` with ``x1 > x0``, ``y1 > y0``, finite; with ``image_hw``, it must
    also overlap the image (a box may reach beyond it: crops are padded)."""
    values = np.asarray(box, np.float64)
    ok = (
        values.shape == (4,)
        and np.all(np.isfinite(values))
        and values[2] > values[0]
        and values[3] > values[1]
    )
    expected = "a face box (x0, y0, x1, y1) with x1 > x0, y1 > y0"
    if ok and image_hw is not None:
        height, width = image_hw
        ok = values[2] > 0 and values[3] > 0 and values[0] < width and values[1] < height
        expected = f"a face box (x0, y0, x1, y1) overlapping the {width} x {height} image"
    if not ok:
        raise DataFormatError(path, expected, got=str(box))
    return values


def validated_samples(samples, num_points: int, bad=None):
    """Yield the :class:`~kdface.tasks.landmarks.points.LandmarkSample` s whose image and landmarks pass the
    checks above; bad ones go to ``bad`` (raised or skipped). Used by every TFDS builder."""
    bad = as_policy(bad)
    for sample in samples:
        where = sample.origin or sample.key
        try:
            hw = check_sample_image(sample)
            check_landmarks(sample.landmarks, num_points, hw, where)
            if sample.box is not None:
                check_face_box(sample.box, where)
        except DataFormatError as err:
            bad.handle(err)
            continue
        yield sample
