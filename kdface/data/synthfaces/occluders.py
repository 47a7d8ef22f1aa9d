"""Occluders drawn over the shaded face, with an exact binary mask, and per-landmark occlusion flags."""

from __future__ import annotations

import math

import numpy as np

from kdface.data.synthfaces.canvas import _Canvas, _pixel_grid
from kdface.data.synthfaces.geometry import _ellipse, _Shapes, _xyz
from kdface.data.synthfaces.params import OCCLUDER_TYPES, FaceParams, Identity, _color, _mix, _scaled


def _occluder(cv: _Canvas, params: FaceParams, shapes: _Shapes, rng: np.random.Generator) -> None:
    """Record ``params.occluder`` on the canvas, with its binary mask in layer ``occ`` (255 = occluded)."""
    kind = params.occluder
    cv.new_mask("occ")
    if kind == "none":
        return
    if kind not in _OCCLUDERS:
        raise ValueError(f"unknown occluder {kind!r}; expected one of {OCCLUDER_TYPES}")
    _OCCLUDERS[kind](cv, params.identity, shapes, rng)


def _draw_occluding(cv: _Canvas, pts: np.ndarray, color, units: float | None = None, closed: bool = False):
    """Fill ``pts`` (or stroke them ``units`` wide) and mark the same pixels in ``occ``.

    The mask is drawn without anti-aliasing so that it stays binary.
    """
    if units is None:
        cv.fill(pts, color)
        cv.fill(pts, 255, target="occ", aa=False)
    else:
        cv.line(pts, color, units, closed=closed)
        cv.line(pts, 255, units, closed=closed, target="occ", aa=False)


def _sunglasses(cv: _Canvas, idn: Identity, shapes: _Shapes, rng: np.random.Generator) -> None:
    """Dark superellipse lenses with a glint, a frame, arms to the ears and a bridge."""
    a = shapes.a
    rx = idn.eye_width + rng.uniform(0.06, 0.1)
    ry = rng.uniform(0.12, 0.17)
    ex = rng.uniform(2.0, 4.0)
    cy = rng.uniform(-0.03, 0.02)
    color = _color(rng.uniform(5, 45, 3))
    frame = _color(rng.uniform(0, 70, 3)) if rng.uniform() < 0.7 else _color(rng.uniform(100, 220, 3))
    for side in (-1, 1):
        lens = _ellipse(side * idn.eye_spacing, cy, rx, ry, n=32, z=0.15, exponent=ex)
        _draw_occluding(cv, lens, color)
        glint = _ellipse(side * idn.eye_spacing - 0.3 * rx, cy - 0.35 * ry, rx * 0.35, ry * 0.2, n=16, z=0.15)
        cv.fill(glint, _mix(color, (230, 230, 235), 0.25))
        _draw_occluding(cv, lens, frame, 0.03, closed=True)
        arm = _xyz([side * (idn.eye_spacing + rx * 0.95), side * (a + 0.03)], [cy - 0.05, 0.0], [0.1, -0.3])
        _draw_occluding(cv, arm, frame, 0.035)
    bridge = _xyz([-(idn.eye_spacing - rx), 0, idn.eye_spacing - rx], [cy - 0.04, cy - 0.08, cy - 0.04], 0.35)
    _draw_occluding(cv, bridge, frame, 0.035)


def _medical_mask(cv: _Canvas, idn: Identity, shapes: _Shapes, rng: np.random.Generator) -> None:
    """A medical mask following the jaw from below the nose, with pleats and ear loops."""
    a, jt = shapes.a, idn.jaw_top
    palette = [(165, 200, 228), (236, 236, 236), (40, 42, 48), (230, 190, 200), (150, 170, 150)]
    color = _color(np.asarray(palette[int(rng.integers(len(palette)))]) + rng.normal(0, 6, 3))
    top_y = rng.uniform(0.25, 0.4)
    u = shapes.jaw_u[(shapes.jaw_u >= 0.08) & (shapes.jaw_u <= 0.92)]
    jx, jy = shapes.jaw_xy(u)
    bottom = _xyz(jx * 1.02, jy + 0.04 + 0.04 * np.sin(np.pi * u), 0.05)
    w = np.linspace(1, -1, 21)
    top = _xyz(jx[-1] * 1.02 * w, top_y + (jy[-1] - top_y) * np.abs(w) ** 1.5 - 0.06 * (1 - w**2), 0.3)
    poly = np.concatenate([bottom, top])
    _draw_occluding(cv, poly, color)
    for k in (0.3, 0.5, 0.7):
        yk = top_y + k * (idn.chin_y - top_y) * 0.8
        pleat = _xyz(np.linspace(-0.65 * a, 0.65 * a, 9), np.full(9, yk), 0.35)
        cv.line(pleat, _mix(color, _scaled(color, 0.7), 0.35), 0.015)
    for side in (-1, 1):
        loop = _xyz(
            [side * a * 0.96, side * (a + 0.06), side * a * 0.9], [jy[0] - 0.05, jt + 0.05, 1.05], -0.2
        )
        _draw_occluding(cv, loop, _scaled(color, 0.9), 0.02)


