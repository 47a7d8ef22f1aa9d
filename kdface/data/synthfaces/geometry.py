"""Canonical face geometry: the curves of one face, the 68 landmarks among them, and the pose projection.

The canonical frame and the projection are described in the package doc (:mod:`kdface.data.synthfaces`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from kdface.data.synthfaces.params import Expression, FaceParams, Identity

# Head ellipsoid used for depth (yaw) and for shading normals.
_DEPTH = 0.9
_HEAD_YC = 0.35
_HEAD_RY = 1.95
_YAW_AXIS_Z = 0.8  # depth of the vertical axis the head turns about (keeps the face roughly in place)
_JAW_DROP = 0.55  # chin drop per unit of mouth opening


def _dense(lo: float, hi: float, n: int, keep: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of [lo, hi] plus the exact values ``keep``; returns (samples, indices of keep)."""
    keep_arr = np.asarray(keep, np.float64)
    ts = np.union1d(np.linspace(lo, hi, n), keep_arr)
    return ts, np.searchsorted(ts, keep_arr)


@lru_cache(maxsize=64)
def _dense_cached(lo: float, hi: float, n: int, keep: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    ts, rows = _dense(lo, hi, n, keep)
    ts.flags.writeable = False
    rows.flags.writeable = False
    return ts, rows


@lru_cache(maxsize=64)
def _unit_superellipse(n: int, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / exponent
    ex, ey = np.sign(c) * np.abs(c) ** e, np.sign(s) * np.abs(s) ** e
    ex.flags.writeable = False
    ey.flags.writeable = False
    return ex, ey


def _xyz(x, y, z=0.0) -> np.ndarray:
    """Stack coordinates (arrays or scalars) into canonical ``(N, 3)`` points ``(x, y, z_extra)``."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    out = np.empty((max(x.size, y.size), 3))
    out[:, 0] = x
    out[:, 1] = y
    out[:, 2] = z
    return out


@lru_cache(maxsize=128)
def _lin(lo: float, hi: float, n: int) -> np.ndarray:
    """Cached read-only ``np.linspace(lo, hi, n)``."""
    out = np.linspace(lo, hi, n)
    out.flags.writeable = False
    return out


def _ellipse(cx, cy, rx, ry, n=28, z=0.0, angle=0.0, exponent=2.0) -> np.ndarray:
    """Closed superellipse polygon (canonical units); ``angle`` in radians."""
    ux, uy = _unit_superellipse(n, float(exponent))
    ex, ey = rx * ux, ry * uy
    if angle:
        ca, sa = math.cos(angle), math.sin(angle)
        ex, ey = ca * ex - sa * ey, sa * ex + ca * ey
    return _xyz(cx + ex, cy + ey, z)


class _Projector:
    """Canonical ``(x, y, z_extra)`` -> kdface pixels under a :class:`FaceParams` pose."""

    def __init__(self, params: FaceParams):
        pose = params.pose
        self.a = params.identity.face_half_width
        yaw, roll = math.radians(pose.yaw), math.radians(pose.roll)
        self.cyaw, self.syaw = math.cos(yaw), math.sin(yaw)
        self.croll, self.sroll = math.cos(roll), math.sin(roll)
        self.s = params.face_size / 2.0 * pose.scale
        cx, cy = params.center if params.center is not None else (params.width / 2.0, params.height / 2.0)
        self.cx = cx + pose.shift_x * params.face_size
        self.cy = cy + pose.shift_y * params.face_size
        self.anchor_y = params.anchor_y

    def depth(self, x, y):
        r2 = (x * (1.0 / (1.05 * self.a))) ** 2 + ((y - _HEAD_YC) * (1.0 / _HEAD_RY)) ** 2
        return _DEPTH * np.sqrt(np.maximum(1.0 - r2, 0.0))

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        x, y = pts[:, 0], pts[:, 1]
        z = self.depth(x, y) + pts[:, 2]
        dx = x * self.cyaw + (z - _YAW_AXIS_Z) * self.syaw
        dy = y - self.anchor_y
        out = np.empty((len(pts), 2))
        out[:, 0] = self.cx + self.s * (self.croll * dx - self.sroll * dy)
        out[:, 1] = self.cy + self.s * (self.sroll * dx + self.croll * dy)
        return out

    def to_canonical(self, px, py):
        """Approximate inverse for shading: pixel -> canonical (x relative to the head centre, y)."""
        dx, dy = (px - self.cx) / self.s, (py - self.cy) / self.s
        xr = self.croll * dx + self.sroll * dy
        yr = -self.sroll * dx + self.croll * dy + self.anchor_y
        return xr + _YAW_AXIS_Z * self.syaw, yr


class _Shapes:
    """All canonical curves of one face plus the indices of the 68 landmarks among their samples."""

    def __init__(self, idn: Identity, ex: Expression):
        self.idn, self.ex = idn, ex
        self.curves: dict[str, np.ndarray] = {}
        self.lm_src: list[tuple[str, int] | None] = [None] * 68
        a = idn.face_half_width
        self.a = a
        self._jaw(idn, ex)
        self._forehead(idn)
        self._brows(idn, ex)
        self._eyes(idn, ex)
        self._nose(idn, ex)
        self._mouth(idn, ex)
        assert all(s is not None for s in self.lm_src)
        self.lm3d = np.stack([self.curves[name][row] for name, row in self.lm_src])  # type: ignore[misc]
        for arr in self.curves.values():
            arr.flags.writeable = False

    def _set(self, name: str, pts: np.ndarray, lm_ids: Sequence[int] = (), rows: Sequence[int] = ()):
        self.curves[name] = pts
        for i, r in zip(lm_ids, rows, strict=True):
            self.lm_src[i] = (name, int(r))

    # -- jaw contour: u in [0, 1], 0 = image-left temple, 0.5 = chin, 1 = image-right temple
    def jaw_xy(self, u):
        idn = self.idn
        phi = np.pi * (1.0 - np.asarray(u, np.float64))
        c, s = np.cos(phi), np.abs(np.sin(phi))
        e = 2.0 / idn.jaw_squareness
        b = idn.chin_y + _JAW_DROP * self.ex.mouth_open - idn.jaw_top
        x = self.a * np.sign(c) * np.abs(c) ** e * (1.0 - idn.chin_narrowing * s**3)
        y = idn.jaw_top + b * s**e
        return x, y

    def _jaw(self, idn, ex):
        u0 = _lin(0.0, 1.0, 201)
        x, y = self.jaw_xy(u0)
        seg = np.hypot(np.diff(x), np.diff(y))
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        u_lm = np.interp(cum[-1] * _lin(0.0, 1.0, 17), cum, u0)
        u_lm = 0.5 * (u_lm + (1.0 - u_lm[::-1]))  # exactly symmetric
        u_lm[0], u_lm[8], u_lm[16] = 0.0, 0.5, 1.0
        u, rows = _dense(0, 1, 121, u_lm)
        self.jaw_u = u
        self._set("jaw", _xyz(*self.jaw_xy(u)), range(17), rows)

    def _forehead(self, idn):
        v = _lin(0.0, 1.0, 61)[1:-1]  # right temple -> over the top -> left temple
        x = self.a * np.cos(np.pi * v) * (1 - 0.06 * np.sin(np.pi * v) ** 2)
        y = idn.jaw_top - idn.forehead_height * np.sin(np.pi * v)
        self.curves["forehead"] = _xyz(x, y)
        self.curves["skin"] = np.concatenate([self.curves["jaw"], self.curves["forehead"]])

    def brow_top(self, side: int, t):
        """Top edge of a brow; side -1 = image left; t = 0 inner end .. 1 outer end."""
        idn, ex = self.idn, self.ex
        t = np.asarray(t, np.float64)
        inner = idn.brow_inner - ex.brow_squeeze
        x = side * (inner + (idn.brow_outer - inner) * t)
        y0 = -idn.brow_height - ex.brow_raise - side * idn.asym_brow
        y = y0 - idn.brow_arch * np.sin(np.pi * (0.15 + 0.75 * t)) - ex.brow_inner_raise * (1 - t) ** 2
        y = y - 0.35 * ex.brow_raise * np.sin(np.pi * t)  # surprise arches the brow too
        return x, y

    def _brows(self, idn, ex):
        keep = (0.0, 0.25, 0.5, 0.75, 1.0)
        for side, ids in ((-1, (21, 20, 19, 18, 17)), (1, (22, 23, 24, 25, 26))):
            t, rows = _dense_cached(0.0, 1.0, 25, keep)
            x, y = self.brow_top(side, t)
            thick = idn.brow_thickness * (1.0 - 0.5 * t) * (1.0 - 0.2 * ex.brow_raise / 0.13)
            top = _xyz(x, y)
            bottom = _xyz(x, y + thick)[::-1]
            name = "brow_l" if side < 0 else "brow_r"
            self._set(name, np.concatenate([top, bottom]), ids, rows)

    def eye_frame(self, side: int):
        idn = self.idn
        ecx = side * idn.eye_spacing
        ecy = side * idn.asym_eye * -1.0
        outer = (ecx + side * idn.eye_width, ecy - idn.eye_tilt)
        inner = (ecx - side * idn.eye_width, ecy + 0.01)
        return outer, inner

    def _eyes(self, idn, ex):
        h_up = idn.eye_height * ex.eye_open
        h_lo = idn.eye_height * 0.6 * (1 - ex.lower_lid_raise) * (1 + 0.3 * (ex.eye_open - 1))
        for side, ids in ((-1, (36, 37, 38, 39, 40, 41)), (1, (45, 44, 43, 42, 47, 46))):
            (ox, oy), (ix, iy) = self.eye_frame(side)
            t, rows = _dense_cached(0.0, 1.0, 25, (0.0, 1 / 3, 2 / 3, 1.0))
            bx, by = ox + (ix - ox) * t, oy + (iy - oy) * t
            upper = _xyz(bx, by - h_up * np.sin(np.pi * t**0.92) ** 0.75)
            lower = _xyz(bx, by + h_lo * np.sin(np.pi * t) ** 0.85)
            n = len(t)
            # polygon: upper outer->inner, then lower inner->outer (without repeating the corners)
            poly = np.concatenate([upper, lower[::-1][1:-1]])
            name = "eye_l" if side < 0 else "eye_r"
            # rows in poly: upper t_k -> k; lower t_k -> n + (n - 2 - k)
            self._set(
                name,
                poly,
                ids,
                [rows[0], rows[1], rows[2], rows[3], 2 * n - 2 - rows[2], 2 * n - 2 - rows[1]],
            )
            self.curves[name + "_upper"] = upper
            self.curves[name + "_lower"] = lower

    def _nose(self, idn, ex):
        tip = idn.nose_length - 0.03 * ex.nose_wrinkle
        top = -0.08
        self.nose_base = tip + 0.085 - 0.02 * ex.nose_wrinkle
        self.nose_w = idn.nose_width * (1 + 0.1 * ex.nose_wrinkle + 0.05 * ex.cheek_raise)
        frac, rows = _dense_cached(0.0, 1.0, 25, (0.0, 1 / 3, 2 / 3, 1.0))
        ys = top + (tip - top) * frac
        self._set("bridge", _xyz(np.zeros_like(ys), ys, 0.42 * frac**1.6), (27, 28, 29, 30), rows)
        self.nose_top, self.nose_tip = top, tip
        xn, rows = _dense_cached(-1.0, 1.0, 25, (-1.0, -0.5, 0.0, 0.5, 1.0))
        y = self.nose_base + 0.045 * (1 - xn**2) ** 0.5
        self._set("nose_base", _xyz(self.nose_w * xn, y, 0.28 * (1 - xn**2) + 0.08), range(31, 36), rows)

    def mouth_fns(self):
        idn, ex = self.idn, self.ex
        mw = idn.mouth_width * ex.mouth_width
        g = ex.mouth_open
        lift = ex.corner_lift + idn.mouth_curve
        ti = 0.82
        press = ex.lip_press
        u_th = idn.upper_lip * (1 - 0.5 * press) * (1 - 0.25 * (ex.mouth_width - 1))
        l_th = idn.lower_lip * (1 - 0.45 * press) * (1 - 0.25 * (ex.mouth_width - 1))
        my = idn.mouth_y

        def base(t):
            return (
                my
                - lift * np.abs(t) ** 1.8
                + idn.asym_mouth * t
                - ex.corner_asym * np.clip(t, 0, None) ** 1.8
            )

        def q(t):
            return np.clip(1 - (t / ti) ** 2, 0, None) ** 0.6

        def inner_up(t):
            return base(t) - (0.35 * g + ex.upper_lip_raise) * q(t)

        def inner_lo(t):
            return base(t) + 0.65 * g * q(t)

        def outer_up(t):
            bow = 1 - 0.3 * np.exp(-((t / 0.13) ** 2))
            return inner_up(t) - u_th * np.clip(1 - t**2, 0, None) ** 0.55 * bow

        def outer_lo(t):
            return inner_lo(t) + l_th * np.clip(1 - t**2, 0, None) ** 0.6

        return mw, ti, inner_up, inner_lo, outer_up, outer_lo

    def _mouth(self, idn, ex):
        mw, ti, inner_up, inner_lo, outer_up, outer_lo = self.mouth_fns()
        z = lambda t: 0.12 * np.clip(1 - t**2, 0, None)  # noqa: E731
        t, rows = _dense_cached(-1.0, 1.0, 41, (-1.0, -0.6, -0.25, 0.0, 0.25, 0.6, 1.0))
        self._set("lip_outer_up", _xyz(mw * t, outer_up(t), z(t)), range(48, 55), rows)
        t, rows = _dense_cached(-1.0, 1.0, 41, (0.6, 0.3, 0.0, -0.3, -0.6))
        self._set("lip_outer_lo", _xyz(mw * t, outer_lo(t), z(t)), range(55, 60), rows)
        t, rows = _dense_cached(-ti, ti, 33, (-ti, -ti / 2, 0.0, ti / 2, ti))
        self._set("lip_inner_up", _xyz(mw * t, inner_up(t), z(t)), range(60, 65), rows)
        t, rows = _dense_cached(-ti, ti, 33, (ti / 2, 0.0, -ti / 2))
        self._set("lip_inner_lo", _xyz(mw * t, inner_lo(t), z(t)), range(65, 68), rows)
        self.mouth_w = mw


@lru_cache(maxsize=16)
def _shapes(identity: Identity, expression: Expression) -> _Shapes:
    return _Shapes(identity, expression)


def face_landmarks(params: FaceParams) -> np.ndarray:
    """The 68 landmarks (kdface pixels, float32) :func:`render_face` would return, without rendering."""
    return _Projector(params)(_shapes(params.identity, params.expression).lm3d).astype(np.float32)
