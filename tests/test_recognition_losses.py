"""Margin logits, F-SKD / A-SKD similarity losses and their baselines against the spec's worked
examples (F-SKD spec §1.4, §3) and NumPy references written here; MarginHead serialisation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.errors import ConfigError, UnknownNameError
from kdface.heads import MarginHead
from kdface.losses import (
    arcface_logits,
    attention_similarity_loss,
    attention_transfer_loss,
    cosface_logits,
    cosine_logits,
    feature_similarity_loss,
    fitnet_loss,
    flat_cosine,
    logit_kd_loss,
    rkd_loss,
)


def unit_rows(cosines):
    """Class weights ``(K, 2)`` whose cosine with the embedding ``[1, 0]`` is each given value."""
    c = np.asarray(cosines, np.float64)
    return np.stack([c, np.sqrt(1.0 - c**2)], axis=1).astype(np.float32)


EMB = np.array([[1.0, 0.0]], np.float32)


# ---------------------------------------------------------------- margin logits (spec §1.4)


def test_cosface_worked_example():
    # cos = 0.6 on the target -> 30 (0.6 - 0.25) = 10.5; the other class cos 0.2 -> 30 * 0.2
    logits = cosface_logits(3.0 * EMB, unit_rows([0.2, 0.6]), [1]).numpy()
    np.testing.assert_allclose(logits, [[6.0, 10.5]], atol=1e-5)


def test_arcface_worked_example_and_non_target():
    logits = arcface_logits(EMB, unit_rows([0.6, -0.3]), [0]).numpy()
    # phi = 0.6 cos .5 - 0.8 sin .5 = 0.1430; 32 phi = 4.576; the non-target keeps s cos
    assert logits[0, 0] == pytest.approx(32 * (0.6 * math.cos(0.5) - 0.8 * math.sin(0.5)), abs=1e-4)
    assert logits[0, 0] == pytest.approx(4.576, abs=1e-3)
    assert logits[0, 1] == pytest.approx(32 * -0.3, abs=1e-5)


def test_arcface_threshold_branch():
    # cos(pi - 0.5) = -0.8776: cos = -0.9 is below it, so the target uses cos - m sin(pi - m)
    # = -0.9 - 0.2397, not phi = cos(theta + m) (-0.9988)
    logits = arcface_logits(EMB, unit_rows([-0.9, -0.85]), [0]).numpy()
    assert logits[0, 0] == pytest.approx(32 * (-0.9 - 0.5 * math.sin(math.pi - 0.5)), abs=1e-4)
    assert logits[0, 0] == pytest.approx(32 * -1.13971, abs=1e-3)
    # -0.85 is above the threshold: phi for it as a target
    phi = -0.85 * math.cos(0.5) - math.sqrt(1 - 0.85**2) * math.sin(0.5)
    assert arcface_logits(EMB, unit_rows([-0.9, -0.85]), [1]).numpy()[0, 1] == pytest.approx(
        32 * phi, abs=1e-4
    )


def test_arcface_easy_margin():
    w = unit_rows([0.6, -0.3])
    easy_pos = arcface_logits(EMB, w, [0], easy_margin=True).numpy()
    easy_neg = arcface_logits(EMB, w, [1], easy_margin=True).numpy()
    assert easy_pos[0, 0] == pytest.approx(4.576, abs=1e-3)  # cos > 0: the margin applies
    assert easy_neg[0, 1] == pytest.approx(32 * -0.3, abs=1e-5)  # cos <= 0: plain cos
    hard = arcface_logits(EMB, w, [1]).numpy()  # without easy_margin -0.3 gets phi
    phi = -0.3 * math.cos(0.5) - math.sqrt(1 - 0.09) * math.sin(0.5)
    assert hard[0, 1] == pytest.approx(32 * phi, abs=1e-4)


def test_arcface_clamp_keeps_cos_one_finite():
    # embedding equal to its class weight: cos = 1 exactly, the unclamped sqrt has an infinite gradient
    w = tf.Variable([[0.6, 0.8], [1.0, 0.0]])
    x = tf.Variable([[0.6, 0.8]])
    with tf.GradientTape() as tape:
        logits = arcface_logits(x, w, [0])
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits([0], logits))
    grads = tape.gradient(loss, [x, w])
    assert np.isfinite(logits.numpy()).all()
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    # the clamp leaves sin = sqrt(1 - (1 - 1.19e-7)^2) = 4.9e-4 (float32's resolution below 1): the
    # logit is within 32 * sin(0.5) * 4.9e-4 = 0.0075 of 32 cos(0.5)
    assert logits.numpy()[0, 0] == pytest.approx(32 * math.cos(0.5), abs=1e-2)


def test_cosine_logits_and_float32_under_float16_inputs():
    w = unit_rows([0.6, 0.2])
    np.testing.assert_allclose(cosine_logits(EMB, w, 30.0), [[18.0, 6.0]], atol=1e-5)
    out = cosface_logits(tf.constant(EMB, tf.float16), tf.constant(w, tf.float16), [0])
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [[10.5, 6.0]], atol=2e-2)


# ---------------------------------------------------------------- F-SKD (spec §3.1)


def nhwc(channels_first):
    """``(B, C, H, W)`` nested lists -> an NHWC float32 array."""
    return np.transpose(np.asarray(channels_first, np.float32), (0, 2, 3, 1))


FSKD_TEACHER = nhwc([[[[1, 2]], [[2, 0]]], [[[0, 1]], [[1, 1]]]])
FSKD_STUDENT = nhwc([[[[2, 1]], [[2, 1]]], [[[0, 2]], [[1, 0]]]])


def stage_with_term(term, shape):
    """A (teacher, student) stage of ``shape`` (B = 1) whose ``1 - cos`` is exactly ``term``."""
    c = 1.0 - term
    t = np.zeros(shape, np.float32)
    s = np.zeros(shape, np.float32)
    t.reshape(-1)[0] = 1.0
    s.reshape(-1)[:2] = [c, math.sqrt(1 - c * c)]
    return s, t


def test_flat_cosine_worked_example():
    np.testing.assert_allclose(
        flat_cosine(FSKD_STUDENT, FSKD_TEACHER), [8 / (3 * math.sqrt(10)), 3 / math.sqrt(15)], atol=1e-6
    )
    np.testing.assert_allclose(flat_cosine(FSKD_STUDENT, FSKD_TEACHER), [0.8433, 0.7746], atol=5e-5)


def test_feature_similarity_worked_example():
    stage1 = feature_similarity_loss([FSKD_STUDENT], [FSKD_TEACHER])
    assert float(stage1) == pytest.approx(0.1911, abs=5e-5)
    others = [
        stage_with_term(v, shp)
        for v, shp in [(0.10, (1, 2, 2, 3)), (0.05, (1, 1, 1, 5)), (0.02, (1, 1, 2, 2))]
    ]
    loss = feature_similarity_loss(
        [FSKD_STUDENT] + [s for s, _ in others], [FSKD_TEACHER] + [t for _, t in others]
    )
    exact = (1 - 8 / (3 * math.sqrt(10)) + 1 - 3 / math.sqrt(15)) / 2
    assert float(loss) == pytest.approx((exact + 0.17) / 4, abs=1e-6)
    assert float(loss) == pytest.approx(0.0903, abs=5e-5)
    assert 20 * float(loss) == pytest.approx(1.806, abs=1e-3)
    assert loss.dtype == tf.float32 and loss.shape == ()


# ---------------------------------------------------------------- A-SKD (spec §3.2)

CH_T = np.array([[0.9, 0.1, 0.5, 0.5]], np.float32)
CH_S = np.array([[0.5, 0.5, 0.5, 0.5]], np.float32)
SP_T = np.array([0.8, 0.2, 0.6, 0.4], np.float32).reshape(1, 2, 2, 1)
SP_S = np.array([0.6, 0.4, 0.6, 0.4], np.float32).reshape(1, 2, 2, 1)


def test_attention_similarity_worked_example():
    assert flat_cosine(CH_S, CH_T).numpy()[0] == pytest.approx(0.8704, abs=5e-5)
    assert flat_cosine(SP_S, SP_T).numpy()[0] == pytest.approx(0.9668, abs=5e-5)
    one = float(attention_similarity_loss([(CH_S, SP_S)], [(CH_T, SP_T)]))
    assert one == pytest.approx(0.1296 + 0.0332, abs=1e-4)
    assert 5 * one == pytest.approx(0.814, abs=5e-4)
    askd = float(attention_similarity_loss([(CH_S, SP_S)] * 24, [(CH_T, SP_T)] * 24, variant="askd"))
    fskd = float(attention_similarity_loss([(CH_S, SP_S)] * 24, [(CH_T, SP_T)] * 24, variant="fskd"))
    assert askd == pytest.approx(24 * one, rel=1e-5)  # summed over blocks
    assert fskd == pytest.approx(one / 2, rel=1e-5)  # (1/24) sum of the half terms
    assert fskd / 24 == pytest.approx((0.1628 / 2) / 24, abs=1e-5)  # each block's share before λ
    with pytest.raises(ValueError, match="variant"):
        attention_similarity_loss([(CH_S, SP_S)], [(CH_T, SP_T)], variant="mean")


# ---------------------------------------------------------------- baselines (spec §3.4)

RNG = np.random.default_rng(7)
S_STAGES = [
    RNG.normal(size=(3, 4, 4, 5)).astype(np.float32),
    RNG.normal(size=(3, 2, 2, 6)).astype(np.float32),
]
T_STAGES = [
    RNG.normal(size=(3, 4, 4, 5)).astype(np.float32),
    RNG.normal(size=(3, 2, 2, 6)).astype(np.float32),
]


def np_attention(f):
    a = (f.astype(np.float64) ** 2).sum(axis=-1)  # NHWC: channels last
    norms = np.sqrt((a**2).sum(axis=(1, 2), keepdims=True))
    return a / (norms + 1e-6)


def test_fitnet_and_attention_transfer_match_numpy():
    fit_ref = np.mean(
        [np.mean((s.astype(np.float64) - t) ** 2) for s, t in zip(S_STAGES, T_STAGES, strict=True)]
    )
    at_ref = np.mean(
        [np.mean((np_attention(s) - np_attention(t)) ** 2) for s, t in zip(S_STAGES, T_STAGES, strict=True)]
    )
    assert float(fitnet_loss(S_STAGES, T_STAGES)) == pytest.approx(fit_ref, rel=1e-5)
    assert float(attention_transfer_loss(S_STAGES, T_STAGES)) == pytest.approx(at_ref, rel=1e-4)


def np_smooth_l1(a, b):
    d = np.abs(a - b)
    return np.mean(np.where(d < 1, 0.5 * d * d, d - 0.5))


def np_rkd(s, t, wd=1.0, wa=2.0):
    def dist(e):
        n = len(e)
        d = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if i != j:
                    d[i, j] = math.sqrt(max(((e[i] - e[j]) ** 2).sum(), 1e-12))
        return d / d[d > 0].mean()

    def angle(e):
        n = len(e)
        out = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = max(np.linalg.norm(u), 1e-12), max(np.linalg.norm(v), 1e-12)
                    out[i, j, k] = (u / nu) @ (v / nv)
        return out.reshape(-1)

    s, t = s.astype(np.float64), t.astype(np.float64)
    return wd * np_smooth_l1(dist(s), dist(t)) + wa * np_smooth_l1(angle(s), angle(t))


def test_rkd_matches_numpy():
    s = RNG.normal(size=(5, 3)).astype(np.float32)
    t = 3.0 * RNG.normal(size=(5, 3)).astype(np.float32)  # large distances: smooth-L1's linear part too
    assert float(rkd_loss(s, t)) == pytest.approx(np_rkd(s, t), rel=1e-4)
    assert float(rkd_loss(s, t, 0.5, 0.0)) == pytest.approx(np_rkd(s, t, 0.5, 0.0), rel=1e-4)


def test_logit_kd_matches_numpy():
    s = RNG.normal(size=(4, 6)) * 5
    t = RNG.normal(size=(4, 6)) * 5

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    lp, lq = log_softmax(t / 4), log_softmax(s / 4)
    ref = 16 * np.sum(np.exp(lp) * (lp - lq)) / 4
    assert float(logit_kd_loss(s, t)) == pytest.approx(ref, rel=1e-5)
    assert float(logit_kd_loss(t, t)) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- gradients, XLA


def test_gradients_reach_the_student_only():
    s_vars = [tf.Variable(x) for x in S_STAGES]
    t_vars = [tf.Variable(x) for x in T_STAGES]
    cs, ct = tf.Variable(CH_S), tf.Variable(CH_T)
    ss, st = tf.Variable(SP_S), tf.Variable(SP_T)
    losses = {
        "fskd": lambda: feature_similarity_loss(s_vars, t_vars),
        "askd": lambda: attention_similarity_loss([(cs, ss)], [(ct, st)]),
        "fitnet": lambda: fitnet_loss(s_vars, t_vars),
        "at": lambda: attention_transfer_loss(s_vars, t_vars),
    }
    for name, fn in losses.items():
        with tf.GradientTape(persistent=True) as tape:
            loss = fn()
        student = s_vars if name != "askd" else [cs, ss]
        teacher = t_vars if name != "askd" else [ct, st]
        grads_s = tape.gradient(loss, student)
        grads_t = tape.gradient(loss, teacher)
        assert all(
            g is not None and np.isfinite(g.numpy()).all() and np.abs(g.numpy()).sum() > 0 for g in grads_s
        ), name
        assert all(g is None for g in grads_t), name


def test_zero_student_map_has_finite_gradient():
    # max(norm, eps) on a zero map: cos = 0 (loss 1) and a finite gradient, where sqrt(0) would give NaN
    teacher = S_STAGES[0][:2, :2, :2, :3]
    s = tf.Variable(np.zeros((2, 2, 2, 3), np.float32))
    with tf.GradientTape(persistent=True) as tape:
        fskd = feature_similarity_loss([s], [teacher])
        at = attention_transfer_loss([s], [teacher])
    assert float(fskd) == pytest.approx(1.0)
    assert float(at) == pytest.approx(np.mean(np_attention(teacher) ** 2), rel=1e-5)
    assert np.isfinite(tape.gradient(fskd, s).numpy()).all()
    assert np.isfinite(tape.gradient(at, s).numpy()).all()


def test_losses_compile_under_xla():
    @tf.function(jit_compile=True)
    def all_losses(s1, t1, cs, ct, ss, st, es, et):
        return tf.stack(
            [
                feature_similarity_loss([s1], [t1]),
                attention_similarity_loss([(cs, ss)], [(ct, st)], variant="fskd"),
                attention_transfer_loss([s1], [t1]),
                fitnet_loss([s1], [t1]),
                rkd_loss(es, et),
                logit_kd_loss(es, et),
            ]
        )

    es = RNG.normal(size=(5, 3)).astype(np.float32)
    et = RNG.normal(size=(5, 3)).astype(np.float32)
    args = (S_STAGES[0], T_STAGES[0], CH_S, CH_T, SP_S, SP_T, es, et)
    compiled = all_losses(*args).numpy()
    eager = np.array(
        [
            float(feature_similarity_loss([S_STAGES[0]], [T_STAGES[0]])),
            float(attention_similarity_loss([(CH_S, SP_S)], [(CH_T, SP_T)], variant="fskd")),
            float(attention_transfer_loss([S_STAGES[0]], [T_STAGES[0]])),
            float(fitnet_loss([S_STAGES[0]], [T_STAGES[0]])),
            float(rkd_loss(es, et)),
            float(logit_kd_loss(es, et)),
        ]
    )
    np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)


def test_mismatched_stage_counts_raise():
    with pytest.raises(ValueError, match="2 student tensors but 1 teacher"):
        feature_similarity_loss(S_STAGES, T_STAGES[:1])


# ---------------------------------------------------------------- MarginHead


def test_margin_head_defaults_and_init():
    head = MarginHead(7)
    assert (head.margin, head.scale, head.margin_value) == ("cosface", 30.0, 0.25)
    arc = MarginHead(7, "arcface")
    assert (arc.scale, arc.margin_value, arc.easy_margin) == (32.0, 0.5, False)
    head.build((None, 512))
    kernel = head.kernel.numpy()
    assert kernel.shape == (7, 512)
    assert np.abs(kernel).max() <= math.sqrt(6 / (7 + 512))  # torch xavier_uniform_ bound on (K, D)
    with pytest.raises(UnknownNameError, match="did you mean 'arcface'"):
        MarginHead(3, "arcfase")
    with pytest.raises(ConfigError):
        MarginHead(3, "softmax", margin_value=0.3)
    with pytest.raises(ConfigError):
        MarginHead(3, "cosface", easy_margin=True)


def test_margin_head_call_paths():
    head = MarginHead(3, "arcface", easy_margin=True)
    emb = RNG.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    with_labels = head(emb, labels).numpy()
    kernel = head.kernel.numpy()
    np.testing.assert_allclose(
        with_labels, arcface_logits(emb, kernel, labels, easy_margin=True).numpy(), atol=1e-5
    )
    plain = head(emb).numpy()
    cos = (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (
        kernel / np.linalg.norm(kernel, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(plain, 32 * cos, atol=1e-4)
    softmax = MarginHead(3, "softmax", scale=10.0)
    softmax.build((None, 5))
    softmax.kernel.assign(kernel)
    np.testing.assert_allclose(softmax(emb, labels).numpy(), 10 * cos, atol=1e-4)


def test_margin_head_config_round_trip():
    head = MarginHead(11, "arcface", scale=64.0, margin_value=0.4, easy_margin=True, name="margin")
    clone = MarginHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    assert (clone.num_classes, clone.margin, clone.scale, clone.margin_value, clone.easy_margin) == (
        11,
        "arcface",
        64.0,
        0.4,
        True,
    )


def test_margin_head_save_load_keras(tmp_path):
    emb_in = keras.Input((5,), name="emb")
    label_in = keras.Input((), dtype="int32", name="label")
    head = MarginHead(4, "cosface", name="margin")
    train_model = keras.Model([emb_in, label_in], head(emb_in, label_in))
    infer_model = keras.Model(emb_in, head(emb_in))
    emb = RNG.normal(size=(3, 5)).astype(np.float32)
    labels = np.array([3, 0, 1], np.int32)
    for model, args in ((train_model, [emb, labels]), (infer_model, emb)):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert isinstance(loaded.get_layer("margin"), MarginHead)
        np.testing.assert_allclose(loaded.predict(args, verbose=0), model.predict(args, verbose=0), atol=1e-6)
    # the margin is only on the labelled class
    diff = train_model.predict([emb, labels], verbose=0) - infer_model.predict(emb, verbose=0)
    expected = np.zeros((3, 4), np.float32)
    expected[np.arange(3), labels] = -30 * 0.25
    np.testing.assert_allclose(diff, expected, atol=1e-4)
