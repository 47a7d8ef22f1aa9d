"""Feature- and attention-similarity distillation losses for low-resolution face recognition, and the
baselines the later F-SKD code compares against (spec F-SKD §3).

* :func:`feature_similarity_loss`: F-SKD (Shin et al. 2023) on the 4 stage outputs;
* :func:`attention_similarity_loss`: A-SKD (Shin et al., ECCV 2022) on the CBAM attention maps;
* :func:`fitnet_loss`, :func:`attention_transfer_loss`, :func:`rkd_loss`, :func:`logit_kd_loss`:
  the baselines of the later code (§3.4).

Arguments are ``(student, teacher)``; the teacher side is always wrapped in ``tf.stop_gradient``, so
only the student learns from these terms. Feature maps are NHWC. Every function returns a float32
scalar, casts its inputs to float32 first (a float16 map's sum of squares overflows), and has no
Python control flow on tensor values, so it runs inside ``tf.function`` and under XLA.

The loss weights (F-SKD λ = 20, A-SKD β = 5, FitNet 1.5, AT 1000, RKD 40) are applied by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

COSINE_EPS = 1e-8  # torch F.cosine_similarity
AT_EPS = 1e-6  # the original's attention-map normaliser: A / (||A|| + 1e-6)
RKD_EPS = 1e-12  # lenscloth/RKD pdist clamp on squared distances; torch F.normalize eps


def _f32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _flatten(x):
    """``(B, ...) -> (B, prod(...))`` with a dynamic batch size."""
    x = _f32(x)
    return tf.reshape(x, [tf.shape(x)[0], -1])


def _safe_norm(x, eps, axis=-1, keepdims=False):
    """``max(||x||, eps)`` computed as ``sqrt(max(||x||^2, eps^2))``: the same value, but a zero vector
    gets a zero gradient instead of NaN (``sqrt`` has no derivative at 0)."""
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(x), axis=axis, keepdims=keepdims), eps * eps))


def _check_pairs(student, teacher, what: str) -> None:
    if len(student) != len(teacher):
        raise ValueError(f"{what}: {len(student)} student tensors but {len(teacher)} teacher tensors")
    if not len(student):
        raise ValueError(f"{what}: no tensors given")


def _mean_over(terms):
    return tf.add_n(terms) / float(len(terms))


def flat_cosine(a, b):
    """Per-sample cosine of the fully flattened tensors, ``(B,)``:
    ``u.v / (max(||u||, 1e-8) max(||v||, 1e-8))`` (torch ``F.cosine_similarity`` on ``view(B, -1)``).

    Flattening NHWC instead of NCHW permutes both vectors the same way, so the value is unchanged."""
    u, v = _flatten(a), _flatten(b)
    dot = tf.reduce_sum(u * v, axis=-1)
    return dot / (_safe_norm(u, COSINE_EPS) * _safe_norm(v, COSINE_EPS))


def _cosine_term(student, teacher):
    """``mean_b (1 - cos(student_b, sg(teacher_b)))``."""
    return tf.reduce_mean(1.0 - flat_cosine(student, tf.stop_gradient(_f32(teacher))))


def feature_similarity_loss(student_stages: Sequence, teacher_stages: Sequence):
    """F-SKD: ``(1/4) sum_i mean_b [1 - cos(vec F^S_i(b), vec F^T_i(b))]`` over the stage outputs.

    The stages weigh equally whatever their size (each term is a cosine, in ``[0, 2]``); the teacher
    carries no gradient. Total loss = CE + 20 * this (λ by the caller).
    """
    _check_pairs(student_stages, teacher_stages, "feature_similarity_loss")
    return _mean_over([_cosine_term(s, t) for s, t in zip(student_stages, teacher_stages, strict=True)])


# The originals' names for the two reductions: the ECCV A-SKD repo sums, the F-SKD repo's A_SKD averages.
ATTENTION_VARIANTS = {"askd": "sum", "fskd": "mean"}


def attention_similarity_loss(
    student_maps: Sequence, teacher_maps: Sequence, reduction: str = "sum", *, variant: str | None = None
):
    """A-SKD: cosine distance between student and teacher CBAM attention maps, block by block.

    ``student_maps`` / ``teacher_maps`` hold one ``(channel, spatial)`` pair per CBAM block (channel
    ``(B, C)``, spatial ``(B, H, W, 1)``); each map gives a term ``1 - cos`` (mean over the batch).

    * ``reduction="sum"`` (ECCV repo, ``variant="askd"``): ``sum_j [(1 - cos c_j) + (1 - cos s_j)]``,
      **summed** over all blocks and both maps, not averaged (β = 5 by the caller); the original feeds
      pre-sigmoid maps.
    * ``reduction="mean"`` (the ``A_SKD`` option of the F-SKD repo, ``variant="fskd"``): the mean of
      the same terms, ``(1/J) sum_j ½[(1 - cos c_j) + (1 - cos s_j)]`` (λ by the caller); that repo
      feeds post-sigmoid maps.

    ``variant`` (or ``reduction``) may name the original instead (:data:`ATTENTION_VARIANTS`).
    """
    if variant is not None:
        if variant not in ATTENTION_VARIANTS:
            raise ValueError(f"attention_similarity_loss: variant must be 'askd' or 'fskd', got {variant!r}")
        reduction = variant
    reduction = ATTENTION_VARIANTS.get(reduction, reduction)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"attention_similarity_loss: reduction must be 'sum' or 'mean', got {reduction!r}")
    _check_pairs(student_maps, teacher_maps, "attention_similarity_loss")
    blocks = []
    for j, (s_pair, t_pair) in enumerate(zip(student_maps, teacher_maps, strict=True)):
        if len(s_pair) != 2 or len(t_pair) != 2:
            raise ValueError(f"attention_similarity_loss: block {j} is not a (channel, spatial) pair")
        blocks.append(_cosine_term(s_pair[0], t_pair[0]) + _cosine_term(s_pair[1], t_pair[1]))
    if reduction == "sum":
        return tf.add_n(blocks)
    return 0.5 * _mean_over(blocks)


def _mse(a, b):
    return tf.reduce_mean(tf.square(a - b))


def fitnet_loss(student_stages: Sequence, teacher_stages: Sequence):
    """FitNet: mean over the stages of ``MSE(F^S_i, F^T_i)`` (mean over every element; λ = 1.5 by the
    caller). Student and teacher stages must have the same shapes (no hint layer here)."""
    _check_pairs(student_stages, teacher_stages, "fitnet_loss")
    return _mean_over(
        [
            _mse(_f32(s), tf.stop_gradient(_f32(t)))
            for s, t in zip(student_stages, teacher_stages, strict=True)
        ]
    )


def attention_map(feature_map):
    """Zagoruyko & Komodakis' spatial attention, ``A = sum_c F^2`` ``(B, H, W)``, divided by
    ``||A||_2 + 1e-6`` over ``H x W`` (the original's normaliser)."""
    a = tf.reduce_sum(tf.square(_f32(feature_map)), axis=-1)
    # sqrt(max(., 1e-30)): the same value in float32 once 1e-6 is added, but finite gradients at A = 0
    norm = tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(a), axis=[1, 2], keepdims=True), 1e-30))
    return a / (norm + AT_EPS)


