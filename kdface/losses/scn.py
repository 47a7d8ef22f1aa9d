"""SCN losses and relabelling (Wang et al., "Suppressing Uncertainties for Large-Scale Facial Expression
Recognition", CVPR 2020), as the official code computes them (spec B2).

``weights`` are the importance weights ``alpha`` in ``(0, 1)`` (one per sample, shape ``(B,)`` or
``(B, 1)``); ``logits`` are the classifier's ``z = W x + b`` **before** weighting. The total loss of
the official code is ``L_WCE + L_RR`` (1:1); the paper's gamma mix is not recoverable (spec B2).

Every term is computed on the batch it is given. Under ``tf.distribute`` that is the replica's local
batch: the weighted cross-entropy then averages to the global mean exactly, but rank regularisation
sorts and splits each replica's ``B / R`` weights on its own (the high group is the top
``floor(B / R * beta)`` of that replica), so with R replicas it is the mean of R local terms, not one
term over the global batch (``docs/scn.md``; tested in ``tests/test_distributed.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

RANK_MARGIN = 0.15  # delta_1
HIGH_FRACTION = 0.7  # beta
RELABEL_MARGIN = 0.2  # delta_2


def _weights(weights):
    weights = tf.convert_to_tensor(weights)
    return tf.reshape(tf.cast(weights, tf.float32), [-1])


def high_group_size(batch_size, beta: float = HIGH_FRACTION):
    """``floor(B * beta)``, computed in float64 as the original's Python ``int(batch_sz * beta)``
    (float32 would give 6 for B = 10, beta = 0.7). 64 -> 44, 47 -> 32, 10 -> 7."""
    b = tf.cast(batch_size, tf.float64)
    return tf.cast(tf.floor(b * tf.constant(beta, tf.float64)), tf.int32)


def importance_gap(weights, beta: float = HIGH_FRACTION):
    """``(mean(alpha_H) - mean(alpha_L), splittable)``: the batch's weights sorted in descending order,
    the high group the top ``floor(B * beta)``, the low group the rest. ``splittable`` is False when
    one group is empty (e.g. B = 1); the gap is then that of a 1 / B - 1 split (finite, unused)."""
    alpha = _weights(weights)
    n = tf.size(alpha)
    tops = high_group_size(n, beta)
    ordered = tf.sort(alpha, direction="DESCENDING")
    tops_safe = tf.clip_by_value(tops, 1, tf.maximum(n - 1, 1))
    gap = tf.reduce_mean(ordered[:tops_safe]) - tf.reduce_mean(ordered[tops_safe:])
    return gap, (tops > 0) & (tops < n)


def scn_rank_regularization(weights, margin: float = RANK_MARGIN, beta: float = HIGH_FRACTION):
    """``L_RR = max(0, margin - (mean(alpha_H) - mean(alpha_L)))`` (:func:`importance_gap`).

    The gradient flows into the weights (the split itself has none). A batch that cannot be split
    (one group empty, e.g. B = 1) contributes 0; the original would take the mean of an empty group (NaN).
    """
    gap, splittable = importance_gap(weights, beta)
    loss = tf.maximum(0.0, margin - gap)
    return tf.where(splittable, loss, tf.zeros_like(loss))


def scn_weighted_cross_entropy(labels, logits, weights):
    """``L_WCE = mean_i CE(softmax(alpha_i * z_i), y_i)``: the cross-entropy of the importance-weighted
    logits (the bias is scaled too, as in the original)."""
    alpha = tf.reshape(_weights(weights), [-1, 1])
    weighted = alpha * tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), weighted))


def low_importance_mask(weights, beta: float = HIGH_FRACTION):
    """True for the samples of the batch's low-importance group (not in the top ``floor(B * beta)``).
    Ties are broken by position, as a stable sort would."""
    alpha = _weights(weights)
    n = tf.size(alpha)
    order = tf.argsort(alpha, direction="DESCENDING", stable=True)
    rank = tf.scatter_nd(order[:, None], tf.range(n), tf.shape(alpha))
    return rank >= high_group_size(n, beta)


def scn_relabel(labels, probabilities, margin: float = RELABEL_MARGIN, candidates=None):
    """SCN's relabelling rule: ``y' = argmax p`` where ``p_max - p_y > margin``, else ``y``.

    ``probabilities`` are ``softmax(alpha * z)`` (the original relabels from the weighted logits, so a
    small alpha flattens ``p`` and makes a change less likely). ``candidates`` (bool ``(B,)``) limits
    the rule to some samples: ``None`` is the official code (every sample of the batch); the paper
    applies it to the low-importance group only (:func:`low_importance_mask`).
    Returns ``(new labels int32 (B,), changed bool (B,))``.
    """
    labels = tf.cast(labels, tf.int32)
    p = tf.cast(probabilities, tf.float32)
    best = tf.argmax(p, axis=-1, output_type=tf.int32)
    p_max = tf.reduce_max(p, axis=-1)
    p_label = tf.gather(p, labels, batch_dims=1)
    change = (p_max - p_label > margin) & tf.not_equal(best, labels)
    if candidates is not None:
        change &= tf.cast(candidates, tf.bool)
    return tf.where(change, best, labels), change


class SCNTerms(NamedTuple):
    total: tf.Tensor
    weighted_cross_entropy: tf.Tensor
    rank_regularization: tf.Tensor


def scn_loss(labels, logits, weights, margin: float = RANK_MARGIN, beta: float = HIGH_FRACTION,
             rank_weight: float = 1.0) -> SCNTerms:  # fmt: skip
    """The official code's loss, ``L_WCE + rank_weight * L_RR`` (``rank_weight`` 1 as the original)."""
    wce = scn_weighted_cross_entropy(labels, logits, weights)
    rr = scn_rank_regularization(weights, margin, beta)
    return SCNTerms(wce + rank_weight * rr, wce, rr)
