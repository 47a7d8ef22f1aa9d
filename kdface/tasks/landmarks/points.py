"""What every landmark reader shares: the coordinate convention, samples, errors, flip permutations.

Coordinate convention inside kdface
-----------------------------------
* Pixel coordinates are **continuous with the origin at the top-left corner of the top-left
  pixel**: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j+0.5, i+0.5)``.
  Under this convention resizing an image by ``s`` maps ``x -> s*x`` exactly (as ``cv2.resize``
  and ``tf.image.resize`` sample) and a horizontal flip maps ``x -> W - x``.
* Readers convert at the boundary: 300W ``.pts`` and COFW ``.mat`` are MATLAB 1-based pixel
  centres (``x_kdface = x_file - 0.5``); WFLW is 0-based pixel centres (``x_kdface = x_file + 0.5``).
  (The KD-Loss original applies no offset at all; the difference is half a pixel.)
* Landmarks are arrays of shape ``(N, 2)`` holding ``(x, y)``.
* Model targets and outputs are **normalised to the crop**: ``u = x / W - 0.5``, ``v = y / H - 0.5``
  (so roughly ``[-0.5, 0.5]``, positive = right/down), flattened and interleaved
  ``[u0, v0, u1, v1, ...]``. The KD-Loss original used ``(112 - x) / 224``, i.e. the same numbers
  with the sign flipped; every kdface loss is symmetric under that flip, so nothing else changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from kdface.errors import DataFormatError as DataFormatError  # re-exported: readers import it here


@dataclasses.dataclass
class LandmarkSample:
    """One annotated face as a reader returns it (kdface pixel convention, see module doc).

    Exactly one of ``image_path`` and ``image`` is set (COFW embeds its images in the ``.mat``).
    ``box`` is the dataset's own face box ``(x0, y0, x1, y1)`` in kdface pixels, or ``None``.
    """

    key: str
    landmarks: np.ndarray
    image_path: str | None = None
    image: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    origin: str | None = None  # where the annotation came from, "file" or "file:line", for error messages


def _pairs_to_permutation(num_points: int, pairs) -> np.ndarray:
    perm = np.arange(num_points)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# 300W / iBUG 68-point convention (0-based). Left/right are the subject's.
_PAIRS_68 = (
    [(i, 16 - i) for i in range(8)]  # jaw
    + [(17 + i, 26 - i) for i in range(5)]  # brows
    + [(31, 35), (32, 34)]  # nostrils
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    + [(60, 64), (61, 63), (65, 67)]  # inner lips
)
# WFLW 98 points (0-based), the pairing used by PFLD/HRNet.
_PAIRS_98 = (
    [(i, 32 - i) for i in range(16)]  # jaw
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]  # nostrils
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]  # eyes
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]  # outer lips
    + [(88, 92), (89, 91), (93, 95)]  # inner lips
    + [(96, 97)]  # pupils
)
# COFW 29 points (0-based), the pairing used by HRNet.
_PAIRS_29 = [
    (0, 1),
    (4, 6),
    (2, 3),
    (5, 7),
    (8, 9),
    (10, 11),
    (12, 14),
    (16, 17),
    (13, 15),
    (18, 19),
    (22, 23),
]

FLIP_PERMUTATIONS: dict[int, np.ndarray] = {
    68: _pairs_to_permutation(68, _PAIRS_68),
    98: _pairs_to_permutation(98, _PAIRS_98),
    29: _pairs_to_permutation(29, _PAIRS_29),
}

# Point pairs whose distance normalises NME (0-based), see docs/landmarks.md.
NORMALISERS: dict[str, tuple[int, int]] = {
    "300w": (36, 45),  # outer eye corners (inter-ocular)
    "synthface": (36, 45),
    "cofw": (8, 9),  # the pair HRNet and the KD-Loss original use
    "wflw": (60, 72),  # outer eye corners (the standard WFLW inter-ocular)
    "wflw_interpupil": (96, 97),  # the KD-Loss original's choice
}

NUM_POINTS = {"300w": 68, "synthface": 68, "cofw": 29, "wflw": 98}


def flip_permutation(num_points: int) -> np.ndarray:
    """Index permutation that relabels left/right points after a horizontal flip."""
    try:
        return FLIP_PERMUTATIONS[num_points]
    except KeyError:
        raise ValueError(
            f"no flip permutation for {num_points} landmarks; known: {sorted(FLIP_PERMUTATIONS)}"
        ) from None


def flip_landmarks(landmarks: np.ndarray, width: float) -> np.ndarray:
    """Mirror ``(N, 2)`` landmarks of an image ``width`` pixels wide, relabelling left/right."""
    flipped = np.asarray(landmarks, dtype=np.float32).copy()
    flipped[:, 0] = width - flipped[:, 0]
    return flipped[flip_permutation(len(flipped))]


def normalise(landmarks, width, height):
    """Pixels in a ``width x height`` crop -> flat interleaved normalised vector (see module doc)."""
    pts = np.asarray(landmarks, dtype=np.float32)
    out = np.stack([pts[..., 0] / width - 0.5, pts[..., 1] / height - 0.5], axis=-1)
    return out.reshape(*pts.shape[:-2], -1)


def denormalise(vector, width, height):
    """Flat interleaved normalised vector(s) ``(..., 2N)`` -> pixels ``(..., N, 2)`` in the crop."""
    vec = np.asarray(vector, dtype=np.float32)
    pts = vec.reshape(*vec.shape[:-1], -1, 2)
    return np.stack([(pts[..., 0] + 0.5) * width, (pts[..., 1] + 0.5) * height], axis=-1)


def landmarks_to_pixels(predictions, image_size=None, boxes=None):
    """Model output ``(B, 2N)`` -> pixel landmarks ``(B, N, 2)``.

    With ``image_size`` (int or ``(width, height)``): pixels of the crop the model saw.
    With ``boxes`` ``(B, 4)`` = ``(x0, y0, x1, y1)`` of each crop in its source image: source-image
    pixels. Pixels follow the kdface convention (origin at the top-left pixel's corner; subtract 0.5
    for OpenCV-style pixel-centre coordinates).
    """
    if boxes is not None:
        boxes = np.asarray(boxes, np.float32)
        size = boxes[:, None, 2:] - boxes[:, None, :2]
        return denormalise(predictions, size[..., 0], size[..., 1]) + boxes[:, None, :2]
    if image_size is None:
        raise ValueError("give image_size or boxes")
    width, height = (image_size, image_size) if np.isscalar(image_size) else image_size
    return denormalise(predictions, width, height)


def landmark_box(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    pts = np.asarray(landmarks)
    return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
