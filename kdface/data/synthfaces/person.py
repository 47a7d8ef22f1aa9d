"""Drawing the person (hair, body, ears, face and features) onto a canvas, in flat colours.

Semi-transparent details (folds, highlights, blush) are drawn opaque with their colour pre-mixed
with the flat colour they lie on (``_mix(skin, colour, alpha)``), which is what alpha blending would
give before shading.  Every helper only records operations; the canvas draws them on ``flush``.
"""

from __future__ import annotations

import math

import numpy as np

from kdface.data.synthfaces.canvas import _Canvas
from kdface.data.synthfaces.geometry import _ellipse, _lin, _Shapes, _xyz
from kdface.data.synthfaces.params import Color, Expression, FaceParams, Identity, _mix, _scaled

_LIN12 = _lin(0.0, 1.0, 12)
_LIN41 = _lin(0.0, 1.0, 41)
_SHOULDERS = np.array(
    [[-3.0, 4.5], [-2.6, 2.75], [-1.6, 2.35], [-0.7, 2.1], [0.7, 2.1], [1.6, 2.35], [2.6, 2.75], [3.0, 4.5]]
)


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

    The steps run back to front: each one paints over the ones before it.  Everything that belongs
    to the person also goes into the ``person`` mask, which limits the shading to the person.
    """
    idn, ex = params.identity, params.expression
    _draw_back_hair(cv, idn, shapes)
    _draw_body(cv, idn, shapes, clothing)
    _draw_ears(cv, idn, shapes)
    _draw_face_skin(cv, idn, ex, shapes)
    _draw_folds(cv, idn, ex, shapes)
    for name in ("brow_l", "brow_r"):
        cv.fill(shapes.curves[name], idn.brow_color)
    _draw_eyes(cv, params, shapes)
    _draw_nose(cv, params, shapes)
    _draw_mouth(cv, idn, ex, shapes)
    _draw_front_hair(cv, idn, shapes)


def _draw_back_hair(cv: _Canvas, idn: Identity, shapes: _Shapes) -> None:
    """Long and curly hair falls behind the head and shoulders."""
    if idn.hair_style not in ("long", "curly"):
        return
    a, jt = shapes.a, idn.jaw_top
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


def _draw_body(cv: _Canvas, idn: Identity, shapes: _Shapes, clothing: Color) -> None:
    """Shoulders, neckline, neck and the jaw's shadow on the neck."""
    a, skin = shapes.a, idn.skin
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


def _draw_ears(cv: _Canvas, idn: Identity, shapes: _Shapes) -> None:
    """Both ears, drawn before the face so that the face contour overlaps them."""
    a, jt, skin = shapes.a, idn.jaw_top, idn.skin
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


def _draw_face_skin(cv: _Canvas, idn: Identity, ex: Expression, shapes: _Shapes) -> None:
    """The face's skin and contour, the cheeks' blush (stronger with a cheek raise) and stubble."""
    skin = idn.skin
    cv.fill(shapes.curves["skin"], skin, mask="person")
    cv.line(shapes.curves["jaw"], _mix(skin, _scaled(skin, 0.62), 0.45), 0.02)
    blush = _mix(skin, _mix(skin, (220, 90, 90), 0.5), 0.1 + 0.12 * min(ex.cheek_raise, 1.5))
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
            np.concatenate([_xyz(jx, jy), upper]), _mix(skin, _scaled(idn.hair_color, 0.7), 0.45 * idn.beard)
        )


def _draw_folds(cv: _Canvas, idn: Identity, ex: Expression, shapes: _Shapes) -> None:
    """Nasolabial folds (everyone a little, happiness a lot), forehead lines (brow raise) and
    glabella lines (furrow): expression cues that are not landmark geometry."""
    skin = idn.skin
    fold_dark = _scaled(skin, 0.55)
    nb, nw, mw, my = shapes.nose_base, shapes.nose_w, shapes.mouth_w, idn.mouth_y
    t = _LIN12
    fold = _mix(skin, fold_dark, min(0.75, 0.12 + 0.3 * ex.cheek_raise))
    for side in (-1, 1):
        fx = side * (nw + 0.06 + (mw - nw) * t + 0.06 * np.sin(np.pi * t) * (1 + 0.5 * ex.cheek_raise))
        fy = nb - 0.1 + (my - nb + 0.2) * t
        cv.line(_xyz(fx, fy), fold, 0.022)
    if ex.brow_raise > 0.03:
        color = _mix(skin, fold_dark, min(0.5, 3.0 * (ex.brow_raise - 0.03)))
        t = _lin(-0.45, 0.45, 13)
        for k, yk in enumerate((-0.62, -0.72, -0.82)):
            cv.line(_xyz(t, yk - ex.brow_raise - 0.04 * np.cos(np.pi * t) + 0.01 * k), color, 0.015)
    if ex.brow_furrow > 0.2:
        color = _mix(skin, fold_dark, 0.35 * min(ex.brow_furrow, 1.2))
        for side in (-1, 1):
            cv.line(_xyz([side * 0.05, side * 0.07], [-0.32 - ex.brow_raise, -0.14]), color, 0.018)


