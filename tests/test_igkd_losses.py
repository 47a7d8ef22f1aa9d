"""IGKD loss terms against the spec's hand-computed worked examples (spec A3)."""

import numpy as np
import pytest
import tensorflow as tf

from kdface.losses import (
    baseline_loss,
    feature_distillation_loss,
    igkd_loss,
    kl_batchmean,
    knowledge_feedback_loss,
    knowledge_learning_loss,
    ramp_down,
    ramp_up,
    relation_distillation_loss,
)


@pytest.mark.parametrize(
    "epoch, value", [(1, 0.0601), (2, 0.2865), (3, 0.7316), (4, 1.0), (5, 1.0), (60, 1.0)]
)
def test_ramp_up(epoch, value):
    np.testing.assert_allclose(ramp_up(epoch), value, atol=5e-5)


@pytest.mark.parametrize(
    "epoch, value",
    [
        (1, 1.0),
        (3, 1.0),
        (4, 1.0),
        (5, 0.9608),
        (6, 0.8948),
        (10, 0.6977),
        (20, 0.5273),
        (30, 0.4718),
        (60, 0.4185),
    ],
)
def test_ramp_down(epoch, value):
    np.testing.assert_allclose(ramp_down(epoch), value, atol=5e-5)


def test_knowledge_learning_worked_example():
    # P = softmax([2,1,0]) = [.6652,.2447,.0900]; log Q = log_softmax([.5,.5,0]); KL = 0.17064
    np.testing.assert_allclose(kl_batchmean([[2.0, 1.0, 0.0]], [[0.5, 0.5, 0.0]]), 0.17064, atol=1e-5)
    np.testing.assert_allclose(
        knowledge_learning_loss([[2.0, 1.0, 0.0]], [[0.5, 0.5, 0.0]]), 0.51192, atol=3e-5
    )


def test_knowledge_feedback_worked_example():
    # rows (P [2,1,0] vs Q [1.5,.5,0]) -> 0.0117 and (P [1,0,0] vs Q [0,1,0]) -> 0.3642; mean x 8
    loss = knowledge_feedback_loss([[2.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]], [[1.5, 0.5, 0.0]], [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(loss, 1.50369, atol=3e-4)


def test_knowledge_feedback_has_no_stop_gradient():
    logit_t = tf.Variable([[2.0, 1.0, 0.0]])
    inputs = tf.Variable([[1.5, 0.5, 0.0]])
    with tf.GradientTape() as tape:
        loss = knowledge_feedback_loss(logit_t, [[1.0, 0.0, 0.0]], inputs, [[0.0, 1.0, 0.0]])
    g_target, g_input = tape.gradient(loss, [logit_t, inputs])
    assert np.abs(g_target.numpy()).max() > 1e-3  # the teacher learns through the target
    assert np.abs(g_input.numpy()).max() > 1e-3


def test_knowledge_learning_stops_the_teacher():
    logit_t = tf.Variable([[2.0, 1.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = knowledge_learning_loss(logit_t, [[0.5, 0.5, 0.0]])
    assert tape.gradient(loss, logit_t) is None


def _nhwc(*channels):
    return np.stack(channels, axis=-1)[None].astype(np.float32)  # (1, H, W, C)


def test_feature_distillation_worked_example():
    w_t = np.array([[1.0, 0.0], [0.0, 2.0]])  # paper W_t (K x C); wbar = [0.5, 1]
    f_t = _nhwc([[1, 0], [0, 1]], [[0, 1], [1, 0]])  # M_T = [[.5,1],[1,.5]]
    f_s = _nhwc([[0.5, 0], [0, 0.5]], [[0, 0], [0, 0]])  # M_S = [[.25,0],[0,.25]]
    loss = feature_distillation_loss(f_t, f_s, w_t.T)  # Keras kernel is (C, K)
    np.testing.assert_allclose(loss, 0.95625, atol=1e-6)


def test_feature_distillation_uses_class_mean_not_sum():
    w_t = np.array([[1.0, 0.0], [0.0, 2.0], [2.0, 1.0]])  # K = 3: wbar = [1, 1]
    f_t = _nhwc([[1.0]], [[0.0]])
    f_s = _nhwc([[0.0]], [[0.0]])
    np.testing.assert_allclose(feature_distillation_loss(f_t, f_s, w_t.T), 1.8, atol=1e-6)


def test_relation_distillation_worked_example():
    loss = relation_distillation_loss(np.eye(2), [[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(loss, 199.23, atol=0.01)


def test_relation_distillation_zero_row_is_finite():
    loss = relation_distillation_loss(np.zeros((2, 3)), np.ones((2, 3)))
    assert np.isfinite(loss.numpy())
    np.testing.assert_allclose(loss, 1000 * 0.5, atol=1e-3)  # G_T rows normalise to [.7071, .7071]


def test_baseline_and_total_compose_with_ramps():
    labels = [0, 1]
    lt = np.array([[2.0, 0.0], [0.0, 1.0]])
    ls0 = np.array([[1.0, 0.0], [0.0, 3.0]])
    ls1 = np.array([[0.0, 0.0], [1.0, 0.0]])
    ce = lambda logits: float(  # noqa: E731
        np.mean([-np.log(np.exp(r[y]) / np.exp(r).sum()) for r, y in zip(logits, labels, strict=True)])
    )
    np.testing.assert_allclose(
        baseline_loss(labels, lt, ls0, ls1, 10), ce(lt) + ce(ls0) + 0.6977 * ce(ls1), atol=1e-4
    )
    f_map = np.ones((2, 1, 1, 2), np.float32)
    kwargs = dict(
        logit_t=lt, logit_s0=ls0, logit_s1=ls1, teacher_map=f_map, student_map_s1=0.5 * f_map,
        teacher_features=[[1.0, 0.0], [0.0, 1.0]], student_features_s1=[[1.0, 1.0], [1.0, 0.0]],
        teacher_kernel=np.eye(2), logit_ts_s1=ls1, logit_t_on_s0=ls0, logit_s0_on_t=lt,
    )  # fmt: skip
    for epoch in (2, 7):
        terms = igkd_loss(labels, epoch, **kwargs)
        extra = terms.feature_distillation + terms.relation_distillation
        extra += terms.knowledge_learning + terms.knowledge_feedback
        np.testing.assert_allclose(terms.total, terms.baseline + ramp_up(epoch) * extra, rtol=1e-6)
        assert terms.relation_distillation > 0 and terms.feature_distillation > 0
    plain = igkd_loss(labels, 7, distill=False, **kwargs)
    np.testing.assert_allclose(plain.total, plain.baseline)
