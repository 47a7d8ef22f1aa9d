"""Random draws of identities, expressions and poses, and the seed-sequence tags of every random stream."""

from __future__ import annotations

import numpy as np

from kdface.data.synthfaces.params import HAIR_STYLES, NEUTRAL, Expression, Identity, Pose, _color

# Seed-sequence tags, so that streams for different purposes never collide.
_TAG_IDENTITY = 1
_TAG_SPLIT = 2
_TAG_LABELS = 3
_TAG_SCENE = 4
_TAG_EXPR = 5
_TAG_PAIRS = 6  # verification pairs of held-out identities
_TAG_CKPLUS = 7  # the CK+ tree's subjects, sequences and frames
_TREE_CODES = {"300w": 1, "rafdb": 2, "identities": 3, "ckplus": 4}
_SPLIT_CODES = {"train": 1, "common": 2, "challenging": 3, "test": 4, "all": 5}

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
    # contempt (CK+ only): a one-sided lip-corner tightening and raise (FACS AU14 unilateral); the side
    # is drawn per image. Its corner_asym is not in _EXPR_NOISE, so labels 1..7 draw as before.
    8: dict(corner_asym=0.1, lip_press=0.35, mouth_width=-0.03, eye_open=-0.06, lower_lid_raise=0.1),
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
    """Expression ``label`` (1..7, RAF-DB order; 8 contempt) at a random intensity (0.5..1.2) plus
    parameter noise.

    ``jitter=0`` and ``intensity=1`` give the class prototype exactly (contempt: on the image-right side).
    """
    if label not in _PROTOTYPES:
        raise ValueError(f"expression label must be 1..7 (RAF-DB order) or 8 (contempt), got {label!r}")
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
    if "corner_asym" in proto:  # drawn after the shared draws: the other labels' streams are unchanged
        side = 1.0 if jitter == 0 or rng.uniform() < 0.5 else -1.0
        values["corner_asym"] = side * intensity * proto["corner_asym"]
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
