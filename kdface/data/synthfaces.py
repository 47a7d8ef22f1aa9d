"""SynthFaces: procedural faces with exact ground truth, written in the real datasets' formats.

No real face dataset can be downloaded in the environments kdface is developed in, so kdface renders
its own: cartoon-like but structured faces drawn with OpenCV (anti-aliased shapes, skin tone,
lighting, hair, background clutter, noise, blur). Every quantity a model is trained on is known
exactly because it is computed from the generator's own geometry:

* **68 landmarks** (300W convention, see :mod:`kdface.data.landmarks`) are samples of the very
  parametric curves that are drawn (jaw contour, brow top edges, eyelids, nose bridge and base,
  lip contours), pushed through the same pose transform.  Point 0 is on the image's left (the
  subject's right), point 36 is the outer corner of the eye on the image left.
* **7 basic expressions** in RAF-DB order (1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
  6 Anger, 7 Neutral), each a change of geometry (brows, eyelids, mouth, nose wrinkle, folds) with
  per-image intensity jitter.
* **Identities**: persistent parameter sets (face shape, features, skin, hair) drawn from
  ``(seed, identity id)``.
* **Occluders** (sunglasses, medical mask, hand, hair, textured objects) drawn after the face with
  an exact binary mask (255 = occluded) and per-landmark occlusion flags.
* **Neutral/expressive pairs**: for every identity at least one pair of RAF-DB images sharing pose,
  lighting, background and occluder, one Neutral and one with another expression.

Canonical face frame
--------------------
Shapes are built in a canonical frame: ``x`` to the image right, ``y`` down, the origin between
the eye centres, one unit = half the face width (``jaw 0 -> jaw 16`` is about 2 units).  A point
also gets a depth ``z`` (a head ellipsoid plus a per-feature offset, e.g. the nose tip sticks out).
The pose maps canonical points to kdface pixels: yaw (rotation about the vertical axis, which
squashes one side of the face), then roll, scale and shift around an anchor.  Drawing and
landmarks use the same function, so the landmarks sit exactly on the drawn features (up to the
1/16 px fixed-point precision of OpenCV's drawing).

On-disk layout (``generate``)
-----------------------------
::

    <root>/300w/{lfpw,helen}/{trainset,testset}/, 300w/afw/, 300w/ibug/   image_00001.png + .pts
    <root>/masks/300w/<same folders>/image_00001.png                       occluded images only
    <root>/rafdb/EmoLabel/list_patition_label.txt                          (sic, the real name)
    <root>/rafdb/Image/aligned/train_00001_aligned.jpg, test_0001_aligned.jpg   100x100
    <root>/rafdb/masks/train_00001_aligned.png                             occluded images only
    <root>/rafdb/metadata.csv
    <root>/rafdb/rafdb_occlusion_list.txt     RAN Occlusion-RAF-DB format, CRLF: "test_0003_aligned 3 4"
                                              = occluded test image, RAF label 0..6, OCCLUDER_TYPES index
    <root>/identities/00012/000.jpg                                        CASIA-WebFace style 112x112
    <root>/masks/identities/00012/000.png                                  occluded images only
    <root>/metadata.csv          one row per image of every tree
    <root>/landmarks.npz         paths, (N, 68, 2) landmarks (kdface pixels), (N, 68) occlusion flags
    <root>/synthfaces.json       the config; written last, marks a complete run

Test identities (300W common/challenging, RAF-DB test) are disjoint from train identities. RAF-DB
test images are occluded more often (``rafdb_test_occlusion_fraction``, default 0.5) than the rest
(``occlusion_fraction``), so that the occlusion list, SynthFaces' Occlusion-RAF-DB, is large enough.
Everything is deterministic: each image's random stream is seeded from ``(seed, tree, index)``,
so the bytes do not depend on the number of worker processes.

CLI: ``python -m kdface.data.synthfaces --out datasets/synthfaces --preset demo``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from kdface.io.atomic import write_bytes, write_text
from kdface.tasks.landmarks.w300 import write_pts

__all__ = [
    "EXPRESSION_NAMES",
    "GENERATOR_VERSION",
    "OCCLUDER_TYPES",
    "Expression",
    "FaceParams",
    "Identity",
    "Pose",
    "SynthFacesConfig",
    "face_landmarks",
    "generate",
    "identity_split",
    "landmark_occlusion",
    "main",
    "mirror_params",
    "render_face",
    "sample_expression",
    "sample_identity",
    "sample_pose",
]

GENERATOR_VERSION = "1.1.0"  # 1.1.0: rafdb_occlusion_list.txt, rafdb_test_occlusion_fraction

EXPRESSION_NAMES = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}
NEUTRAL = 7
OCCLUDER_TYPES = ("none", "sunglasses", "mask", "hand", "hair", "object")
OCCLUSION_LIST = "rafdb_occlusion_list.txt"  # under rafdb/; codes are OCCLUDER_TYPES indices (1..5)
HAIR_STYLES = ("short", "long", "buzz", "fringe", "curly", "bun", "bald")

# 300W folders -> (split, share of that split's images); shares follow the real 811/2000/337 and 224/330.
W300_FOLDERS = {
    "train": (("lfpw/trainset", 811), ("helen/trainset", 2000), ("afw", 337)),
    "common": (("lfpw/testset", 224), ("helen/testset", 330)),
    "challenging": (("ibug", 1),),
}

# Seed-sequence tags, so that streams for different purposes never collide.
_TAG_IDENTITY = 1
_TAG_SPLIT = 2
_TAG_LABELS = 3
_TAG_SCENE = 4
_TAG_EXPR = 5
_TREE_CODES = {"300w": 1, "rafdb": 2, "identities": 3}
_SPLIT_CODES = {"train": 1, "common": 2, "challenging": 3, "test": 4, "all": 5}

_SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn to 1/16 px
_FIX = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# Head ellipsoid used for depth (yaw) and for shading normals.
_DEPTH = 0.9
_HEAD_YC = 0.35
_HEAD_RY = 1.95
_YAW_AXIS_Z = 0.8  # depth of the vertical axis the head turns about (keeps the face roughly in place)
_JAW_DROP = 0.55  # chin drop per unit of mouth opening


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------
Color = tuple[float, float, float]


@dataclass(frozen=True)
class Identity:
    """Persistent appearance of one synthetic person (canonical units, RGB colours 0..255).

    Every left/right asymmetry is in a field named ``asym_*`` or in ``hair_part``;
    :meth:`symmetric` zeroes them and :meth:`mirrored` negates them.
    """

    identity_id: int = 0
    face_half_width: float = 1.0
    jaw_top: float = 0.08  # y where the jaw contour (points 0 and 16) starts
    chin_y: float = 1.62  # y of the chin (point 8) with the mouth closed
    jaw_squareness: float = 2.5  # superellipse exponent of the jaw (2 = round, 3.2 = square)
    chin_narrowing: float = 0.25
    forehead_height: float = 1.35  # top of the skull above jaw_top
    eye_spacing: float = 0.45  # x of the eye centres
    eye_width: float = 0.19  # half width corner to corner
    eye_height: float = 0.09  # upper-lid height above the corner line
    eye_tilt: float = 0.015  # outer corner raised by this
    iris_radius: float = 0.085
    brow_height: float = 0.3  # brow baseline above the eye line
    brow_thickness: float = 0.07
    brow_arch: float = 0.05
    brow_inner: float = 0.16  # x of the brow's inner end
    brow_outer: float = 0.74  # x of the brow's outer end
    nose_length: float = 0.62  # y of the nose tip (point 30)
    nose_width: float = 0.2  # half width of the nose base (points 31/35)
    mouth_y: float = 1.06
    mouth_width: float = 0.42  # half width corner to corner
    upper_lip: float = 0.075
    lower_lip: float = 0.1
    mouth_curve: float = 0.0  # resting mouth-corner lift (some people look a bit sad or happy)
    ear_size: float = 1.0
    skin: Color = (224.0, 180.0, 150.0)
    lip_color: Color = (190.0, 110.0, 105.0)
    iris_color: Color = (90.0, 60.0, 35.0)
    hair_color: Color = (60.0, 40.0, 28.0)
    brow_color: Color = (50.0, 34.0, 24.0)
    hair_style: str = "short"
    hair_volume: float = 0.15
    hairline: float = -0.78  # y of the hairline at the centre (fringe: its lower edge)
    hair_part: float = 0.0  # x of the hair parting (asymmetric)
    hair_seed: int = 0  # strand layout
    beard: float = 0.0  # stubble density 0..1
    asym_eye: float = 0.0  # image-left eye moves down by this, image-right eye up
    asym_brow: float = 0.0
    asym_mouth: float = 0.0

    def symmetric(self) -> Identity:
        """The same person with every left/right asymmetry removed."""
        return replace(self, asym_eye=0.0, asym_brow=0.0, asym_mouth=0.0, hair_part=0.0)

    def mirrored(self) -> Identity:
        """The person's mirror twin (rendering it gives the mirror image of this one)."""
        return replace(
            self,
            asym_eye=-self.asym_eye,
            asym_brow=-self.asym_brow,
            asym_mouth=-self.asym_mouth,
            hair_part=-self.hair_part,
        )


