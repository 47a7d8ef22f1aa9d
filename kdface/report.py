"""Evaluation reports: landmark overlays, overlay grids, and JSON / Markdown result files.

Points are in kdface pixels (continuous, origin at the top-left *corner*; see
:mod:`kdface.tasks.landmarks.points`). OpenCV puts integer coordinates at pixel *centres*, so drawing
subtracts half a pixel and uses ``cv2.circle``'s fixed-point ``shift`` for sub-pixel placement.
Images are RGB throughout; only the PNG writer converts to OpenCV's BGR.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from kdface.io.atomic import write_image, write_text

GT_COLOR = (0, 255, 0)  # green, RGB
PRED_COLOR = (255, 0, 0)  # red, RGB

_SHIFT = 4  # cv2 fixed-point fraction bits: 1/16 pixel placement
_MIN_TILE = 128  # small crops are upscaled to at least this many pixels so points stay visible

# Markdown headers and number formats for the keys :func:`kdface.metrics.summarize` produces.
COLUMN_HEADERS = {
    "nme": "NME %",
    "median": "Median NME %",
    "fr": "FR %",
    "auc": "AUC",
    "auc_original": "AUC (KD-Loss code)",
    "count": "Images",
}
_PERCENT_KEYS = {"nme", "median", "fr"}
_FRACTION_KEYS = {"auc", "auc_original"}


def to_uint8_rgb(image) -> np.ndarray:
    """``HxWx3`` uint8 RGB from uint8 or float ``[0, 1]`` images (gray ``HxW`` / ``HxWx1`` is repeated)."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 (or grayscale) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(img)


def draw_landmarks(image, points, color=PRED_COLOR, radius: float = 2.0) -> np.ndarray:
    """Return a copy of ``image`` with anti-aliased filled dots at ``points`` (``(N, 2)`` kdface pixels).

    Non-finite points are skipped, so partially missing predictions still draw.
    """
    out = to_uint8_rgb(image).copy()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    one = 1 << _SHIFT
    r = max(1, int(round(radius * one)))
    color = tuple(int(c) for c in color)
    for x, y in pts:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        centre = (int(round((x - 0.5) * one)), int(round((y - 0.5) * one)))
        cv2.circle(out, centre, r, color, thickness=-1, lineType=cv2.LINE_AA, shift=_SHIFT)
    return out


def draw_overlay(image, pred, gt=None, radius: float = 2.0) -> np.ndarray:
    """Ground truth in green (when given) under the prediction in red."""
    out = to_uint8_rgb(image)
    if gt is not None:
        out = draw_landmarks(out, gt, GT_COLOR, radius)
    return draw_landmarks(out, pred, PRED_COLOR, radius)


