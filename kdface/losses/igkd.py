"""IGKD losses (Zhang et al., "Information gap based knowledge distillation for occluded facial
expression recognition", IVC 2025), as the authors' code computes them (spec A3).

Notation: ``t`` teacher (clean view), ``s0`` student on the clean view, ``s1`` student on the masked
(randomly erased) view. Feature maps are NHWC. Classifier kernels are Keras ``Dense`` kernels,
``(C, K)``: the transpose of the paper's ``W`` (``K x C``). Temperature is 1 everywhere.
``epoch`` is **1-based**, as in the original's ramps.

Every term is the mean over the batch it is given. Under ``tf.distribute`` that is the replica's
local batch: the per-sample terms then average to the global mean exactly, but the relation term
compares ``B_local x B_local`` Gram matrices, so with R replicas it is the mean of R block
relations rather than one ``B x B`` relation (``docs/igkd.md``; tested in ``test_distributed``).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

FD_WEIGHT = 1.8
RD_WEIGHT = 1000.0
KNOWLEDGE_LEARNING_WEIGHT = 3.0
KNOWLEDGE_FEEDBACK_WEIGHT = 8.0
RAMP_EPOCHS = 4.0


def _f32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def ramp_up(epoch):
    """``r_up(e) = exp(-5 (1 - e/4)^2)`` for ``e <= 4``, else 1 (e = 1: 0.0601, 2: 0.2865, 3: 0.7316)."""
    e = _f32(epoch)
    return tf.where(e > RAMP_EPOCHS, 1.0, tf.exp(-5.0 * tf.square(1.0 - e / RAMP_EPOCHS)))


def ramp_down(epoch):
    """``r_down(e) = exp(-(1 - 4/e)^2)`` for ``e >= 4``, else 1 (e = 5: 0.9608, 10: 0.6977, 60: 0.4185)."""
    e = _f32(epoch)
    safe = tf.maximum(e, RAMP_EPOCHS)  # keeps 4/e finite on the branch tf.where discards
    return tf.where(e < RAMP_EPOCHS, 1.0, tf.exp(-tf.square(1.0 - RAMP_EPOCHS / safe)))


def cross_entropy(labels, logits):
    """Mean softmax cross-entropy of integer ``labels`` against ``logits``."""
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, _f32(logits)))


def kl_batchmean(target_logits, input_logits):
    """``(1/rows) sum_rows sum_k P (log P - log Q)`` with ``P = softmax(target)``,
    ``Q = softmax(input)``: PyTorch's ``kl_div(log_softmax(input), softmax(target), "batchmean")``.

    Gradients flow into both arguments (PyTorch differentiates the target too); stop them outside
    where a term wants a constant target.
    """
    target_logits, input_logits = _f32(target_logits), _f32(input_logits)
    log_p = tf.nn.log_softmax(target_logits, axis=-1)
    log_q = tf.nn.log_softmax(input_logits, axis=-1)
    rows = tf.cast(tf.shape(target_logits)[0], tf.float32)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q)) / rows


def baseline_loss(labels, logit_t, logit_s0, logit_s1, epoch):
    """``L_CE = CE(t) + CE(s0) + r_down(e) CE(s1)`` (spec A3.1)."""
    return (
        cross_entropy(labels, logit_t)
        + cross_entropy(labels, logit_s0)
        + ramp_down(epoch) * cross_entropy(labels, logit_s1)
    )


def class_activation_map(feature_map, class_mean_weights):
    """``M(h, w) = sum_c wbar_c F[h, w, c]``: the class-mean of the per-class CAMs, ``(B, H, W)``."""
    return tf.einsum("bhwc,c->bhw", _f32(feature_map), _f32(class_mean_weights))


def feature_distillation_loss(teacher_map, student_map, teacher_kernel, weight=FD_WEIGHT):
    """FD (spec A3.2): ``1.8 MSE(M_S, M_T)`` between the class-mean CAMs of the teacher's layer-4
    map and the masked student's channel-mapped map, both weighted by ``wbar`` = mean over classes
    of the teacher's classifier (constant). The teacher's map is a constant too."""
    w_bar = tf.reduce_mean(tf.stop_gradient(_f32(teacher_kernel)), axis=1)  # (C, K) -> (C,)
    m_t = class_activation_map(tf.stop_gradient(_f32(teacher_map)), w_bar)
    m_s = class_activation_map(student_map, w_bar)
    return weight * tf.reduce_mean(tf.square(m_s - m_t))


def relation_matrix(features):
    """``G = f f^T`` with each row L2-normalised (torch ``F.normalize``: eps 1e-12 on the norm)."""
    f = _f32(features)
    return tf.math.l2_normalize(tf.matmul(f, f, transpose_b=True), axis=1, epsilon=1e-24)


def relation_distillation_loss(student_features, teacher_features, weight=RD_WEIGHT):
    """RD (spec A3.3): ``1000 MSE(G_S, G_T)`` between the batch relation matrices of the masked
    student's pooled features and the (constant) teacher's."""
    g_s = relation_matrix(student_features)
    g_t = relation_matrix(tf.stop_gradient(_f32(teacher_features)))
    return weight * tf.reduce_mean(tf.square(g_s - g_t))


def knowledge_learning_loss(logit_t, logit_ts_s1, weight=KNOWLEDGE_LEARNING_WEIGHT):
    """Knowledge learning (spec A3.4): ``3 KL(softmax(sg(logit_t)) || softmax(W_ts f_S1))``.

    ``logit_ts_s1`` is the masked student's pooled feature through ``W_ts = sg(W_t)``; the caller
    builds it with the stopped kernel, so only the masked student path learns from this term."""
    return weight * kl_batchmean(tf.stop_gradient(_f32(logit_t)), logit_ts_s1)


def knowledge_feedback_loss(
    logit_t, logit_s0, logit_t_on_s0, logit_s0_on_t, weight=KNOWLEDGE_FEEDBACK_WEIGHT
):
    """Knowledge feedback (spec A3.5): ``8 KL([logit_t; logit_s0] || [W_t f_S0; W_s0 f_T])`` over the
    ``2B`` stacked rows. The teacher's classifier must agree with itself on the student's clean
    feature and the student's classifier on the teacher's feature. **No stop-gradient**: the target
    is differentiated too, so the teacher learns from the student (joint learning)."""
    target = tf.concat([_f32(logit_t), _f32(logit_s0)], axis=0)
    inputs = tf.concat([_f32(logit_t_on_s0), _f32(logit_s0_on_t)], axis=0)
    return weight * kl_batchmean(target, inputs)


class IGKDTerms(NamedTuple):
    """``igkd_loss``'s result; a tuple whose first item is the total."""

    total: tf.Tensor
    baseline: tf.Tensor
    feature_distillation: tf.Tensor
    relation_distillation: tf.Tensor
    knowledge_learning: tf.Tensor
    knowledge_feedback: tf.Tensor