@dataclass(frozen=True)
class Expression:
    """Facial action parameters (canonical units; neutral = the defaults)."""

    label: int = NEUTRAL
    intensity: float = 0.0
    brow_raise: float = 0.0  # whole brow up
    brow_inner_raise: float = 0.0  # inner ends up (+, sadness/fear) or down (-, anger)
    brow_squeeze: float = 0.0  # inner ends pulled toward the midline
    eye_open: float = 1.0  # upper-lid opening factor
    lower_lid_raise: float = 0.0  # 0..0.7, squint from below
    mouth_open: float = 0.0  # gap between the lips
    mouth_width: float = 1.0  # factor on the identity's mouth width
    corner_lift: float = 0.0  # mouth corners up (+) or down (-)
    upper_lip_raise: float = 0.0
    lip_press: float = 0.0  # 0..1, thinner lips
    nose_wrinkle: float = 0.0  # 0..1.5
    cheek_raise: float = 0.0  # 0..1.5, nasolabial folds and blush
    teeth: float = 0.0  # 0..1, how much of the teeth shows in an open mouth
    brow_furrow: float = 0.0  # 0..1.5, vertical lines between the brows


@dataclass(frozen=True)
class Pose:
    """Head pose: roll/yaw in degrees (+roll turns clockwise on screen), scale, shift in face sizes."""

    roll: float = 0.0
    yaw: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def mirrored(self) -> Pose:
        return replace(self, roll=-self.roll, yaw=-self.yaw, shift_x=-self.shift_x)


@dataclass(frozen=True)
class FaceParams:
    """Everything that determines one rendering (the ``rng`` of :func:`render_face` adds only the
    background clutter, clothing colour, occluder details and pixel noise).

    ``face_size`` is the pixel length of 2 canonical units (about the jaw-to-jaw width) at
    ``pose.scale == 1``; the canonical point ``(0, anchor_y)`` lands on ``center`` (kdface pixels,
    default: the image centre) before the pose shift.
    """

    identity: Identity = field(default_factory=Identity)
    expression: Expression = field(default_factory=Expression)
    pose: Pose = field(default_factory=Pose)
    width: int = 128
    height: int = 128
    face_size: float = 85.0
    anchor_y: float = 0.55
    center: tuple[float, float] | None = None
    light_azimuth: float = 0.0  # degrees, + = light from the image right
    light_elevation: float = 30.0  # degrees above the horizon
    light_strength: float = 0.4
    ambient: float = 0.7
    gaze: tuple[float, float] = (0.0, 0.0)  # iris offset in units of the eye half-size, -1..1
    occluder: str = "none"
    clutter: float = 1.0  # background clutter amount; 0 = plain vertical gradient
    noise: float = 3.0  # Gaussian pixel noise sigma (grey levels)
    blur: float = 0.5  # Gaussian blur sigma (pixels)


def mirror_params(params: FaceParams) -> FaceParams:
    """Parameters whose rendering (with the same rng seed, clutter and noise off) is the mirror image."""
    cx, cy = params.center if params.center is not None else (params.width / 2.0, params.height / 2.0)
    return replace(
        params,
        identity=params.identity.mirrored(),
        pose=params.pose.mirrored(),
        center=(params.width - cx, cy),
        light_azimuth=-params.light_azimuth,
        gaze=(-params.gaze[0], params.gaze[1]),
    )


# ----------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------
_SKIN_PALETTE = np.array(
    [
        (255, 226, 204),
        (242, 200, 172),
        (226, 176, 140),
        (200, 140, 105),
        (165, 110, 78),
        (124, 82, 58),
        (88, 58, 42),
    ],
    np.float64,
)
_HAIR_PALETTE = np.array(
    [(28, 24, 22), (58, 40, 28), (100, 68, 44), (135, 62, 36), (205, 170, 112), (150, 148, 146)],
    np.float64,
)
_HAIR_WEIGHTS = np.array([0.3, 0.25, 0.17, 0.08, 0.12, 0.08])
_IRIS_PALETTE = np.array(
    [(90, 60, 35), (50, 35, 25), (80, 120, 165), (85, 120, 80), (125, 100, 60)], np.float64
)
_STYLE_WEIGHTS = np.array([0.28, 0.24, 0.1, 0.12, 0.13, 0.07, 0.06])


def _color(values) -> Color:
    r, g, b = (min(255.0, max(0.0, float(v))) for v in values)
    return (r, g, b)


def sample_identity(seed: int, identity_id: int) -> Identity:
    """The identity ``identity_id`` of the population drawn from ``seed`` (pure function)."""
    rng = np.random.default_rng([int(seed), _TAG_IDENTITY, int(identity_id)])
    u = rng.uniform
    skin_pos = u(0, len(_SKIN_PALETTE) - 1)
    k = int(skin_pos)
    skin = _SKIN_PALETTE[k] * (1 - (skin_pos - k)) + _SKIN_PALETTE[min(k + 1, len(_SKIN_PALETTE) - 1)] * (
        skin_pos - k
    )
    skin = skin + rng.normal(0, 6, 3)
    hair = _HAIR_PALETTE[rng.choice(len(_HAIR_PALETTE), p=_HAIR_WEIGHTS)] * u(0.85, 1.15) + rng.normal(
        0, 5, 3
    )
    lip = skin * np.array([0.86, 0.6, 0.6]) + np.array([25, 8, 14]) + rng.normal(0, 6, 3)
    brow = np.minimum(hair * 0.75, skin * 0.45) if hair.mean() > 120 else hair * 0.85
    eye_width = u(0.165, 0.215)
    eye_spacing = u(0.41, 0.5)
    style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=_STYLE_WEIGHTS)]
    face_hw = u(0.92, 1.08)
    return Identity(
        identity_id=int(identity_id),
        face_half_width=face_hw,
        jaw_top=u(0.02, 0.14),
        chin_y=u(1.5, 1.75),
        jaw_squareness=u(2.0, 3.3),
        chin_narrowing=u(0.1, 0.4),
        forehead_height=u(1.25, 1.45),
        eye_spacing=eye_spacing,
        eye_width=eye_width,
        eye_height=u(0.075, 0.105),
        eye_tilt=u(-0.02, 0.04),
        iris_radius=u(0.075, 0.092),
        brow_height=u(0.27, 0.35),
        brow_thickness=u(0.045, 0.1),
        brow_arch=u(0.025, 0.075),
        brow_inner=u(0.12, 0.2),
        brow_outer=eye_spacing + eye_width + u(0.04, 0.12),
        nose_length=u(0.55, 0.7),
        nose_width=u(0.16, 0.25),
        mouth_y=u(1.0, 1.12),
        mouth_width=u(0.35, 0.47),
        upper_lip=u(0.055, 0.095),
        lower_lip=u(0.075, 0.13),
        mouth_curve=rng.normal(0, 0.012),
        ear_size=u(0.85, 1.15),
        skin=_color(skin),
        lip_color=_color(lip),
        iris_color=_color(_IRIS_PALETTE[rng.integers(len(_IRIS_PALETTE))] + rng.normal(0, 8, 3)),
        hair_color=_color(hair),
        brow_color=_color(brow),
        hair_style=style,
        hair_volume=u(0.08, 0.22) * (1.8 if style == "curly" else 1.0),
        hairline=u(-0.88, -0.68) if style != "fringe" else u(-0.62, -0.52),
        hair_part=u(-0.35, 0.35),
        hair_seed=int(rng.integers(0, 2**31 - 1)),
        beard=float(u(0.3, 1.0)) if u() < 0.18 else 0.0,
        asym_eye=rng.normal(0, 0.008),
        asym_brow=rng.normal(0, 0.012),
        asym_mouth=rng.normal(0, 0.01),
    )


