"""A display list of OpenCV drawing operations in canonical coordinates, projected in one batch."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from kdface.data.synthfaces.geometry import _Projector

_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn to 1/16 px
_FIX = float(1 << _SHIFT)
_AA = cv2.LINE_AA


def _fix(px: np.ndarray) -> np.ndarray:
    # kdface pixels (pixel centres at +0.5) -> OpenCV fixed point (pixel centres at integers)
    return np.round((px - 0.5) * _FIX).astype(np.int32).reshape(-1, 1, 2)


@lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(width, dtype=np.float32) + 0.5, np.arange(height, dtype=np.float32) + 0.5)


class _Canvas:
    """A display list of drawing operations on named layers, projected in one batch.

    Shapes are recorded in canonical coordinates; :meth:`flush` projects all their points with
    one vectorised call and replays the operations in order.  Layers: ``img`` (RGB uint8) plus
    masks and image snapshots created with :meth:`new_mask` / :meth:`snapshot`.
    """

    def __init__(self, img: np.ndarray, proj: _Projector):
        self.proj = proj
        self.h, self.w = img.shape[:2]
        self.layers: dict[str, np.ndarray] = {"img": img}
        self._pts: list[np.ndarray] = []
        self._n = 0
        self._ops: list[tuple] = []

    def thick(self, units: float) -> int:
        return max(1, int(round(units * self.proj.s)))

    def _add(self, pts: np.ndarray) -> slice:
        start = self._n
        self._pts.append(pts)
        self._n += len(pts)
        return slice(start, self._n)

    def fill(self, pts, color, target="img", aa=True, mask=None):
        """Fill a canonical polygon; also into the mask layer ``mask`` (255, anti-aliased) when given."""
        sl = self._add(pts)
        self._ops.append(("fill", sl, target, color, _AA if aa else cv2.LINE_8))
        if mask is not None:
            self._ops.append(("fill", sl, mask, 255, _AA))

    def line(self, pts, color, units=0.02, closed=False, target="img", aa=True):
        sl = self._add(pts)
        self._ops.append(("line", sl, target, color, self.thick(units), closed, _AA if aa else cv2.LINE_8))

    def new_mask(self, name: str) -> None:
        self._ops.append(("mask", name))

    def snapshot(self, name: str) -> None:
        """A copy of ``img`` as it is at this point of the list."""
        self._ops.append(("copy", name))

    def composite(self, layer: str, mask: str) -> None:
        """``img = img * (1 - m) + layer * m`` with ``m = mask / 255``."""
        self._ops.append(("comp", layer, mask))

    def call(self, fn) -> None:
        """Run ``fn(layers)`` at this point of the list."""
        self._ops.append(("call", fn))

    def flush(self) -> None:
        fixed = _fix(self.proj(np.concatenate(self._pts))) if self._pts else None
        L = self.layers
        for op in self._ops:
            kind = op[0]
            if kind == "fill":
                _, sl, target, color, lt = op
                cv2.fillPoly(L[target], [fixed[sl]], color, lt, _SHIFT)
            elif kind == "line":
                _, sl, target, color, thick, closed, lt = op
                cv2.polylines(L[target], [fixed[sl]], closed, color, thick, lt, _SHIFT)
            elif kind == "mask":
                L[op[1]] = np.zeros((self.h, self.w), np.uint8)
            elif kind == "copy":
                L[op[1]] = L["img"].copy()
            elif kind == "comp":
                img, layer, mask = L["img"], L[op[1]], L[op[2]]
                m = (mask.astype(np.float32) * np.float32(1.0 / 255.0))[..., None]
                L["img"] = np.clip(img + (layer.astype(np.float32) - img) * m + 0.5, 0, 255).astype(np.uint8)
            else:
                op[1](L)
        self._pts, self._n, self._ops = [], 0, []
