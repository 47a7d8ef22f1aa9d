"""KD-Loss against the spec's hand-computed worked example (spec §3.6)."""

import numpy as np
import pytest
import tensorflow as tf

from kdface.losses import aloss_elementwise, kd_loss, main_loss_elementwise

G = [0.10, -0.20, 0.30, 0.05]
A = [0.12, -0.18, 0.30, 0.09]  # Tough
S = [0.15, -0.25, 0.26, 0.02]  # Tolerant
P = [0.20, -0.23, 0.31, 0.052]  # student


def test_worked_example_value_and_parts():
    terms = kd_loss([G], [P], [A], [S])
    assert terms[0] is terms.total
    np.testing.assert_allclose(terms.main, 0.070875, atol=1e-6)
    np.testing.assert_allclose(terms.aloss_tough, 0.04275, atol=1e-6)
    np.testing.assert_allclose(terms.aloss_tolerant, 0.0175, atol=1e-6)
    np.testing.assert_allclose(terms.total, 0.2020, atol=1e-6)


def test_worked_example_elementwise_regions():
    np.testing.assert_allclose(aloss_elementwise(G, P, A, 1.9, -0.45), [0.152, 0.019, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(aloss_elementwise(G, P, S, 1.8, -0.4), [0.090, -0.008, -0.012, 0.0], atol=1e-6)
    np.testing.assert_allclose(main_loss_elementwise(G, P, S), [0.1575, 0.09, 0.03, 0.006], atol=1e-6)


def test_worked_example_gradient():
    p = tf.Variable([P])
    with tf.GradientTape() as tape:
        total = kd_loss([G], p, [A], [S]).total
    grad = tape.gradient(total, p).numpy()[0]
    np.testing.assert_allclose(grad, [1.025, -2.075, 1.6, 1.5], atol=1e-5)


def test_teachers_get_no_gradient():
    a, s = tf.Variable([A]), tf.Variable([S])
    with tf.GradientTape() as tape:
        total = kd_loss([G], [P], a, s).total
    assert all(g is None or np.all(g.numpy() == 0) for g in tape.gradient(total, [a, s]))


@pytest.mark.parametrize("teacher_on_other_side", [False, True])
def test_aloss_closed_form(teacher_on_other_side):
    # e > d: alpha*(e-d); beta*d <= e <= d: alpha_bar*(d-e); e < beta*d: 0. Mirroring makes the side irrelevant.
    g, d = 0.0, 0.1
    t = -d if teacher_on_other_side else d
    for e, want in [(0.3, 1.9 * 0.2), (0.05, -0.45 * 0.05), (0.01, 0.0), (0.0, 0.0)]:
        got = aloss_elementwise([g], [g + e], [t], 1.9, -0.45).numpy()[0]
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_teacher_equal_to_ground_truth_gives_zero():
    np.testing.assert_allclose(aloss_elementwise([0.2], [0.5], [0.2], 1.9, -0.45), [0.0])


def test_main_loss_continuous_at_threshold():
    below = main_loss_elementwise([0.0], [0.1 - 1e-6], [0.1]).numpy()[0]
    above = main_loss_elementwise([0.0], [0.1 + 1e-6], [0.1]).numpy()[0]
    assert abs(below - above) < 1e-4


def test_gradient_points_towards_ground_truth_everywhere():
    rng = np.random.default_rng(0)
    g, a, s, p = (rng.normal(size=(4, 50)).astype("float32") * 0.1 for _ in range(4))
    pv = tf.Variable(p)
    with tf.GradientTape() as tape:
        total = kd_loss(g, pv, a, s).total
    grad = tape.gradient(total, pv).numpy()
    # A descent step moves every coordinate towards its ground truth (spec §3.5).
    assert np.all(grad * np.sign(p - g) >= 0)