# Per-expression changes from neutral (eye_open and mouth_width are deltas of their factors).
_PROTOTYPES: dict[int, dict[str, float]] = {
    1: dict(
        brow_raise=0.13, brow_inner_raise=0.02, eye_open=0.42, mouth_open=0.3, mouth_width=-0.24, teeth=0.3
    ),
    2: dict(
        brow_raise=0.07,
        brow_inner_raise=0.08,
        brow_squeeze=0.04,
        eye_open=0.36,
        mouth_open=0.1,
        mouth_width=0.14,
        corner_lift=-0.04,
        teeth=0.8,
        brow_furrow=0.4,
    ),
    3: dict(
        brow_raise=-0.05,
        brow_inner_raise=-0.02,
        brow_squeeze=0.03,
        eye_open=-0.2,
        lower_lid_raise=0.35,
        upper_lip_raise=0.07,
        nose_wrinkle=1.0,
        corner_lift=-0.035,
        mouth_open=0.03,
        mouth_width=-0.05,
        teeth=0.6,
        brow_furrow=0.5,
    ),
    4: dict(
        corner_lift=0.1,
        mouth_width=0.17,
        mouth_open=0.07,
        teeth=1.0,
        lower_lid_raise=0.4,
        eye_open=-0.1,
        cheek_raise=1.0,
        brow_raise=0.01,
    ),
    5: dict(
        brow_inner_raise=0.085,
        brow_raise=-0.025,
        eye_open=-0.24,
        corner_lift=-0.085,
        mouth_width=-0.06,
        lip_press=0.3,
        lower_lid_raise=0.05,
    ),
    6: dict(
        brow_raise=-0.08,
        brow_inner_raise=-0.07,
        brow_squeeze=0.05,
        eye_open=0.05,
        lower_lid_raise=0.3,
        lip_press=1.0,
        mouth_width=-0.1,
        corner_lift=-0.02,
        brow_furrow=1.0,
    ),
    7: {},
}
_EXPR_NOISE = dict(
    brow_raise=0.022,
    brow_inner_raise=0.018,
    brow_squeeze=0.01,
    eye_open=0.08,
    lower_lid_raise=0.06,
    mouth_open=0.025,
    mouth_width=0.04,
    corner_lift=0.02,
    upper_lip_raise=0.01,
    lip_press=0.12,
    nose_wrinkle=0.12,
    cheek_raise=0.15,
    teeth=0.15,
    brow_furrow=0.15,
)
_EXPR_BOUNDS = dict(
    eye_open=(0.45, 1.7),
    lower_lid_raise=(0.0, 0.65),
    mouth_open=(0.0, 0.45),
    mouth_width=(0.7, 1.35),
    upper_lip_raise=(0.0, 0.12),
    lip_press=(0.0, 1.0),
    nose_wrinkle=(0.0, 1.5),
    cheek_raise=(0.0, 1.5),
    teeth=(0.0, 1.0),
    brow_furrow=(0.0, 1.5),
    brow_squeeze=(-0.02, 0.08),
)


def sample_expression(
    label: int, rng: np.random.Generator, intensity: float | None = None, jitter: float = 1.0
) -> Expression:
    """Expression ``label`` (1..7, RAF-DB order) at a random intensity (0.5..1.2) plus parameter noise.

    ``jitter=0`` and ``intensity=1`` give the class prototype exactly.
    """
    if label not in _PROTOTYPES:
        raise ValueError(f"expression label must be 1..7 (RAF-DB order), got {label!r}")
    if intensity is None:
        intensity = float(rng.uniform(0.5, 1.2))
    if label == NEUTRAL:
        intensity = 0.0
    proto = _PROTOTYPES[label]
    values: dict[str, float] = {}
    for name, sigma in _EXPR_NOISE.items():  # fixed order: the same draws for every label
        base = 1.0 if name in ("eye_open", "mouth_width") else 0.0
        noise = float(rng.normal(0.0, sigma)) * jitter
        v = base + intensity * proto.get(name, 0.0) + noise
        lo, hi = _EXPR_BOUNDS.get(name, (-np.inf, np.inf))
        values[name] = float(np.clip(v, lo, hi))
    values["mouth_open"] = max(0.0, values["mouth_open"] - 0.02 * jitter)  # small gaps close
    return Expression(label=int(label), intensity=float(intensity), **values)


def sample_pose(rng: np.random.Generator, strength: float = 1.0) -> Pose:
    """Pose jitter; ``strength`` 0 = frontal and centred, 1 = typical, 2 = challenging."""
    if strength <= 0:
        return Pose()
    roll = float(np.clip(rng.normal(0, 6 * strength), -15 * strength, 15 * strength))
    yaw = float(np.clip(rng.normal(0, 10 * strength), -38, 38))
    scale = float(np.exp(np.clip(rng.normal(0, 0.05 * strength), -0.2, 0.2)))
    sx, sy = np.clip(rng.normal(0, 0.03 * strength, 2), -0.1, 0.1)
    return Pose(roll=roll, yaw=yaw, scale=scale, shift_x=float(sx), shift_y=float(sy))


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------
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


_LIN12 = _lin(0.0, 1.0, 12)
_LIN41 = _lin(0.0, 1.0, 41)
_SHOULDERS = np.array(
    [[-3.0, 4.5], [-2.6, 2.75], [-1.6, 2.35], [-0.7, 2.1], [0.7, 2.1], [1.6, 2.35], [2.6, 2.75], [3.0, 4.5]]
)


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
            return my - lift * np.abs(t) ** 1.8 + idn.asym_mouth * t

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


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
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


def _scaled(color: Color, k: float, add: float = 0.0) -> Color:
    return _color([c * k + add for c in color])


def _mix(c1: Color, c2: Color, t: float) -> Color:
    return _color([a * (1 - t) + b * t for a, b in zip(c1, c2, strict=True)])


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


def _hair_cap(idn: Identity, shapes: _Shapes) -> np.ndarray | None:
    """Polygon of the hair in front of the head (canonical), or None (bald)."""
    style = idn.hair_style
    if style == "bald":
        return None
    a, jt, fh = shapes.a, idn.jaw_top, idn.forehead_height
    vol = 0.03 if style == "buzz" else idn.hair_volume
    v = _lin(0.0, 1.0, 73)
    mod = 1.0 + (0.06 * np.cos(2 * np.pi * 9 * (v - 0.5)) if style == "curly" else 0.0)
    ox = (a + vol * 0.7) * np.cos(np.pi * v) * mod
    oy = jt + 0.04 - (fh + vol) * np.sin(np.pi * v) * mod
    outer = _xyz(ox, oy, -0.05)
    w = _lin(-1.0, 1.0, 61)
    if style == "fringe":
        brow_top = min(shapes.brow_top(1, _lin(0.0, 1.0, 9))[1].min(), -idn.brow_height)
        low = min(idn.hairline, brow_top - 0.06)
        hy = low + (jt + 0.02 - low) * np.abs(w) ** 5 - 0.03 * np.abs(np.sin(7 * np.pi * w))
        hy = hy + 0.25 * idn.hair_part * w * (1 - np.abs(w))
    else:
        hy = idn.hairline + (jt + 0.02 - idn.hairline) * np.abs(w) ** 3.5
        hy = hy - 0.05 * np.exp(-((((w * a * 0.97) - idn.hair_part) / 0.06) ** 2))  # parting notch
    inner = _xyz(w * a * 0.97, hy, 0.0)
    poly = np.concatenate([outer, inner])
    if style == "bun":
        poly = np.concatenate([poly, _ellipse(0, jt - fh - vol - 0.12, 0.3, 0.24, n=30)])
    return poly