def _hand(cv: _Canvas, idn: Identity, shapes: _Shapes, rng: np.random.Generator) -> None:
    """A hand (four fingers, thumb, palm) over the mouth, a cheek, the chin or an eye."""
    target = [(0.0, idn.mouth_y), (0.55, 0.6), (-0.55, 0.6), (0.0, idn.chin_y), (0.45, 0.0), (-0.45, 0.0)]
    tx, ty = target[int(rng.integers(len(target)))]
    tx, ty = tx + rng.normal(0, 0.1), ty + rng.normal(0, 0.1)
    size = rng.uniform(0.8, 1.15)
    ang = rng.uniform(-0.9, 0.9) + (np.pi if rng.uniform() < 0.5 else 0.0)
    # the hand is nearer the camera (and the light) than the face: brighter, or in shadow
    bright = rng.uniform() < 0.6 and max(idn.skin) < 215
    tone = rng.uniform(1.1, 1.2) if bright else rng.uniform(0.72, 0.86)
    skin = _color(np.asarray(idn.skin) * tone + rng.normal(0, 5, 3))
    edge = _scaled(skin, 0.65)
    ca, sa = math.cos(ang), math.sin(ang)

    def rot(px, py):
        return tx + ca * px - sa * py, ty + sa * px + ca * py

    for k in range(4):
        fx = (-0.24 + 0.16 * k) * size
        length = (0.42 + 0.08 * (1 - abs(k - 1.5) / 1.5)) * size
        cx, cy = rot(fx, -0.3 * size - length / 2)
        finger = _ellipse(cx, cy, 0.075 * size, length / 2, n=20, z=0.7, angle=ang, exponent=2.6)
        _draw_occluding(cv, finger, skin)
        cv.line(finger, edge, 0.012, closed=True)
    cx, cy = rot(0.36 * size, -0.05 * size)
    thumb = _ellipse(cx, cy, 0.08 * size, 0.24 * size, n=20, z=0.7, angle=ang - 0.7, exponent=2.4)
    _draw_occluding(cv, thumb, skin)
    cv.line(thumb, edge, 0.012, closed=True)
    palm = _ellipse(tx, ty, 0.32 * size, 0.36 * size, n=28, z=0.7, angle=ang, exponent=2.4)
    _draw_occluding(cv, palm, skin)
    cv.line(palm[10:27], edge, 0.012)


def _hair_lock(cv: _Canvas, idn: Identity, shapes: _Shapes, rng: np.random.Generator) -> None:
    """A lock of the person's own hair hanging over one side of the face."""
    side = -1 if rng.uniform() < 0.5 else 1
    color = _scaled(idn.hair_color, rng.uniform(0.8, 1.1))
    width = rng.uniform(0.2, 0.38)
    end_y = rng.uniform(0.3, 1.2)
    t = np.linspace(0, 1, 16)
    cx = side * (0.05 + rng.uniform(0.3, 0.6) * np.sin(np.pi * t * 0.8))
    cy = -1.1 + (end_y + 1.1) * t
    wid = width * (1 - 0.7 * t)
    band = np.concatenate([_xyz(cx - wid, cy, 0.6), _xyz((cx + wid)[::-1], cy[::-1], 0.6)])
    _draw_occluding(cv, band, color)
    for _ in range(int(rng.integers(3, 7))):
        off = rng.uniform(-1, 1) * width
        strand = _xyz(cx + off * (1 - 0.7 * t) + rng.normal(0, 0.03), cy, 0.6)
        cv.line(strand, _scaled(color, rng.choice([0.7, 1.3])), 0.012)


def _textured_object(cv: _Canvas, idn: Identity, shapes: _Shapes, rng: np.random.Generator) -> None:
    """A round or boxy object with a striped or checkered texture (fixed in screen space)."""
    cx, cy = rng.uniform(-0.7, 0.7), rng.uniform(-0.3, 1.4)
    w, h = rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)
    ang = rng.uniform(0, np.pi)
    shape = _ellipse(cx, cy, w / 2, h / 2, n=32, z=0.8, angle=ang, exponent=float(rng.choice([2.0, 8.0])))
    base = _color(rng.uniform(0, 255, 3))
    stripe = _color(rng.uniform(0, 255, 3))
    period = rng.uniform(2.5, 8.0)
    ta = rng.uniform(0, np.pi)
    checker = rng.uniform() < 0.5

    # runs at flush time, when the canvas's layers exist
    def texture(layers, base=base, stripe=stripe, period=period, ta=ta, checker=checker):
        gxp, gyp = _pixel_grid(cv.w, cv.h)
        phase = np.floor((gxp * math.cos(ta) + gyp * math.sin(ta)) / period)
        if checker:
            phase = phase + np.floor((-gxp * math.sin(ta) + gyp * math.cos(ta)) / period)
        layer = np.empty((cv.h, cv.w, 3), np.uint8)
        layer[:] = np.asarray(base, np.uint8)
        layer[(phase % 2).astype(bool)] = np.asarray(stripe, np.uint8)
        layers["object"] = layer

    cv.call(texture)
    cv.new_mask("alpha")
    cv.fill(shape, 255, target="alpha")
    cv.composite("object", "alpha")
    cv.fill(shape, 255, target="occ", aa=False)
    cv.line(shape, _scaled(base, 0.5), 0.02, closed=True)


# OCCLUDER_TYPES[1:] -> the function that records it
_OCCLUDERS = {
    "sunglasses": _sunglasses,
    "mask": _medical_mask,
    "hand": _hand,
    "hair": _hair_lock,
    "object": _textured_object,
}


def landmark_occlusion(landmarks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-landmark flags: True where the landmark's pixel is occluded in ``mask`` (255 = occluded)."""
    h, w = mask.shape[:2]
    pts = np.asarray(landmarks, np.float64)
    cols = np.clip(np.floor(pts[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.floor(pts[:, 1]).astype(int), 0, h - 1)
    return mask[rows, cols] > 127