def attention_transfer_loss(student_stages: Sequence, teacher_stages: Sequence):
    """AT: mean over the stages of ``MSE(A(F^S_i), A(F^T_i))`` with :func:`attention_map`
    (λ = 1000 by the caller). Channel counts may differ; spatial sizes must match."""
    _check_pairs(student_stages, teacher_stages, "attention_transfer_loss")
    return _mean_over(
        [
            _mse(attention_map(s), tf.stop_gradient(attention_map(t)))
            for s, t in zip(student_stages, teacher_stages, strict=True)
        ]
    )


def _smooth_l1(a, b):
    """torch ``F.smooth_l1_loss`` (beta 1, mean): ``0.5 d^2`` where ``|d| < 1``, else ``|d| - 0.5``."""
    d = tf.abs(a - b)
    return tf.reduce_mean(tf.where(d < 1.0, 0.5 * tf.square(d), d - 0.5))


def _normalised_distances(emb):
    """Pairwise Euclidean distances ``(B, B)`` (squared distances clamped at 1e-12 before the root,
    diagonal set to 0), divided by their mean over the positive entries."""
    sq = tf.reduce_sum(tf.square(emb), axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * tf.matmul(emb, emb, transpose_b=True)
    off_diagonal = 1.0 - tf.eye(tf.shape(emb)[0], dtype=tf.float32)
    d = tf.sqrt(tf.maximum(d2, RKD_EPS)) * off_diagonal
    positive = tf.cast(d > 0.0, tf.float32)
    mean = tf.reduce_sum(d * positive) / tf.maximum(tf.reduce_sum(positive), 1.0)
    return d / mean


def _angles(emb):
    """``(B^3,)`` cosines of the angle at ``e_i`` between ``e_j`` and ``e_k``: ``<n_ij, n_ik>`` with
    ``n_ij = (e_j - e_i) / max(||e_j - e_i||, 1e-12)`` (zero for ``j = i``)."""
    diff = emb[None, :, :] - emb[:, None, :]  # [i, j] = e_j - e_i
    unit = diff / _safe_norm(diff, RKD_EPS, axis=2, keepdims=True)
    return tf.reshape(tf.matmul(unit, unit, transpose_b=True), [-1])


def rkd_loss(student_emb, teacher_emb, distance_weight=1.0, angle_weight=2.0):
    """Relational KD (Park et al. 2019) on the embeddings ``(B, D)``, as lenscloth/RKD computes it:
    ``w_d smoothL1(psi_D^S, psi_D^T) + w_a smoothL1(psi_A^S, psi_A^T)``.

    ``psi_D``: pairwise distances, each side divided by its own mean positive distance; ``psi_A``:
    all ``B^3`` angle cosines (memory ``B^2 D`` floats: 134 MB at B = 256, D = 512). λ = 40 by the
    caller."""
    s = _f32(student_emb)
    t = tf.stop_gradient(_f32(teacher_emb))
    distance = _smooth_l1(_normalised_distances(s), _normalised_distances(t))
    angle = _smooth_l1(_angles(s), _angles(t))
    return float(distance_weight) * distance + float(angle_weight) * angle


def logit_kd_loss(student_logits, teacher_logits, temperature=4.0):
    """Hinton KD: ``T^2 KL(softmax(z_T / T) || softmax(z_S / T))``, summed over classes and averaged
    over the batch (torch ``kl_div(..., "batchmean")``). In the later F-SKD code the logits are the
    margin heads' outputs (scale and margin included)."""
    t = float(temperature)
    log_p = tf.nn.log_softmax(tf.stop_gradient(_f32(teacher_logits)) / t, axis=-1)
    log_q = tf.nn.log_softmax(_f32(student_logits) / t, axis=-1)
    rows = tf.cast(tf.shape(log_p)[0], tf.float32)
    return t * t * tf.reduce_sum(tf.exp(log_p) * (log_p - log_q)) / rows