def igkd_loss(
    labels,
    epoch,
    *,
    logit_t,
    logit_s0,
    logit_s1,
    teacher_map,
    student_map_s1,
    teacher_features,
    student_features_s1,
    teacher_kernel,
    logit_ts_s1,
    logit_t_on_s0,
    logit_s0_on_t,
    distill: bool = True,
) -> IGKDTerms:
    """``L = L_CE + r_up(e) (FD + RD + KL_learn + KL_feedback)`` (spec A3.6).

    ``distill=False`` keeps only the baseline CE (the "no distillation" ablation)."""
    base = baseline_loss(labels, logit_t, logit_s0, logit_s1, epoch)
    if not distill:
        zero = tf.zeros_like(base)
        return IGKDTerms(base, base, zero, zero, zero, zero)
    fd = feature_distillation_loss(teacher_map, student_map_s1, teacher_kernel)
    rd = relation_distillation_loss(student_features_s1, teacher_features)
    kl = knowledge_learning_loss(logit_t, logit_ts_s1)
    kf = knowledge_feedback_loss(logit_t, logit_s0, logit_t_on_s0, logit_s0_on_t)
    total = base + ramp_up(epoch) * (fd + rd + kl + kf)
    return IGKDTerms(total, base, fd, rd, kl, kf)
