"""Rendering one face: background, the person in flat colours, shading, occluder, blur and noise."""

from __future__ import annotations

import math

import cv2
import numpy as np

from kdface.data.synthfaces.canvas import _AA, _FIX, _SHIFT, _Canvas, _fix, _pixel_grid
from kdface.data.synthfaces.geometry import _HEAD_RY, _HEAD_YC, _Projector, _shapes
from kdface.data.synthfaces.occluders import _occluder
from kdface.data.synthfaces.params import OCCLUDER_TYPES, FaceParams, _color
from kdface.data.synthfaces.person import _draw_person


def render_face(
    params: FaceParams, rng: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one face.

    Returns ``(image, landmarks, occlusion_mask)``: an ``(H, W, 3)`` uint8 **RGB** image, ``(68, 2)``
    float32 landmarks in kdface pixels (origin at the top-left corner of the top-left pixel) and an
    ``(H, W)`` uint8 mask, 255 where the occluder covers the image (all zero for ``occluder="none"``).
    ``rng`` (a Generator or a seed) drives the background clutter, clothing colour, occluder
    details and pixel noise; everything else comes from ``params``.
    """
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    if params.occluder not in OCCLUDER_TYPES:
        raise ValueError(f"unknown occluder {params.occluder!r}; expected one of {OCCLUDER_TYPES}")
    shapes = _shapes(params.identity, params.expression)
    proj = _Projector(params)
    landmarks = proj(shapes.lm3d).astype(np.float32)

    img = _background(params.width, params.height, params.clutter, rng)
    clothing = _color(rng.uniform(20, 230, 3))
    cv = _Canvas(img, proj)
    cv.new_mask("person")
    _draw_person(cv, params, shapes, clothing)
    cv.flush()
    cv.layers["img"] = _shade(cv.layers["img"], params, proj, cv.layers["person"])
    _occluder(cv, params, shapes, rng)
    cv.flush()
    out, mask = cv.layers["img"], cv.layers["occ"]
    if params.blur > 0.05:
        out = cv2.GaussianBlur(out, (0, 0), params.blur)
    if params.noise > 0:
        noise = rng.standard_normal(out.shape, dtype=np.float32)
        noise *= np.float32(params.noise)
        out = cv2.add(out, noise, dtype=cv2.CV_8U)  # rounds and saturates
    return np.ascontiguousarray(out), landmarks, mask


def _background(width: int, height: int, clutter: float, rng: np.random.Generator) -> np.ndarray:
    """Two-colour gradient plus (``clutter > 0``) random shapes, slightly out of focus."""
    c1, c2 = rng.uniform(25, 235, 3).astype(np.float32), rng.uniform(25, 235, 3).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi) if clutter > 0 else np.pi / 2
    gx, gy = _pixel_grid(width, height)
    m = float(max(width, height))
    ca, sa = math.cos(angle) / m, math.sin(angle) / m
    t = np.clip(gx * ca + gy * sa + (0.5 - (width * ca + height * sa) / 2), 0, 1)
    img = (c1 + t[..., None] * (c2 - c1)).astype(np.uint8)
    if clutter <= 0:
        return img
    n = int(rng.poisson(6 * clutter)) + 1
    for _ in range(n):
        kind = int(rng.integers(5))
        color = _color(rng.uniform(0, 255, 3))
        cx, cy = rng.uniform(-0.1, 1.1) * width, rng.uniform(-0.1, 1.1) * height
        size = rng.uniform(0.06, 0.45) * width
        if kind == 0:
            w2, h2 = size, size * rng.uniform(0.3, 2.0)
            box = cv2.boxPoints(((cx, cy), (w2, h2), rng.uniform(0, 180)))
            cv2.fillPoly(img, [_fix(box + 0.5)], color, _AA, _SHIFT)
        elif kind == 1:
            cv2.circle(img, (int(cx * _FIX), int(cy * _FIX)), int(size / 2 * _FIX), color, -1, _AA, _SHIFT)
        elif kind == 2:
            p = _fix(np.array([[cx, cy], [cx + rng.normal(0, size), cy + rng.normal(0, size)]]) + 0.5)
            cv2.polylines(img, [p], False, color, int(rng.integers(1, 5)), _AA, _SHIFT)
        elif kind == 3:
            k = int(rng.integers(3, 7))
            pts = np.stack([cx + rng.normal(0, size / 2, k), cy + rng.normal(0, size / 2, k)], axis=1)
            cv2.fillPoly(img, [_fix(pts + 0.5)], color, _AA, _SHIFT)
        else:  # striped panel
            x0, y0 = int(cx - size / 2), int(cy - size / 2)
            period = int(rng.integers(3, 9))
            for k in range(0, int(size), period):
                cv2.line(img, (x0 + k, y0), (x0 + k, y0 + int(size)), color, 1, _AA)
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.6, 1.8)))


def _shade(img: np.ndarray, params: FaceParams, proj: _Projector, pmask: np.ndarray) -> np.ndarray:
    """Lambertian-ish lighting of the person (head-ellipsoid normals), background untouched."""
    gx, gy = _pixel_grid(params.width, params.height)
    x, y = proj.to_canonical(gx, gy)
    nx = x * np.float32(1.0 / (1.05 * proj.a))
    ny = (y - np.float32(_HEAD_YC)) * np.float32(1.0 / _HEAD_RY)
    nz = np.sqrt(np.maximum(1.0 - nx * nx - ny * ny, 0.0))
    # rotate the normals by the yaw
    c, s = np.float32(proj.cyaw), np.float32(proj.syaw)
    nx, nz = nx * c + nz * s, nz * c - nx * s
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + np.float32(1e-6)
    az, el = math.radians(params.light_azimuth), math.radians(params.light_elevation)
    lx, ly, lz = math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)
    # the light is fixed in screen space: express it in the (rolled) head frame
    rx, ry = proj.croll * lx + proj.sroll * ly, -proj.sroll * lx + proj.croll * ly
    dot = (nx * np.float32(rx) + ny * np.float32(ry) + nz * np.float32(lz)) / norm
    shade = np.float32(params.ambient) + np.float32(params.light_strength) * np.clip(dot, -0.3, 1.0)
    factor = 1.0 + (shade - 1.0) * (pmask.astype(np.float32) * np.float32(1.0 / 255.0))
    return cv2.multiply(img.astype(np.float32), cv2.merge([factor, factor, factor]), dtype=cv2.CV_8U)
