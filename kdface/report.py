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
FACE_BOX_COLOR = (255, 255, 0)  # yellow, RGB: the detector's face box (photo mode)
CROP_BOX_COLOR = (0, 160, 255)  # blue, RGB: the crop the model saw (photo mode)
_KEY_BACKGROUND = (32, 32, 32)  # dark grey under titles and keys
_TEXT_COLOR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX

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


def draw_box(image, box, color, thickness: int = 2) -> np.ndarray:
    """Return a copy of ``image`` with the rectangle ``box`` ``(x0, y0, x1, y1)`` (kdface pixels) outlined."""
    out = to_uint8_rgb(image).copy()
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite([x0, y0, x1, y1])):
        return out
    one = 1 << _SHIFT
    # The outline runs along the box's edge: pixel centres at x0 + 0.5 ... x1 - 0.5.
    p0 = (int(round(x0 * one)), int(round(y0 * one)))
    p1 = (int(round((x1 - 1) * one)), int(round((y1 - 1) * one)))
    cv2.rectangle(out, p0, p1, tuple(int(c) for c in color), max(1, int(thickness)), cv2.LINE_AA, _SHIFT)
    return out


def _text_width(text: str, scale: float, thickness: int) -> int:
    return cv2.getTextSize(text, _FONT, scale, thickness)[0][0]


def _fit_text(text: str, width: int, scale: float, thickness: int) -> str:
    """``text`` cut (with "...") to at most ``width`` pixels."""
    if _text_width(text, scale, thickness) <= width:
        return text
    while text and _text_width(text + "...", scale, thickness) > width:
        text = text[:-1]
    return text + "..."


def _wrap_text(text: str, width: int, scale: float, thickness: int) -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` pixels (a too-long word is cut)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(f"{lines[-1]} {word}", scale, thickness) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return [_fit_text(line, width, scale, thickness) for line in lines]


def _key_lines(entries, width: int, scale: float, thickness: int) -> list[list[tuple[int, tuple]]]:
    """Lay key entries ``(label, color, marker)`` out left to right, wrapping at ``width`` pixels;
    returns lines of ``(x offset, entry)``."""
    line_h = cv2.getTextSize("Ag", _FONT, scale, thickness)[0][1]
    marker_w = 2 * line_h
    gap = line_h
    lines, line, x = [], [], 0
    for entry in entries:
        w = marker_w + int(0.6 * line_h) + _text_width(entry[0], scale, thickness)
        if line and x + w > width:
            lines.append(line)
            line, x = [], 0
        line.append((x, entry))
        x += w + gap
    if line:
        lines.append(line)
    return lines


def key_panel(width: int, entries, title: str | None = None, scale: float | None = None) -> np.ndarray:
    """A dark ``width``-pixel-wide band holding ``title`` (white, first line) and a key: each entry
    ``(label, color, marker)`` is a coloured ``"dot"`` or ``"box"`` then its label, wrapped to fit."""
    width = int(width)
    if scale is None:
        scale = float(np.clip(width / 900, 0.4, 0.7))
    thickness = 1
    text_h = cv2.getTextSize("Ag", _FONT, scale, thickness)[0][1]
    line_h = int(round(text_h * 2.0))
    margin = max(4, text_h // 2)
    lines = _key_lines(entries, width - 2 * margin, scale, thickness)
    title_lines = _wrap_text(title, width - 2 * margin, scale * 1.15, thickness + 1) if title else []
    height = line_h * (len(title_lines) + len(lines)) + margin
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = _KEY_BACKGROUND
    y = margin
    for text in title_lines:
        cv2.putText(panel, text, (margin, y + text_h + 2), _FONT, scale * 1.15, _TEXT_COLOR, thickness + 1,
                    cv2.LINE_AA)  # fmt: skip
        y += line_h
    for line in lines:
        base = y + text_h + 2
        for x, (label, color, marker) in line:
            x += margin
            color = tuple(int(c) for c in color)
            if marker == "box":
                cv2.rectangle(panel, (x, base - text_h), (x + 2 * text_h - 1, base), color, 2)
            else:
                centre, r = (x + text_h, base - text_h // 2), max(2, text_h // 2)
                cv2.circle(panel, centre, r, color, -1, cv2.LINE_AA)
            tx = x + 2 * text_h + int(0.6 * text_h)
            text = _fit_text(label, width - margin - tx, scale, thickness)
            cv2.putText(panel, text, (tx, base), _FONT, scale, _TEXT_COLOR, thickness, cv2.LINE_AA)
        y += line_h
    return panel


def overlay_grid(
    images,
    pred,
    gt=None,
    path=None,
    cols: int = 8,
    scale: float | None = None,
    radius: float | None = None,
    title: str | None = None,
) -> np.ndarray:
    """Tile overlays of ``images`` ``(B, H, W, 3)`` with ``pred`` / ``gt`` ``(B, N, 2)`` into one image,
    under a header band with ``title`` and the key (green = ground truth, red = prediction).

    Each crop is upscaled by ``scale`` (default: the smallest integer bringing its short side to
    >= 128 px) before drawing, so points stay visible; points scale by the same factor, which is
    exact under the kdface convention. Saves a PNG at ``path`` when given; returns the RGB image:
    the header, then the grid of ``ceil(B / cols) * round(H * scale)`` by ``min(B, cols) * round(W * scale)``
    pixels.
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
    key = [("ground truth", GT_COLOR, "dot")] if gt is not None else []
    key.append(("prediction", PRED_COLOR, "dot"))
    grid = np.concatenate([key_panel(grid.shape[1], key, title), grid])
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


def photo_overlay(image, face_boxes, crop_boxes=None, landmarks=None, labels=None, title=None) -> np.ndarray:
    """A photo with each detected face box (yellow), the crop the model saw (blue), predicted
    ``landmarks`` (red dots, ``(N, 2)`` per face) and a text ``label`` per face (above its crop box),
    under a header band with ``title`` and the key. Every per-face argument is a list (or None) in the
    order of ``face_boxes``.
    """
    out = to_uint8_rgb(image)
    w = out.shape[1]
    thickness = max(2, round(w / 300))
    for box in crop_boxes if crop_boxes is not None else []:
        out = draw_box(out, box, CROP_BOX_COLOR, thickness)
    for box in face_boxes:  # over the crop box where they touch: the detection is what the user checks
        out = draw_box(out, box, FACE_BOX_COLOR, thickness)
    for pts in landmarks if landmarks is not None else []:
        out = draw_landmarks(out, pts, PRED_COLOR, radius=max(1.5, w / 300))
    text_scale = max(0.5, w / 900)
    outer = crop_boxes if crop_boxes is not None else face_boxes
    for box, label in zip(outer, labels if labels is not None else [], strict=False):
        x0, y0 = int(round(box[0])), int(round(box[1]))
        (tw, th), base = cv2.getTextSize(label, _FONT, text_scale, 1)
        top = max(0, y0 - th - base - 4)  # above the box, or inside it at the top edge
        cv2.rectangle(out, (x0, top), (x0 + tw + 6, top + th + base + 4), _KEY_BACKGROUND, -1)
        cv2.putText(out, label, (x0 + 3, top + th + 2), _FONT, text_scale, _TEXT_COLOR, 1, cv2.LINE_AA)
    key = [("detected face", FACE_BOX_COLOR, "box")]
    if crop_boxes is not None:
        key.append(("crop the model saw", CROP_BOX_COLOR, "box"))
    if landmarks is not None:
        key.append(("predicted landmarks", PRED_COLOR, "dot"))
    return np.concatenate([key_panel(w, key, title), out])


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