def _draw_person(cv: _Canvas, params: FaceParams, shapes: _Shapes, clothing: Color):
    """Draw hair, shoulders, neck, ears, face and features (flat colours; shading comes later).

    Semi-transparent details (folds, highlights, blush) are drawn opaque with their colour pre-mixed
    with the flat colour they lie on, which is what alpha blending would give before shading.
    """
    idn, ex = params.identity, params.expression
    a = shapes.a
    jt = idn.jaw_top
    skin = idn.skin
    hair_rng = np.random.default_rng(idn.hair_seed)

    def on_skin(color: Color, alpha: float) -> Color:
        return _mix(skin, color, alpha)

    # -- long hair behind the head
    if idn.hair_style in ("long", "curly"):
        length = 2.45 if idn.hair_style == "long" else 1.3
        wid = a + idn.hair_volume + (0.18 if idn.hair_style == "long" else 0.25)
        v = _LIN41
        top = _xyz(
            wid * np.cos(np.pi * v), jt - (idn.forehead_height + idn.hair_volume + 0.05) * np.sin(np.pi * v)
        )
        k = _lin(-1.0, 1.0, 15)
        bottom = _xyz(wid * 0.95 * k, jt + length - 0.07 * np.abs(np.sin(5.5 * np.pi * k)))
        back = np.concatenate([top, bottom])
        back[:, 2] = -0.6
        cv.fill(back, _scaled(idn.hair_color, 0.8), mask="person")

    # -- shoulders and neck
    sh = _SHOULDERS
    cv.fill(_xyz(sh[:, 0], sh[:, 1], -0.6), clothing, mask="person")
    cv.line(_xyz([-0.55, 0.0, 0.55], [2.08, 2.4, 2.08], -0.5), _scaled(clothing, 0.6), 0.04)
    neck_color = _scaled(skin, 0.8)
    neck = _xyz(
        [-0.5 * a, -0.56 * a, -0.6 * a, 0.6 * a, 0.56 * a, 0.5 * a], [0.9, 1.7, 2.25, 2.25, 1.7, 0.9], -0.45
    )
    cv.fill(neck, neck_color, mask="person")
    u = shapes.jaw_u[(shapes.jaw_u > 0.22) & (shapes.jaw_u < 0.78)]
    jx, jy = shapes.jaw_xy(u)
    shadow = np.concatenate([_xyz(jx, jy, -0.3), _xyz(jx[::-1] * 0.9, jy[::-1] + 0.22, -0.4)])
    cv.fill(shadow, _mix(neck_color, _scaled(skin, 0.45), 0.4))

    # -- ears (behind the face contour)
    ear_color = _scaled(skin, 0.9)
    for side in (-1, 1):
        ex_c = side * (a + 0.02)
        cv.fill(
            _ellipse(ex_c, jt + 0.17, 0.11 * idn.ear_size, 0.24 * idn.ear_size, n=24, z=-0.35),
            ear_color,
            mask="person",
        )
        inner = _ellipse(
            ex_c + side * 0.02, jt + 0.17, 0.05 * idn.ear_size, 0.15 * idn.ear_size, n=20, z=-0.35
        )
        cv.line(inner, _mix(ear_color, _scaled(skin, 0.55), 0.4), 0.02, closed=True)

    # -- face
    cv.fill(shapes.curves["skin"], skin, mask="person")
    cv.line(shapes.curves["jaw"], on_skin(_scaled(skin, 0.62), 0.45), 0.02)

    # blush / cheek raise
    blush = on_skin(_mix(skin, (220, 90, 90), 0.5), 0.1 + 0.12 * min(ex.cheek_raise, 1.5))
    for side in (-1, 1):
        cv.fill(_ellipse(side * 0.55, 0.5 - 0.05 * ex.cheek_raise, 0.22, 0.16, n=24), blush)

    if idn.beard > 0:
        u = shapes.jaw_u[(shapes.jaw_u > 0.1) & (shapes.jaw_u < 0.9)]
        jx, jy = shapes.jaw_xy(u)
        mw, nb = shapes.mouth_w, shapes.nose_base
        upper = _xyz(
            [jx[-1] * 0.95, mw + 0.15, mw * 0.6, 0.0, -mw * 0.6, -mw - 0.15, jx[0] * 0.95],
            [jy[-1], idn.mouth_y - 0.05, nb + 0.08, nb + 0.07, nb + 0.08, idn.mouth_y - 0.05, jy[0]],
        )
        cv.fill(
            np.concatenate([_xyz(jx, jy), upper]), on_skin(_scaled(idn.hair_color, 0.7), 0.45 * idn.beard)
        )

    fold_dark = _scaled(skin, 0.55)
    nb, nw, mw, my = shapes.nose_base, shapes.nose_w, shapes.mouth_w, idn.mouth_y
    # nasolabial folds (everyone a little, happiness a lot)
    t = _LIN12
    fold = on_skin(fold_dark, min(0.75, 0.12 + 0.3 * ex.cheek_raise))
    for side in (-1, 1):
        fx = side * (nw + 0.06 + (mw - nw) * t + 0.06 * np.sin(np.pi * t) * (1 + 0.5 * ex.cheek_raise))
        fy = nb - 0.1 + (my - nb + 0.2) * t
        cv.line(_xyz(fx, fy), fold, 0.022)
    # forehead lines (brow raise), glabella lines (furrow)
    if ex.brow_raise > 0.03:
        color = on_skin(fold_dark, min(0.5, 3.0 * (ex.brow_raise - 0.03)))
        t = _lin(-0.45, 0.45, 13)
        for k, yk in enumerate((-0.62, -0.72, -0.82)):
            cv.line(_xyz(t, yk - ex.brow_raise - 0.04 * np.cos(np.pi * t) + 0.01 * k), color, 0.015)
    if ex.brow_furrow > 0.2:
        color = on_skin(fold_dark, 0.35 * min(ex.brow_furrow, 1.2))
        for side in (-1, 1):
            cv.line(_xyz([side * 0.05, side * 0.07], [-0.32 - ex.brow_raise, -0.14]), color, 0.018)

    # -- brows
    for name in ("brow_l", "brow_r"):
        cv.fill(shapes.curves[name], idn.brow_color)

    # -- eyes
    cv.new_mask("eye")
    cv.snapshot("iris")
    sclera = (238, 236, 232)
    lash = _scaled(idn.brow_color, 0.45)
    gx, gy = params.gaze
    lx = math.sin(math.radians(params.light_azimuth))
    crease_color = on_skin(_scaled(skin, 0.55), 0.3)
    for name, side in (("eye_l", -1), ("eye_r", 1)):
        (ox, oy), (ix, iy) = shapes.eye_frame(side)
        crease = shapes.curves[name + "_upper"][3:-3].copy()
        crease[:, 1] -= 0.045 + 0.02 * (ex.eye_open - 1)
        cv.line(crease, crease_color, 0.018)
        if ex.lower_lid_raise > 0.15:
            bag = shapes.curves[name + "_lower"][4:-4].copy()
            bag[:, 1] += 0.05
            cv.line(bag, on_skin(_scaled(skin, 0.6), min(0.5, ex.lower_lid_raise - 0.15)), 0.015)
        poly = shapes.curves[name]
        cv.fill(poly, sclera)
        cv.fill(poly, 255, target="eye")
        cx, cy = (ox + ix) / 2 + gx * idn.eye_width * 0.35, (oy + iy) / 2 - 0.01 + gy * idn.eye_height * 0.4
        r = idn.iris_radius
        cv.fill(_ellipse(cx, cy, r, r, n=28), idn.iris_color, target="iris")
        cv.fill(_ellipse(cx, cy, r * 0.8, r * 0.8, n=24), _scaled(idn.iris_color, 0.75), target="iris")
        cv.fill(_ellipse(cx, cy, r * 0.42, r * 0.42, n=20), (15, 12, 12), target="iris")
        cv.fill(
            _ellipse(cx + lx * 0.4 * r, cy - 0.4 * r, r * 0.2, r * 0.2, n=12), (250, 250, 250), target="iris"
        )
    cv.composite("iris", "eye")
    lower_lash = on_skin(lash, 0.5)
    for name in ("eye_l", "eye_r"):
        cv.line(shapes.curves[name + "_upper"], lash, 0.028)
        cv.line(shapes.curves[name + "_lower"], lower_lash, 0.012)

    # -- nose
    top, tip = shapes.nose_top, shapes.nose_tip
    dark = _scaled(skin, 0.6)
    for side in (-1, 1):
        t = _LIN12
        sx = side * (0.075 + (nw * 0.62 - 0.075) * t**1.6)
        sy = top + 0.12 + (nb - 0.24 - top) * t
        cv.line(_xyz(sx, sy, 0.4 * t), on_skin(dark, 0.22 + 0.2 * max(0.0, -side * lx)), 0.02)
        ala = _xyz(side * nw * (1.0 + 0.12 * np.sin(np.pi * t) - 0.3 * t), nb - 0.2 * t, 0.1 + 0.1 * t)
        cv.line(ala, on_skin(dark, 0.55), 0.022)
        cv.fill(_ellipse(side * nw * 0.48, nb + 0.01, nw * 0.26, 0.032, n=18, z=0.2), _scaled(skin, 0.3))
        if ex.nose_wrinkle > 0.2:
            color = on_skin(dark, 0.35 * min(ex.nose_wrinkle, 1.2))
            for k in range(3):
                yk = 0.02 + 0.07 * k
                cv.line(
                    _xyz([side * 0.04, side * 0.11, side * 0.17], [yk, yk - 0.025, yk], 0.3), color, 0.014
                )
    cv.line(shapes.curves["nose_base"], on_skin(_scaled(skin, 0.5), 0.55), 0.02)
    light = _scaled(skin, 1.12, 12)
    cv.line(shapes.curves["bridge"], on_skin(light, 0.5), 0.035)
    cv.fill(_ellipse(0, tip - 0.015, 0.07, 0.05, z=0.42), on_skin(light, 0.4))

    # -- mouth
    lips = np.concatenate([shapes.curves["lip_outer_up"], shapes.curves["lip_outer_lo"][::-1][1:-1]])
    cv.fill(lips, idn.lip_color)
    upper_lip = np.concatenate([shapes.curves["lip_outer_up"], shapes.curves["lip_inner_up"][::-1]])
    cv.fill(upper_lip, _scaled(idn.lip_color, 0.9))
    _, ti, inner_up, inner_lo, _, _ = shapes.mouth_fns()
    if ex.mouth_open > 0.004:
        inner = np.concatenate([shapes.curves["lip_inner_up"], shapes.curves["lip_inner_lo"][::-1][1:-1]])
        cv.fill(inner, (70, 22, 28))
        if ex.teeth > 0.1:
            t = _lin(-ti * 0.9, ti * 0.9, 25)
            yu = inner_up(t)
            band = np.minimum((inner_lo(t) - yu) * 0.9, 0.045 + 0.03 * ex.teeth)
            teeth = np.concatenate([_xyz(mw * t, yu, 0.1), _xyz(mw * t[::-1], (yu + band)[::-1], 0.1)])
            cv.fill(teeth, (236, 232, 220))
    cv.line(shapes.curves["lip_inner_up"], _scaled(idn.lip_color, 0.45), 0.018)
    t = _lin(-0.45, 0.45, 9)
    lo_thick = idn.lower_lip * (1 - 0.45 * ex.lip_press)
    gloss = _xyz(mw * t, inner_lo(t) + 0.5 * lo_thick * (1 - t**2), 0.12)
    cv.line(gloss, _mix(idn.lip_color, _scaled(idn.lip_color, 1.25, 15), 0.3), 0.02)

    # -- hair in front
    cap = _hair_cap(idn, shapes)
    if cap is not None:
        cv.fill(cap, 255, target="person")
        if idn.hair_style == "buzz":
            cv.fill(cap, _mix(skin, idn.hair_color, 0.6))
        else:
            cv.new_mask("cap")
            cv.fill(cap, 255, target="cap")
            cv.snapshot("hair")
            cv.fill(cap, idn.hair_color, target="hair")
            fh, vol = idn.forehead_height, idn.hair_volume
            for _ in range(10):
                rho = hair_rng.uniform(0.55, 1.0)
                d0, d1 = sorted(hair_rng.uniform(0.0, 0.5, 2))
                col = _scaled(idn.hair_color, hair_rng.choice([0.7, 1.3]), hair_rng.uniform(0, 10))
                for sgn in (-1, 1):
                    vv = 0.5 + sgn * (d0 + (d1 + 0.05 - d0) * _lin(0.0, 1.0, 10))
                    strand = _xyz(
                        (a + vol) * rho * np.cos(np.pi * vv),
                        jt + 0.04 - (fh + vol) * rho * np.sin(np.pi * vv),
                        -0.05,
                    )
                    cv.line(strand, col, 0.012, target="hair")
            cv.composite("hair", "cap")


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


