"""Margin-based classification logits for face recognition (spec F-SKD §1.4): CosFace, ArcFace and the
plain scaled cosine used at inference.

All three compute ``cos = norm(x) norm(W)^T`` between the embeddings ``x`` ``(B, D)`` and the class
weights ``W`` ``(K, D)`` (one row per identity, torch's ``(n_cls, 512)`` layout), each row
L2-normalised as torch's ``F.normalize`` does (``x / max(||x||, 1e-12)``). The margin only changes the
*target* logit; every other logit is ``s cos``. The result feeds a softmax cross-entropy.

Everything is computed in float32, whatever the inputs' dtype: under mixed precision the embeddings
arrive in float16, and ``s = 30..64`` times a float16 cosine loses the margin's precision.
"""

from __future__ import annotations

import math

import tensorflow as tf

COSFACE_SCALE = 30.0  # F-SKD v1: --scale_size default
COSFACE_MARGIN = 0.25  # F-SKD v1: hardcoded
ARCFACE_SCALE = 32.0  # A-SKD / Face_Pytorch
ARCFACE_MARGIN = 0.5
NORMALIZE_EPS = 1e-12  # torch F.normalize
ARCFACE_CLAMP_EPS = 1e-7  # keeps 1 - cos^2 > 0 in float32 (1 - 1e-7 rounds to 1 - 2^-23)


def _f32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _l2_normalize_rows(x):
    """``x / max(||x||, 1e-12)`` row-wise; the max is taken on the squared norm so a zero row has a
    finite gradient (``sqrt`` at 0 has none)."""
    sq = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
    return x * tf.math.rsqrt(tf.maximum(sq, NORMALIZE_EPS**2))


def cosine_matrix(embeddings, weights):
    """``(B, K)`` cosines between each embedding ``(B, D)`` and each class weight row ``(K, D)``."""
    x = _l2_normalize_rows(_f32(embeddings))
    w = _l2_normalize_rows(_f32(weights))
    return tf.matmul(x, w, transpose_b=True)


def _target_mask(labels, num_classes):
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.cast(tf.one_hot(labels, num_classes, dtype=tf.float32), tf.bool)


def cosine_logits(embeddings, weights, s=COSFACE_SCALE):
    """``s cos``: the logits without a margin (what evaluation and the "softmax" baseline use)."""
    return float(s) * cosine_matrix(embeddings, weights)


def cosface_logits(embeddings, weights, labels, s=COSFACE_SCALE, m=COSFACE_MARGIN):
    """CosFace (large-margin cosine): target logit ``s (cos - m)``, others ``s cos``.

    Defaults are F-SKD v1's (s = 30, m = 0.25). Example: cos = 0.6 gives a target logit of
    ``30 * 0.35 = 10.5``. ``labels`` are integer class ids ``(B,)``.
    """
    cos = cosine_matrix(embeddings, weights)
    target = _target_mask(labels, tf.shape(cos)[-1])
    return float(s) * tf.where(target, cos - float(m), cos)


def arcface_logits(embeddings, weights, labels, s=ARCFACE_SCALE, m=ARCFACE_MARGIN, easy_margin: bool = False):
    """ArcFace (additive angular margin): target logit ``s phi`` with ``phi = cos(theta + m)``,
    others ``s cos``.

    ``phi = cos cos(m) - sin sin(m)``, ``sin = sqrt(1 - cos^2)``. Where ``theta + m`` would pass
    ``pi`` (``cos <= cos(pi - m)``), ``phi`` would stop decreasing with ``theta``, so the original
    (Face_Pytorch / A-SKD) uses ``cos - m sin(pi - m)`` there instead. With ``easy_margin`` the margin
    only applies where ``cos > 0`` (``phi`` there, plain ``cos`` elsewhere), as in Face_Pytorch and
    insightface. Defaults are A-SKD's (s = 32, m = 0.5): cos = 0.6 gives phi = 0.1430, logit 4.576.

    Departure from the original: ``cos`` is clamped to ``[-1 + 1e-7, 1 - 1e-7]`` inside the square
    root (only there); the original takes ``sqrt(1 - cos^2)`` unclamped, which is NaN when rounding
    puts ``|cos|`` above 1 and has an infinite gradient at ``|cos| = 1``.
    """
    cos = cosine_matrix(embeddings, weights)
    m = float(m)
    clamped = tf.clip_by_value(cos, -1.0 + ARCFACE_CLAMP_EPS, 1.0 - ARCFACE_CLAMP_EPS)
    sin = tf.sqrt(1.0 - tf.square(clamped))
    phi = cos * math.cos(m) - sin * math.sin(m)
    if easy_margin:
        phi = tf.where(cos > 0.0, phi, cos)
    else:
        threshold = math.cos(math.pi - m)
        phi = tf.where(cos > threshold, phi, cos - m * math.sin(math.pi - m))
    target = _target_mask(labels, tf.shape(cos)[-1])
    return float(s) * tf.where(target, phi, cos)