def _draw_eyes(cv: _Canvas, params: FaceParams, shapes: _Shapes) -> None:
    """Lid creases, eye bags (squint), sclera, iris with catch light, lashes.

    The irises are drawn on a snapshot and composited through the eye-opening mask, so that the
    lids clip them whatever the gaze.
    """
    idn, ex, skin = params.identity, params.expression, params.identity.skin
    cv.new_mask("eye")
    cv.snapshot("iris")
    sclera = (238, 236, 232)
    lash = _scaled(idn.brow_color, 0.45)
    gx, gy = params.gaze
    lx = math.sin(math.radians(params.light_azimuth))
    crease_color = _mix(skin, _scaled(skin, 0.55), 0.3)
    for name, side in (("eye_l", -1), ("eye_r", 1)):
        (ox, oy), (ix, iy) = shapes.eye_frame(side)
        crease = shapes.curves[name + "_upper"][3:-3].copy()
        crease[:, 1] -= 0.045 + 0.02 * (ex.eye_open - 1)
        cv.line(crease, crease_color, 0.018)
        if ex.lower_lid_raise > 0.15:
            bag = shapes.curves[name + "_lower"][4:-4].copy()
            bag[:, 1] += 0.05
            cv.line(bag, _mix(skin, _scaled(skin, 0.6), min(0.5, ex.lower_lid_raise - 0.15)), 0.015)
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
    lower_lash = _mix(skin, lash, 0.5)
    for name in ("eye_l", "eye_r"):
        cv.line(shapes.curves[name + "_upper"], lash, 0.028)
        cv.line(shapes.curves[name + "_lower"], lower_lash, 0.012)


def _draw_nose(cv: _Canvas, params: FaceParams, shapes: _Shapes) -> None:
    """Nose sides (darker on the side away from the light), alae, nostrils, wrinkles, bridge and tip
    highlights."""
    ex, skin = params.expression, params.identity.skin
    top, tip = shapes.nose_top, shapes.nose_tip
    nb, nw = shapes.nose_base, shapes.nose_w
    lx = math.sin(math.radians(params.light_azimuth))
    dark = _scaled(skin, 0.6)
    for side in (-1, 1):
        t = _LIN12
        sx = side * (0.075 + (nw * 0.62 - 0.075) * t**1.6)
        sy = top + 0.12 + (nb - 0.24 - top) * t
        cv.line(_xyz(sx, sy, 0.4 * t), _mix(skin, dark, 0.22 + 0.2 * max(0.0, -side * lx)), 0.02)
        ala = _xyz(side * nw * (1.0 + 0.12 * np.sin(np.pi * t) - 0.3 * t), nb - 0.2 * t, 0.1 + 0.1 * t)
        cv.line(ala, _mix(skin, dark, 0.55), 0.022)
        cv.fill(_ellipse(side * nw * 0.48, nb + 0.01, nw * 0.26, 0.032, n=18, z=0.2), _scaled(skin, 0.3))
        if ex.nose_wrinkle > 0.2:
            color = _mix(skin, dark, 0.35 * min(ex.nose_wrinkle, 1.2))
            for k in range(3):
                yk = 0.02 + 0.07 * k
                cv.line(
                    _xyz([side * 0.04, side * 0.11, side * 0.17], [yk, yk - 0.025, yk], 0.3), color, 0.014
                )
    cv.line(shapes.curves["nose_base"], _mix(skin, _scaled(skin, 0.5), 0.55), 0.02)
    light = _scaled(skin, 1.12, 12)
    cv.line(shapes.curves["bridge"], _mix(skin, light, 0.5), 0.035)
    cv.fill(_ellipse(0, tip - 0.015, 0.07, 0.05, z=0.42), _mix(skin, light, 0.4))


def _draw_mouth(cv: _Canvas, idn: Identity, ex: Expression, shapes: _Shapes) -> None:
    """Lips, the open mouth with its teeth, the lip line and a gloss on the lower lip."""
    mw = shapes.mouth_w
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


def _draw_front_hair(cv: _Canvas, idn: Identity, shapes: _Shapes) -> None:
    """The hair over the forehead: a flat tint for buzz cuts, else a cap with lighter/darker strands."""
    cap = _hair_cap(idn, shapes)
    if cap is None:
        return
    cv.fill(cap, 255, target="person")
    if idn.hair_style == "buzz":
        cv.fill(cap, _mix(idn.skin, idn.hair_color, 0.6))
        return
    # strands come from the identity's own stream: the same person has the same hair in every image
    hair_rng = np.random.default_rng(idn.hair_seed)
    a, jt = shapes.a, idn.jaw_top
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