def _occluder(cv: _Canvas, params: FaceParams, shapes: _Shapes, rng: np.random.Generator) -> None:
    """Record ``params.occluder`` on the canvas, with its binary mask in layer ``occ`` (255 = occluded)."""
    kind = params.occluder
    cv.new_mask("occ")
    if kind == "none":
        return
    idn = params.identity
    a, jt = shapes.a, idn.jaw_top

    def both(pts, color, units=None, closed=False):
        if units is None:
            cv.fill(pts, color)
            cv.fill(pts, 255, target="occ", aa=False)
        else:
            cv.line(pts, color, units, closed=closed)
            cv.line(pts, 255, units, closed=closed, target="occ", aa=False)

    if kind == "sunglasses":
        rx = idn.eye_width + rng.uniform(0.06, 0.1)
        ry = rng.uniform(0.12, 0.17)
        ex = rng.uniform(2.0, 4.0)
        cy = rng.uniform(-0.03, 0.02)
        color = _color(rng.uniform(5, 45, 3))
        frame = _color(rng.uniform(0, 70, 3)) if rng.uniform() < 0.7 else _color(rng.uniform(100, 220, 3))
        for side in (-1, 1):
            lens = _ellipse(side * idn.eye_spacing, cy, rx, ry, n=32, z=0.15, exponent=ex)
            both(lens, color)
            glint = _ellipse(
                side * idn.eye_spacing - 0.3 * rx, cy - 0.35 * ry, rx * 0.35, ry * 0.2, n=16, z=0.15
            )
            cv.fill(glint, _mix(color, (230, 230, 235), 0.25))
            both(lens, frame, 0.03, closed=True)
            arm = _xyz(
                [side * (idn.eye_spacing + rx * 0.95), side * (a + 0.03)], [cy - 0.05, 0.0], [0.1, -0.3]
            )
            both(arm, frame, 0.035)
        bridge = _xyz(
            [-(idn.eye_spacing - rx), 0, idn.eye_spacing - rx], [cy - 0.04, cy - 0.08, cy - 0.04], 0.35
        )
        both(bridge, frame, 0.035)
    elif kind == "mask":
        palette = [(165, 200, 228), (236, 236, 236), (40, 42, 48), (230, 190, 200), (150, 170, 150)]
        color = _color(np.asarray(palette[int(rng.integers(len(palette)))]) + rng.normal(0, 6, 3))
        top_y = rng.uniform(0.25, 0.4)
        u = shapes.jaw_u[(shapes.jaw_u >= 0.08) & (shapes.jaw_u <= 0.92)]
        jx, jy = shapes.jaw_xy(u)
        bottom = _xyz(jx * 1.02, jy + 0.04 + 0.04 * np.sin(np.pi * u), 0.05)
        w = np.linspace(1, -1, 21)
        top = _xyz(jx[-1] * 1.02 * w, top_y + (jy[-1] - top_y) * np.abs(w) ** 1.5 - 0.06 * (1 - w**2), 0.3)
        poly = np.concatenate([bottom, top])
        both(poly, color)
        for k in (0.3, 0.5, 0.7):
            yk = top_y + k * (idn.chin_y - top_y) * 0.8
            pleat = _xyz(np.linspace(-0.65 * a, 0.65 * a, 9), np.full(9, yk), 0.35)
            cv.line(pleat, _mix(color, _scaled(color, 0.7), 0.35), 0.015)
        for side in (-1, 1):
            loop = _xyz(
                [side * a * 0.96, side * (a + 0.06), side * a * 0.9], [jy[0] - 0.05, jt + 0.05, 1.05], -0.2
            )
            both(loop, _scaled(color, 0.9), 0.02)
    elif kind == "hand":
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
            both(finger, skin)
            cv.line(finger, edge, 0.012, closed=True)
        cx, cy = rot(0.36 * size, -0.05 * size)
        thumb = _ellipse(cx, cy, 0.08 * size, 0.24 * size, n=20, z=0.7, angle=ang - 0.7, exponent=2.4)
        both(thumb, skin)
        cv.line(thumb, edge, 0.012, closed=True)
        palm = _ellipse(tx, ty, 0.32 * size, 0.36 * size, n=28, z=0.7, angle=ang, exponent=2.4)
        both(palm, skin)
        cv.line(palm[10:27], edge, 0.012)
    elif kind == "hair":
        side = -1 if rng.uniform() < 0.5 else 1
        color = _scaled(idn.hair_color, rng.uniform(0.8, 1.1))
        width = rng.uniform(0.2, 0.38)
        end_y = rng.uniform(0.3, 1.2)
        t = np.linspace(0, 1, 16)
        cx = side * (0.05 + rng.uniform(0.3, 0.6) * np.sin(np.pi * t * 0.8))
        cy = -1.1 + (end_y + 1.1) * t
        wid = width * (1 - 0.7 * t)
        band = np.concatenate([_xyz(cx - wid, cy, 0.6), _xyz((cx + wid)[::-1], cy[::-1], 0.6)])
        both(band, color)
        for _ in range(int(rng.integers(3, 7))):
            off = rng.uniform(-1, 1) * width
            strand = _xyz(cx + off * (1 - 0.7 * t) + rng.normal(0, 0.03), cy, 0.6)
            cv.line(strand, _scaled(color, rng.choice([0.7, 1.3])), 0.012)
    elif kind == "object":
        cx, cy = rng.uniform(-0.7, 0.7), rng.uniform(-0.3, 1.4)
        w, h = rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.8)
        ang = rng.uniform(0, np.pi)
        shape = _ellipse(cx, cy, w / 2, h / 2, n=32, z=0.8, angle=ang, exponent=float(rng.choice([2.0, 8.0])))
        base = _color(rng.uniform(0, 255, 3))
        stripe = _color(rng.uniform(0, 255, 3))
        period = rng.uniform(2.5, 8.0)
        ta = rng.uniform(0, np.pi)
        checker = rng.uniform() < 0.5

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
    else:
        raise ValueError(f"unknown occluder {kind!r}; expected one of {OCCLUDER_TYPES}")


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


