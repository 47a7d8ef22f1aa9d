"""KD-Loss for facial landmarks (Fard & Mahoor, CVIU 2022): ALoss and the main loss.

Every term acts element-wise on the flat interleaved landmark vector (x and y independently) and
is averaged over batch x 2N. Notation (spec §3.2): ``g`` ground truth, ``p`` student, ``a``
Tough-Teacher ("accurate"), ``s`` Tolerant-Teacher ("smooth"). Teachers are constants.

The constants follow the authors' code, not the paper's figures (spec §6.2 lists both).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

BETA = 0.15
ALPHA_TOUGH, ALPHA_BAR_TOUGH = 1.9, -0.45
ALPHA_TOLERANT, ALPHA_BAR_TOLERANT = 1.8, -0.4
MAIN_WEIGHT, TOUGH_WEIGHT, TOLERANT_WEIGHT = 2.0, 1.0, 1.0


class KDLossTerms(NamedTuple):
    """``kd_loss``'s result; a tuple whose first item is the total."""

    total: tf.Tensor
    main: tf.Tensor
    aloss_tough: tf.Tensor
    aloss_tolerant: tf.Tensor


def _as_float(*tensors):
    # cast, not convert: a float16 prediction (mixed precision) is computed on in float32
    return [tf.cast(tf.convert_to_tensor(t), tf.float32) for t in tensors]


def aloss_elementwise(y_true, y_pred, y_teacher, alpha, alpha_bar, beta=BETA):
    """Assistive loss ALoss_t per element (spec §3.3).

    The teacher is mirrored onto the student's side of the ground truth, ``t* = g + sgn(p-g)|t-g|``.
    Beyond ``t*`` the weight is ``alpha`` (pull hard); between the boundary ``g + beta*(t*-g)`` and
    ``t*`` it is ``alpha_bar`` (< 0, still pushing towards ``g``); closer to ``g`` it is 0.
    """
    g, p, t = _as_float(y_true, y_pred, y_teacher)
    t = tf.stop_gradient(t)
    sigma = tf.stop_gradient(tf.sign(p - g))
    dist_teacher = tf.abs(t - g)
    mirrored = g + sigma * dist_teacher
    boundary = g + beta * sigma * dist_teacher
    positive = tf.sign(p - mirrored) * tf.sign(mirrored - g) > 0
    negative = tf.sign(mirrored - p) * tf.sign(p - boundary) >= 0
    weight = tf.where(positive, alpha, tf.where(negative, alpha_bar, 0.0))
    return tf.stop_gradient(weight) * tf.abs(mirrored - p)


def aloss_tough(y_true, y_pred, y_tough, alpha=ALPHA_TOUGH, alpha_bar=ALPHA_BAR_TOUGH, beta=BETA):
    """Mean ALoss_Tou over all elements."""
    return tf.reduce_mean(aloss_elementwise(y_true, y_pred, y_tough, alpha, alpha_bar, beta))


def aloss_tolerant(y_true, y_pred, y_tolerant, alpha=ALPHA_TOLERANT, alpha_bar=ALPHA_BAR_TOLERANT, beta=BETA):
    """Mean ALoss_Tol over all elements."""
    return tf.reduce_mean(aloss_elementwise(y_true, y_pred, y_tolerant, alpha, alpha_bar, beta))


def main_loss_elementwise(y_true, y_pred, y_tolerant):
    """The main loss (spec §3.4): ``3e`` inside the Tolerant-Teacher's error, ``e^2 + 3d - d^2`` beyond.

    Continuous at ``e = d`` (the slope jumps from 3 to ``2d``), as in the authors' code.
    """
    g, p, s = _as_float(y_true, y_pred, y_tolerant)
    error = tf.abs(p - g)
    threshold = tf.stop_gradient(tf.abs(s - g))
    return tf.where(
        error <= threshold, 3.0 * error, tf.square(error) + 3.0 * threshold - tf.square(threshold)
    )


def main_loss(y_true, y_pred, y_tolerant):
    return tf.reduce_mean(main_loss_elementwise(y_true, y_pred, y_tolerant))


def kd_loss(
    y_true,
    y_student,
    y_tough,
    y_tolerant,
    *,
    main_weight=MAIN_WEIGHT,
    tough_weight=TOUGH_WEIGHT,
    tolerant_weight=TOLERANT_WEIGHT,
    alpha_tough=ALPHA_TOUGH,
    alpha_bar_tough=ALPHA_BAR_TOUGH,
    alpha_tolerant=ALPHA_TOLERANT,
    alpha_bar_tolerant=ALPHA_BAR_TOLERANT,
    beta=BETA,
) -> KDLossTerms:
    """KD = w_m*mean(main) + w_Tou*mean(ALoss_Tou) + w_Tol*mean(ALoss_Tol) (spec §3.5).

    Returns :class:`KDLossTerms` ``(total, main, aloss_tough, aloss_tolerant)``; the parts are the
    unweighted means.
    """
    main = main_loss(y_true, y_student, y_tolerant)
    tough = aloss_tough(y_true, y_student, y_tough, alpha_tough, alpha_bar_tough, beta)
    tolerant = aloss_tolerant(y_true, y_student, y_tolerant, alpha_tolerant, alpha_bar_tolerant, beta)
    total = main_weight * main + tough_weight * tough + tolerant_weight * tolerant
    return KDLossTerms(total, main, tough, tolerant)