def overlay_grid(
    images,
    pred,
    gt=None,
    path=None,
    cols: int = 8,
    scale: float | None = None,
    radius: float | None = None,
) -> np.ndarray:
    """Tile overlays of ``images`` ``(B, H, W, 3)`` with ``pred`` / ``gt`` ``(B, N, 2)`` into one image.

    Each crop is upscaled by ``scale`` (default: the smallest integer bringing its short side to
    >= 128 px) before drawing, so points stay visible; points scale by the same factor, which is
    exact under the kdface convention. Saves a PNG at ``path`` when given; returns the RGB grid of
    ``ceil(B / cols) * round(H * scale)`` by ``min(B, cols) * round(W * scale)`` pixels.
    """
    images = np.asarray(images)
    pred = np.asarray(pred, dtype=np.float64)
    batch = len(images)
    if batch == 0:
        raise ValueError("overlay_grid needs at least one image")
    if len(pred) != batch or (gt is not None and len(gt) != batch):
        raise ValueError(
            f"got {batch} images but {len(pred)} predictions"
            + ("" if gt is None else f" and {len(gt)} ground truths")
        )
    height, width = images.shape[1:3]
    if scale is None:
        scale = max(1, math.ceil(_MIN_TILE / min(height, width)))
    tile_h, tile_w = int(round(height * scale)), int(round(width * scale))
    factor = np.array([tile_w / width, tile_h / height])
    if radius is None:
        radius = max(1.5, min(tile_h, tile_w) / 96)

    cols = max(1, min(int(cols), batch))
    rows = math.ceil(batch / cols)
    grid = np.zeros((rows * tile_h, cols * tile_w, 3), dtype=np.uint8)
    for k in range(batch):
        tile = cv2.resize(to_uint8_rgb(images[k]), (tile_w, tile_h), interpolation=cv2.INTER_NEAREST_EXACT)
        tile = draw_overlay(
            tile, pred[k] * factor, None if gt is None else np.asarray(gt[k]) * factor, radius
        )
        r, c = divmod(k, cols)
        grid[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
    if path is not None:
        write_image(path, grid)
    return grid


def to_jsonable(obj):
    """Recursively turn NumPy scalars/arrays, paths, tuples and sets into plain JSON types."""
    if isinstance(obj, Mapping):
        return {_json_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def _json_key(key):
    key = key.item() if isinstance(key, np.generic) else key
    return key if isinstance(key, (str, int, float, bool)) or key is None else str(key)


def write_report_json(path, data: Mapping) -> Path:
    """Atomically write ``data`` (NumPy values allowed) as indented JSON."""
    return write_text(path, json.dumps(to_jsonable(data), indent=2) + "\n")


def format_value(key: str, value) -> str:
    """Percent metrics to 2 decimals, AUCs to 4, other floats to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    if key in _PERCENT_KEYS:
        return f"{value:.2f}"
    if key in _FRACTION_KEYS:
        return f"{value:.4f}"
    return f"{value:.4g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report_markdown(
    path,
    title: str,
    rows: Sequence[Mapping],
    columns: Sequence[str | tuple[str, str]],
    notes: str = "",
    images: Mapping[str, str] | None = None,
) -> Path:
    """Atomically write a Markdown report: title, notes, a results table and linked images.

    ``columns`` are row keys (headers from :data:`COLUMN_HEADERS`, else the key) or ``(key, header)``
    pairs; a row missing a key gets an empty cell. ``images`` maps caption -> path relative to the
    report.
    """
    cols = [(c, COLUMN_HEADERS.get(c, c)) if isinstance(c, str) else (c[0], c[1]) for c in columns]
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes.strip(), ""]
    if cols:
        numeric = [
            all(isinstance(r.get(k), numbers.Real) for r in rows if r.get(k) is not None) and bool(rows)
            for k, _ in cols
        ]
        lines.append("| " + " | ".join(_cell(h) for _, h in cols) + " |")
        lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
        for row in rows:
            lines.append("| " + " | ".join(_cell(format_value(k, row.get(k))) for k, _ in cols) + " |")
        lines.append("")
    for caption, rel in (images or {}).items():
        lines += [f"**{caption}**", "", f"![{caption}]({Path(rel).as_posix()})", ""]
    return write_text(path, "\n".join(lines))


# --------------------------------------------------------------------------- photo mode (test.py --image)


HAAR_CASCADE = "haarcascade_frontalface_default.xml"


def detect_faces(image_rgb: np.ndarray) -> np.ndarray:
    """Haar-cascade face boxes ``(K, 4)`` as ``(x0, y0, x1, y1)``, largest first."""
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / HAAR_CASCADE))
    if cascade.empty():
        raise RuntimeError(
            f"OpenCV's {HAAR_CASCADE} could not be loaded (opencv-python-headless 4.x ships it)"
        )
    gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
    boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in found], np.float32).reshape(-1, 4)
    return boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]))]


PHOTO_FORMATS = "JPEG, PNG, BMP, TIFF, WebP"


def read_photo(photo, flag: str | None = None) -> np.ndarray:
    """A photo as ``H x W x 3`` uint8 RGB. A missing file (or a folder) is a
    :class:`~kdface.errors.MissingFileError`, one OpenCV cannot decode a
    :class:`~kdface.errors.DataFormatError`; both name ``flag`` (``--image``) when given."""
    from kdface.errors import DataFormatError
    from kdface.io.paths import require_file

    require_file(photo, flag, what="photo")
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if bgr is None:
        named = f"{flag} {photo}" if flag else photo
        raise DataFormatError(
            named, f"a photo OpenCV can read ({PHOTO_FORMATS}); this file is not an image it decodes"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_photo_result(out_dir, photo, kind: str, overlay, faces: list) -> dict:
    """``<photo>_<kind>.png`` (the overlay) and ``<photo>_<kind>.json`` (the faces) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_path = out_dir / f"{Path(photo).stem}_{kind}.png"
    write_image(overlay_path, overlay)
    result = {"photo": str(photo), "faces": faces, "overlay": str(overlay_path)}
    write_report_json(out_dir / f"{Path(photo).stem}_{kind}.json", result)
    print(f"{len(faces)} face(s); overlay {overlay_path}")
    return result