def landmark_occlusion(landmarks: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-landmark flags: True where the landmark's pixel is occluded in ``mask`` (255 = occluded)."""
    h, w = mask.shape[:2]
    pts = np.asarray(landmarks, np.float64)
    cols = np.clip(np.floor(pts[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.floor(pts[:, 1]).astype(int), 0, h - 1)
    return mask[rows, cols] > 127


# ----------------------------------------------------------------------------------------------
# Dataset generation
# ----------------------------------------------------------------------------------------------
@dataclass
class SynthFacesConfig:
    """What :func:`generate` writes. The defaults are the ``demo`` preset."""

    seed: int = 0
    num_identities: int = 120
    test_identity_fraction: float = 0.2  # identities reserved for the test splits
    # 300W-style landmark tree
    image_size: int = 128  # square images
    face_fraction: float = 0.667  # face width / image width (image = 1.5x the face)
    w300_train: int = 2000  # split over lfpw/trainset, helen/trainset, afw in the real proportions
    w300_common: int = 300  # lfpw/testset + helen/testset
    w300_challenging: int = 100  # ibug: stronger pose jitter, more occlusion, harsher imaging
    # RAF-DB basic-expression tree (aligned faces)
    rafdb_size: int = 100
    rafdb_train: int = 1500
    rafdb_test: int = 400
    # CASIA-WebFace-style identity folders
    identity_size: int = 112
    num_identity_folders: int = 100
    images_per_identity: int = 6  # images per identity in the identities/ tree
    # appearance
    occlusion_fraction: float = 0.3
    challenging_occlusion_fraction: float = 0.5
    rafdb_test_occlusion_fraction: float = 0.5  # RAF-DB test images only (its occlusion list)
    pose_jitter: float = 1.0
    challenging_pose_jitter: float = 2.0
    expression_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # RAF-DB order 1..7
    jpeg_quality: int = 95

    @classmethod
    def demo(cls, **overrides) -> SynthFacesConfig:
        """About 2000/300/100 300W images, 1500/400 RAF-DB, 100 x 6 identity images (< 1 min)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> SynthFacesConfig:
        """A few dozen images per split, for unit tests (a couple of seconds)."""
        values = dict(
            num_identities=12,
            test_identity_fraction=0.25,
            image_size=96,
            w300_train=24,
            w300_common=10,
            w300_challenging=8,
            rafdb_train=24,
            rafdb_test=12,
            num_identity_folders=6,
            images_per_identity=3,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def full(cls, **overrides) -> SynthFacesConfig:
        """Roughly the real datasets' sizes (300W 3148/554/135, RAF-DB 12271/3068, 1000 x 20 identities)."""
        values = dict(
            num_identities=1000,
            w300_train=3148,
            w300_common=554,
            w300_challenging=135,
            rafdb_train=12271,
            rafdb_test=3068,
            num_identity_folders=1000,
            images_per_identity=20,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides) -> SynthFacesConfig:
        presets = {"demo": cls.demo, "tiny": cls.tiny, "full": cls.full}
        if name not in presets:
            raise ValueError(f"unknown SynthFaces preset {name!r}; expected one of {sorted(presets)}")
        return presets[name](**overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["expression_weights"] = list(self.expression_weights)
        return d

    def validate(self) -> None:
        if self.num_identities < 2:
            raise ValueError("num_identities must be >= 2 (train and test identities are disjoint)")
        train_ids, test_ids = identity_split(self)
        if self.rafdb_train < 2 * len(train_ids) or self.rafdb_test < 2 * len(test_ids):
            raise ValueError(
                f"rafdb_train/rafdb_test ({self.rafdb_train}/{self.rafdb_test}) must be at least twice the "
                f"number of train/test identities ({len(train_ids)}/{len(test_ids)}): every identity gets "
                "a neutral/expressive pair"
            )
        if self.num_identity_folders > self.num_identities:
            raise ValueError("num_identity_folders must not exceed num_identities")
        if (
            len(self.expression_weights) != 7
            or min(self.expression_weights) < 0
            or sum(self.expression_weights) <= 0
        ):
            raise ValueError("expression_weights needs 7 non-negative weights (RAF-DB order 1..7)")
        fractions = (
            self.occlusion_fraction,
            self.challenging_occlusion_fraction,
            self.rafdb_test_occlusion_fraction,
        )
        if not all(0 <= f <= 1 for f in fractions):
            raise ValueError("occlusion fractions must be in [0, 1]")


def identity_split(config: SynthFacesConfig) -> tuple[list[int], list[int]]:
    """(train identity ids, test identity ids), disjoint, deterministic from the seed."""
    rng = np.random.default_rng([int(config.seed), _TAG_SPLIT])
    perm = rng.permutation(config.num_identities)
    n_test = min(
        config.num_identities - 1, max(1, int(round(config.test_identity_fraction * config.num_identities)))
    )
    return sorted(int(i) for i in perm[n_test:]), sorted(int(i) for i in perm[:n_test])


@dataclass(frozen=True)
class _Job:
    index: int  # global, defines the order of metadata rows
    tree: str
    split: str
    subset: str
    image_rel: str
    mask_rel: str
    pts_rel: str
    identity: int
    expression: int
    pair_id: str
    pair_role: str
    scene_key: tuple[int, ...]
    expr_key: tuple[int, ...]
    bound_exprs: tuple[tuple[int, tuple[int, ...]], ...]  # every expression this scene is rendered with
    width: int
    height: int
    face_size: float
    anchor_y: float
    center: tuple[float, float]
    pose_strength: float
    occlusion_fraction: float
    harsh: float  # 0 = clean imaging, 1 = challenging
    jpeg_quality: int


def _split_counts(total: int, weights: Sequence[float]) -> list[int]:
    w = np.asarray(weights, np.float64)
    raw = total * w / w.sum()
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[k] += 1
    return [int(c) for c in counts]


def _labels(config: SynthFacesConfig, tree: str, split: str, n: int) -> list[int]:
    rng = np.random.default_rng([int(config.seed), _TAG_LABELS, _TREE_CODES[tree], _SPLIT_CODES[split]])
    w = np.asarray(config.expression_weights, np.float64)
    return [int(v) + 1 for v in rng.choice(7, size=n, p=w / w.sum())]


def _plan(config: SynthFacesConfig) -> tuple[list[_Job], list[str]]:
    train_ids, test_ids = identity_split(config)
    jobs: list[_Job] = []
    seed = int(config.seed)

    def add(**kw):
        idx = len(jobs)
        kw.setdefault("expr_key", (_TAG_EXPR, _TREE_CODES[kw["tree"]], idx))
        kw.setdefault("scene_key", (_TAG_SCENE, _TREE_CODES[kw["tree"]], idx))
        kw.setdefault("bound_exprs", ((kw["expression"], kw["expr_key"]),))
        kw.setdefault("pair_id", "")
        kw.setdefault("pair_role", "")
        kw.setdefault("mask_rel", "")
        kw.setdefault("pts_rel", "")
        jobs.append(_Job(index=idx, jpeg_quality=config.jpeg_quality, **kw))

    # -- 300W tree
    size = config.image_size
    w300 = {
        "train": (config.w300_train, train_ids, config.pose_jitter, config.occlusion_fraction, 0.0),
        "common": (config.w300_common, test_ids, config.pose_jitter, config.occlusion_fraction, 0.0),
        "challenging": (
            config.w300_challenging,
            test_ids,
            config.challenging_pose_jitter,
            config.challenging_occlusion_fraction,
            1.0,
        ),
    }
    for split, (total, ids, strength, occ, harsh) in w300.items():
        folders = W300_FOLDERS[split]
        counts = _split_counts(total, [w for _, w in folders])
        labels = _labels(config, "300w", split, total)
        rng = np.random.default_rng([seed, _TAG_SPLIT, _TREE_CODES["300w"], _SPLIT_CODES[split]])
        order = [ids[k] for k in rng.permutation(len(ids))]
        k = 0
        for (folder, _), count in zip(folders, counts, strict=True):
            for j in range(count):
                name = f"image_{j + 1:05d}"
                add(
                    tree="300w",
                    split=split,
                    subset=folder.split("/")[0],
                    image_rel=f"300w/{folder}/{name}.png",
                    pts_rel=f"300w/{folder}/{name}.pts",
                    mask_rel=f"masks/300w/{folder}/{name}.png",
                    identity=order[k % len(order)],
                    expression=labels[k],
                    width=size,
                    height=size,
                    face_size=size * config.face_fraction,
                    anchor_y=0.55,
                    center=(size / 2.0, size / 2.0),
                    pose_strength=strength,
                    occlusion_fraction=occ,
                    harsh=harsh,
                )
                k += 1

    # -- RAF-DB tree: for each identity first a neutral/expressive pair, then the rest round-robin
    rs = config.rafdb_size
    label_lines: list[str] = []
    for split, total, ids in (
        ("train", config.rafdb_train, train_ids),
        ("test", config.rafdb_test, test_ids),
    ):
        digits = max(5 if split == "train" else 4, len(str(total)))
        labels = _labels(config, "rafdb", split, total)
        rng = np.random.default_rng([seed, _TAG_SPLIT, _TREE_CODES["rafdb"], _SPLIT_CODES[split]])
        non_neutral = [lab for lab in range(1, 7) if config.expression_weights[lab - 1] > 0] or [1]
        slots: list[tuple[int, int, str]] = []  # (identity, label, pair role)
        for ident in ids:
            slots.append((ident, NEUTRAL, "neutral"))
            slots.append((ident, int(rng.choice(non_neutral)), "expressive"))
        for j in range(total - len(slots)):
            slots.append((ids[j % len(ids)], labels[j], ""))
        order = rng.permutation(len(slots))  # shuffle so file names do not reveal pairs
        base_index = len(jobs)
        pair_positions: dict[int, list[int]] = {}
        for pos, s in enumerate(order):
            if slots[s][2]:
                pair_positions.setdefault(slots[s][0], []).append(pos)
        for pos, s in enumerate(order):
            ident, label, role = slots[s]
            name = f"{split}_{pos + 1:0{digits}d}"
            kw = dict(
                tree="rafdb",
                split=split,
                subset="basic",
                image_rel=f"rafdb/Image/aligned/{name}_aligned.jpg",
                mask_rel=f"rafdb/masks/{name}_aligned.png",
                identity=ident,
                expression=label,
                width=rs,
                height=rs,
                face_size=rs * 0.84,
                anchor_y=0.5,
                center=(rs / 2.0, rs * 0.52),
                pose_strength=0.45 * config.pose_jitter,
                occlusion_fraction=config.rafdb_test_occlusion_fraction
                if split == "test"
                else config.occlusion_fraction,
                harsh=0.3,
            )
            if role:
                p0, p1 = pair_positions[ident]
                partner = p1 if pos == p0 else p0
                partner_label = slots[order[partner]][1]
                code = _TREE_CODES["rafdb"]
                kw["scene_key"] = (_TAG_SCENE, code, base_index + p0)  # shared by both
                kw["bound_exprs"] = (
                    (label, (_TAG_EXPR, code, base_index + pos)),
                    (partner_label, (_TAG_EXPR, code, base_index + partner)),
                )
                kw["pair_id"] = f"{split}_pair_{ident:05d}"
                kw["pair_role"] = role
            add(**kw)
            label_lines.append(f"{name}.jpg {label}")

    # -- identity folders (CASIA-WebFace style, ArcFace-like framing)
    isz = config.identity_size
    k_scale = isz / 112.0
    test_set = set(test_ids)
    labels = _labels(config, "identities", "all", config.num_identity_folders * config.images_per_identity)
    for n_id in range(config.num_identity_folders):
        for k in range(config.images_per_identity):
            add(
                tree="identities",
                split="test" if n_id in test_set else "train",
                subset="casia",
                image_rel=f"identities/{n_id:05d}/{k:03d}.jpg",
                mask_rel=f"masks/identities/{n_id:05d}/{k:03d}.png",
                identity=n_id,
                expression=labels[n_id * config.images_per_identity + k],
                width=isz,
                height=isz,
                face_size=78.2 * k_scale,
                anchor_y=0.0,
                center=(56.0 * k_scale, 51.6 * k_scale),
                pose_strength=0.5 * config.pose_jitter,
                occlusion_fraction=config.occlusion_fraction,
                harsh=0.3,
            )
    return jobs, label_lines


def _fit_in_image(params: FaceParams, expressions: Sequence[Expression], margin: float) -> FaceParams:
    """Pull the face back toward the centre / shrink it until every landmark lies inside the image."""
    for _ in range(12):
        ok = True
        for ex in expressions:
            lm = face_landmarks(replace(params, expression=ex))
            if (
                lm[:, 0].min() < margin
                or lm[:, 1].min() < margin
                or lm[:, 0].max() > params.width - margin
                or lm[:, 1].max() > params.height - margin
            ):
                ok = False
                break
        if ok:
            return params
        p = params.pose
        params = replace(
            params, pose=replace(p, shift_x=p.shift_x * 0.5, shift_y=p.shift_y * 0.5, scale=p.scale * 0.95)
        )
    return params


def _job_params(job: _Job, seed: int) -> tuple[FaceParams, np.random.Generator]:
    identity = _identity_cached(seed, job.identity)
    expression = sample_expression(job.expression, np.random.default_rng([seed, *job.expr_key]))
    expressions = [expression] + [
        sample_expression(label, np.random.default_rng([seed, *key]))
        for label, key in job.bound_exprs
        if tuple(key) != tuple(job.expr_key)
    ]
    rng = np.random.default_rng([seed, *job.scene_key])
    pose = sample_pose(rng, job.pose_strength)
    h = job.harsh
    occluder = "none"
    if rng.uniform() < job.occlusion_fraction:
        occluder = OCCLUDER_TYPES[1 + int(rng.integers(len(OCCLUDER_TYPES) - 1))]
    params = FaceParams(
        identity=identity,
        expression=expression,
        pose=pose,
        width=job.width,
        height=job.height,
        face_size=job.face_size,
        anchor_y=job.anchor_y,
        center=job.center,
        light_azimuth=float(rng.uniform(-60, 60) * (1 + 0.3 * h)),
        light_elevation=float(rng.uniform(5, 55)),
        light_strength=float(rng.uniform(0.2, 0.5 + 0.2 * h)),
        ambient=float(rng.uniform(0.68, 0.85) - 0.1 * h),
        gaze=(float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.4, 0.4))),
        occluder=occluder,
        clutter=float(rng.uniform(0.3, 1.5)),
        noise=float(rng.uniform(0.5, 4.0) + 5.0 * h * rng.uniform()),
        blur=float(rng.uniform(0.2, 0.75) + 0.8 * h * rng.uniform()),
    )
    params = _fit_in_image(params, expressions, margin=1.0)
    return params, rng


@lru_cache(maxsize=4096)
def _identity_cached(seed: int, identity_id: int) -> Identity:
    return sample_identity(seed, identity_id)


def _atomic_write(path: Path, data: bytes) -> None:
    # No fsync per file: thousands of images; the synthfaces.json marker (written last) is what counts.
    write_bytes(path, data, fsync=False)


def _encode(rgb_or_gray: np.ndarray, ext: str, jpeg_quality: int) -> bytes:
    img = rgb_or_gray
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if ext == ".png":
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def _run_job(args: tuple[_Job, int, str]) -> tuple[dict, np.ndarray, np.ndarray]:
    job, seed, root_str = args
    root = Path(root_str)
    params, rng = _job_params(job, seed)
    img, lm, mask = render_face(params, rng)
    occluded = landmark_occlusion(lm, mask) if params.occluder != "none" else np.zeros(68, bool)
    image_path = root / job.image_rel
    _atomic_write(image_path, _encode(img, image_path.suffix.lower(), job.jpeg_quality))
    if job.pts_rel:
        (root / job.pts_rel).parent.mkdir(parents=True, exist_ok=True)
        write_pts(root / job.pts_rel, lm)
    mask_rel = ""
    if params.occluder != "none":
        mask_rel = job.mask_rel
        _atomic_write(root / mask_rel, _encode(mask, ".png", 100))
    p = params.pose
    row = {
        "path": job.image_rel,
        "tree": job.tree,
        "split": job.split,
        "subset": job.subset,
        "identity": job.identity,
        "expression": job.expression,
        "expression_name": EXPRESSION_NAMES[job.expression],
        "intensity": f"{params.expression.intensity:.3f}",
        "occluder": params.occluder,
        "mask_path": mask_rel,
        "num_occluded_landmarks": int(occluded.sum()),
        "occluded_landmarks": ";".join(str(i) for i in np.flatnonzero(occluded)),
        "pair_id": job.pair_id,
        "pair_role": job.pair_role,
        "roll": f"{p.roll:.3f}",
        "yaw": f"{p.yaw:.3f}",
        "scale": f"{p.scale:.4f}",
        "shift_x": f"{p.shift_x:.4f}",
        "shift_y": f"{p.shift_y:.4f}",
        "light_azimuth": f"{params.light_azimuth:.2f}",
        "width": params.width,
        "height": params.height,
        "generator_version": GENERATOR_VERSION,
    }
    return row, lm, occluded


METADATA_COLUMNS = (
    "path",
    "tree",
    "split",
    "subset",
    "identity",
    "expression",
    "expression_name",
    "intensity",
    "occluder",
    "mask_path",
    "num_occluded_landmarks",
    "occluded_landmarks",
    "pair_id",
    "pair_role",
    "roll",
    "yaw",
    "scale",
    "shift_x",
    "shift_y",
    "light_azimuth",
    "width",
    "height",
    "generator_version",
)
_OUTPUTS = ("300w", "rafdb", "identities", "masks", "metadata.csv", "landmarks.npz", "synthfaces.json")
_MARKER = "synthfaces.json"
_IN_PROGRESS = ".synthfaces-in-progress"


def _csv_bytes(rows: list[dict], columns: Sequence[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _marker_matches(root: Path, config: SynthFacesConfig) -> bool:
    try:
        info = json.loads((root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("generator_version") == GENERATOR_VERSION and info.get("config") == config.to_dict()


def _clear_previous(root: Path) -> None:
    present = [name for name in _OUTPUTS if (root / name).exists()]
    if not present:
        return
    if not ((root / _MARKER).exists() or (root / _IN_PROGRESS).exists()):
        raise FileExistsError(
            f"{root} already holds {present} but no {_MARKER} or {_IN_PROGRESS}: it does not look like "
            "a SynthFaces output; refusing to overwrite it (choose another --out)"
        )
    # the completion marker goes first, so that a killed run never looks complete
    (root / _MARKER).unlink(missing_ok=True)
    for name in present:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _default_workers(num_jobs: int) -> int:
    if num_jobs < 300:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def generate(
    root: str | os.PathLike = "datasets/synthfaces",
    config: SynthFacesConfig | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write the SynthFaces trees under ``root`` (see the module doc) and return ``root``.

    Skipped (a no-op) when ``root/synthfaces.json`` records the same config and generator version,
    unless ``force``.  Otherwise earlier SynthFaces outputs in ``root`` are removed first.
    ``workers`` processes render in parallel (default: 2 for big runs, 1 for small ones); the output
    is byte-identical whatever the number.
    """
    config = config if config is not None else SynthFacesConfig()
    config.validate()
    root = Path(root)
    if not force and _marker_matches(root, config):
        return root
    root.mkdir(parents=True, exist_ok=True)
    _clear_previous(root)
    write_text(root / _IN_PROGRESS, "generation started; incomplete until synthfaces.json exists\n")
    start = time.time()
    jobs, label_lines = _plan(config)
    seed = int(config.seed)
    workers = _default_workers(len(jobs)) if workers is None else max(1, int(workers))
    tasks = [(job, seed, str(root)) for job in jobs]
    rows: list[dict] = []
    lms = np.zeros((len(jobs), 68, 2), np.float32)
    occ = np.zeros((len(jobs), 68), bool)

    def consume(results):
        for i, (row, lm, flags) in enumerate(results):
            rows.append(row)
            lms[i], occ[i] = lm, flags
            if progress and (i + 1) % 500 == 0:
                print(f"  {i + 1}/{len(jobs)} images ({time.time() - start:.1f} s)", file=sys.stderr)

    if workers == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the images are tiny: threading costs more than it saves
        try:
            consume(map(_run_job, tasks))
        finally:
            cv2.setNumThreads(threads)
    else:
        # "spawn", not "fork": forking a process whose OpenCV (or TensorFlow) thread pools have run
        # can deadlock the children.  Workers only import numpy, OpenCV and kdface.data.
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            consume(pool.imap(_run_job, tasks, chunksize=16))

    _atomic_write(root / "rafdb/EmoLabel/list_patition_label.txt", ("\n".join(label_lines) + "\n").encode())
    raf_rows = []
    for row in rows:
        if row["tree"] == "rafdb":
            name = Path(row["path"]).name.replace("_aligned.jpg", ".jpg")
            raf_rows.append({**row, "image": name, "label": row["expression"], "aligned_path": row["path"][6:],
                             "mask_path": row["mask_path"][6:] if row["mask_path"] else ""})  # fmt: skip
    raf_cols = ("image", "aligned_path", "split", "label", "expression_name", "identity", "occluder", "mask_path",
                "pair_id", "pair_role", "generator_version")  # fmt: skip
    _atomic_write(root / "rafdb/metadata.csv", _csv_bytes(raf_rows, raf_cols))
    # RAN's Occlusion-RAF-DB list format (CRLF like the real file): name, RAF label 0..6, occluder code
    occlusion_lines = [
        f"{Path(row['image']).stem}_aligned {int(row['label']) - 1} {OCCLUDER_TYPES.index(row['occluder'])}\r\n"
        for row in raf_rows
        if row["split"] == "test" and row["occluder"] != "none"
    ]
    _atomic_write(root / "rafdb" / OCCLUSION_LIST, "".join(occlusion_lines).encode())
    _atomic_write(root / "metadata.csv", _csv_bytes(rows, METADATA_COLUMNS))
    buf = io.BytesIO()
    np.savez_compressed(buf, paths=np.array([r["path"] for r in rows]), landmarks=lms, occluded=occ)
    _atomic_write(root / "landmarks.npz", buf.getvalue())

    counts: dict[str, int] = {}
    for row in rows:
        key = f"{row['tree']}/{row['split']}"
        counts[key] = counts.get(key, 0) + 1
    info = {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "counts": counts,
        "num_images": len(rows),
        "num_occluded": int(sum(1 for r in rows if r["occluder"] != "none")),
        "num_pairs": len({r["pair_id"] for r in rows if r["pair_id"]}),
        "identity_split": dict(zip(("train", "test"), identity_split(config), strict=True)),
        "seconds": round(time.time() - start, 2),
        "workers": workers,
    }
    (root / _IN_PROGRESS).unlink(missing_ok=True)
    _atomic_write(root / _MARKER, (json.dumps(info, indent=2) + "\n").encode())
    return root


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kdface.data.synthfaces",
        description="Generate the SynthFaces dataset (300W / RAF-DB / identity-folder trees).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo = SynthFacesConfig.demo()
    parser.add_argument("--out", default="datasets/synthfaces", help="output root directory")
    parser.add_argument("--preset", default="demo", choices=("demo", "tiny", "full"), help="size preset")
    overridable = [
        ("--seed", int, "seed", "random seed"),
        ("--num-identities", int, "num_identities", "number of identities"),
        ("--image-size", int, "image_size", "300W-tree image size (px)"),
        ("--w300-train", int, "w300_train", "300W train images"),
        ("--w300-common", int, "w300_common", "300W common-test images"),
        ("--w300-challenging", int, "w300_challenging", "300W challenging-test images"),
        ("--rafdb-train", int, "rafdb_train", "RAF-DB train images"),
        ("--rafdb-test", int, "rafdb_test", "RAF-DB test images"),
        ("--num-identity-folders", int, "num_identity_folders", "identities/ folders"),
        ("--images-per-identity", int, "images_per_identity", "images per identities/ folder"),
        ("--occlusion-fraction", float, "occlusion_fraction", "fraction of occluded images"),
        (
            "--rafdb-test-occlusion-fraction",
            float,
            "rafdb_test_occlusion_fraction",
            "fraction of occluded RAF-DB test images",
        ),
    ]
    for flag, typ, attr, text in overridable:
        parser.add_argument(
            flag,
            type=typ,
            default=None,
            help=f"{text} (None: the preset's value; demo: {getattr(demo, attr)})",
        )
    parser.add_argument("--workers", type=int, default=None, help="processes (None: 2 for big runs, else 1)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the output is up to date")
    args = parser.parse_args(argv)
    overrides = {
        attr: getattr(args, attr) for _, _, attr, _ in overridable if getattr(args, attr) is not None
    }
    config = SynthFacesConfig.preset(args.preset, **overrides)
    start = time.time()
    up_to_date = not args.force and _marker_matches(Path(args.out), config)
    root = generate(args.out, config, workers=args.workers, force=args.force, progress=True)
    if up_to_date:
        print(f"{root}: up to date (synthfaces.json matches the config); nothing to do")
    else:
        info = json.loads((root / _MARKER).read_text(encoding="utf-8"))
        print(f"{root}: wrote {info['num_images']} images {info['counts']} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
