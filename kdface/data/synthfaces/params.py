"""The parameters of one rendering: who (Identity), what expression, which pose, and the scene.

Everything here is plain data; the samplers are in :mod:`.sampling`, the drawing in :mod:`.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

EXPRESSION_NAMES = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
    8: "contempt",  # drawn in the CK+ tree only (RAF-DB has no contempt)
}
NEUTRAL = 7
CONTEMPT = 8
OCCLUDER_TYPES = ("none", "sunglasses", "mask", "hand", "hair", "object")
HAIR_STYLES = ("short", "long", "buzz", "fringe", "curly", "bun", "bald")

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
    corner_asym: float = 0.0  # one mouth corner up: + the image-right one, - the image-left (contempt)


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
        expression=replace(params.expression, corner_asym=-params.expression.corner_asym),
        pose=params.pose.mirrored(),
        center=(params.width - cx, cy),
        light_azimuth=-params.light_azimuth,
        gaze=(-params.gaze[0], params.gaze[1]),
    )


# Colour helpers: results are clipped to 0..255 so that any mix or scaling is a drawable colour.
def _color(values) -> Color:
    r, g, b = (min(255.0, max(0.0, float(v))) for v in values)
    return (r, g, b)


def _scaled(color: Color, k: float, add: float = 0.0) -> Color:
    return _color([c * k + add for c in color])


def _mix(c1: Color, c2: Color, t: float) -> Color:
    return _color([a * (1 - t) + b * t for a, b in zip(c1, c2, strict=True)])
