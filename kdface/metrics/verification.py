"""Face-recognition evaluation: 10-fold verification accuracy (LFW / AgeDB-30 / CFP-FP protocol of
Face_Pytorch and the F-SKD / A-SKD code, spec F-SKD §6.1), TAR at FAR with ROC curves, and closed-set
CMC identification for TinyFace (§6.2).

Pure NumPy on features already extracted (for verification: the 1024-d concatenation of the
embeddings of an image and its mirror, not yet normalised; :func:`verification_10_fold` centres and
normalises them per fold, as the original does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from kdface.io.atomic import atomic_path

THRESHOLD_STEPS = 10000  # thresholds k / 10000 for k = -10000..10000
DISTRACTOR_LABEL = -100  # TinyFace's Gallery_Distractor images
# pairs per fold of the named benchmarks (pair_index // size is the fold); others split evenly
FOLD_SIZES = {"lfw": 600, "agedb_30": 600, "agedb30": 600, "agedb": 600, "cfp_fp": 700, "cfpfp": 700}
NUM_FOLDS = 10


@dataclasses.dataclass(frozen=True, eq=False)
class VerificationResult:
    """Per-fold accuracies (fractions) and thresholds, in fold-id order, and their mean and standard
    deviation (``np.std``, ddof 0). Papers report ``100 * mean``."""

    accuracies: np.ndarray
    thresholds: np.ndarray
    mean: float
    std: float


def _as_issame(issame, n: int) -> np.ndarray:
    arr = np.asarray(issame).reshape(-1)
    if arr.size != n:
        raise ValueError(f"issame has {arr.size} entries for {n} pairs")
    if arr.dtype != bool:
        values = np.unique(arr)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"issame must be booleans (or 0/1), got values {values[:5].tolist()}")
        arr = arr.astype(bool)
    return arr


def _as_scores(scores) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError(f"{int((~np.isfinite(arr)).sum())} score(s) are NaN or infinite")
    return arr


def threshold_grid(thr_num: int = THRESHOLD_STEPS) -> np.ndarray:
    """``linspace(-1, 1, 2 thr_num + 1)``, computed as the original does (``k / thr_num``), so every
    threshold is the correctly rounded ``k / thr_num`` and exact ties behave identically."""
    return np.arange(-thr_num, thr_num + 1, dtype=np.float64) / thr_num


def verification_accuracy(scores, issame, threshold: float) -> float:
    """``[#(same and score > t) + #(diff and score < t)] / n``: **strict** on both sides, so a score
    equal to ``t`` counts as wrong whatever the pair is (the original's rule)."""
    scores = _as_scores(scores)
    issame = _as_issame(issame, scores.size)
    correct = np.count_nonzero(scores[issame] > threshold) + np.count_nonzero(scores[~issame] < threshold)
    return correct / scores.size


def best_threshold(scores, issame, thr_num: int = THRESHOLD_STEPS) -> float:
    """The mean of **all** thresholds of :func:`threshold_grid` at which :func:`verification_accuracy`
    is maximal, as the original picks it (so the mean itself need not be a maximiser when the
    maximisers form separate intervals).

    Vectorised: with the same-pair and different-pair scores sorted, ``#(same > t)`` and
    ``#(diff < t)`` are ``searchsorted`` counts, so all 20,001 thresholds cost ``O(T log n)``.
    """
    scores = _as_scores(scores)
    issame = _as_issame(issame, scores.size)
    grid = threshold_grid(thr_num)
    same = np.sort(scores[issame])
    diff = np.sort(scores[~issame])
    correct = (same.size - np.searchsorted(same, grid, side="right")) + np.searchsorted(
        diff, grid, side="left"
    )
    return float(np.mean(grid[correct == correct.max()]))


def verification_folds(num_pairs: int, dataset: str) -> np.ndarray:
    """Fold id of every pair, ``(P,)`` int: ``index // 600`` for LFW and AgeDB-30, ``// 700`` for
    CFP-FP (the original loaders' split), and for any other name ``arange(P) * 10 // P``, ten
    contiguous folds as equal as possible (CALFW/CPLFW's 6,000 pairs give the same ``// 600`` split).

    ``dataset`` is matched case-insensitively, ignoring a ``.bin`` suffix and ``-``/``_`` (``"AgeDB-30"``,
    ``"agedb_30.bin"``). A named benchmark whose pair count does not give 10 folds (a truncated file)
    raises ``ValueError`` rather than silently evaluating on a different split.
    """
    num_pairs = int(num_pairs)
    if num_pairs < NUM_FOLDS:
        raise ValueError(f"{num_pairs} pairs cannot make {NUM_FOLDS} folds")
    key = str(dataset).lower().removesuffix(".bin").replace("-", "_")
    size = FOLD_SIZES.get(key)
    index = np.arange(num_pairs)
    if size is None:
        return index * NUM_FOLDS // num_pairs
    if (num_pairs - 1) // size != NUM_FOLDS - 1:
        raise ValueError(
            f"{dataset}: {num_pairs} pairs with {size} pairs per fold make {(num_pairs - 1) // size + 1} "
            f"folds, not {NUM_FOLDS} (expected {size * (NUM_FOLDS - 1) + 1}..{size * NUM_FOLDS} pairs)"
        )
    return index // size


def _fold_ids(folds, num_pairs: int) -> np.ndarray:
    if np.ndim(folds) == 0:
        fold_size = int(folds)
        if fold_size < 1:
            raise ValueError(f"fold size must be positive, got {folds}")
        return np.arange(num_pairs) // fold_size
    ids = np.asarray(folds).reshape(-1)
    if ids.size != num_pairs:
        raise ValueError(f"folds has {ids.size} entries for {num_pairs} pairs")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"fold ids must be integers, got dtype {ids.dtype}")
    return ids


def _normalised_rows(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.sum(np.square(x), axis=1, keepdims=True))


def verification_10_fold(
    features_left, features_right, issame, folds, thr_num: int = THRESHOLD_STEPS
) -> VerificationResult:
    """The 10-fold verification protocol of the original code, fold by fold:

    1. ``mu`` = mean of all left and right features of the *other* folds; subtract it from every
       feature and L2-normalise; the score of a pair is the dot product;
    2. the threshold is :func:`best_threshold` on the other folds' scores (mean of every maximising
       ``t`` over ``{-1, -0.9999, ..., 1}``);
    3. the fold's accuracy is :func:`verification_accuracy` at that threshold (strict inequalities).

    ``features_left`` / ``features_right``: ``(P, D)``; ``issame``: ``(P,)`` booleans; ``folds``: fold
    ids ``(P,)`` (see :func:`verification_folds`) or an int fold size (``index // size``). Folds are
    taken in sorted id order. Scores are computed in the features' float dtype (float32 features stay
    float32, as in the original) and compared with the thresholds in float64.
    """
    left = np.asarray(features_left)
    right = np.asarray(features_right)
    if left.ndim != 2 or left.shape != right.shape:
        raise ValueError(
            f"features_left and features_right must both be (P, D); got {left.shape} and {right.shape}"
        )
    if not np.issubdtype(left.dtype, np.floating):
        left, right = left.astype(np.float64), right.astype(np.float64)
    right = right.astype(left.dtype, copy=False)
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        raise ValueError("features contain NaN or infinite values")
    num_pairs = left.shape[0]
    same = _as_issame(issame, num_pairs)
    fold_of = _fold_ids(folds, num_pairs)
    fold_list = np.unique(fold_of)
    if fold_list.size < 2:
        raise ValueError(f"need at least 2 folds, got {fold_list.size}")
    accuracies, thresholds = [], []
    for fold in fold_list:
        test = fold_of == fold
        train = ~test
        mu = np.mean(np.concatenate([left[train], right[train]], axis=0), axis=0, keepdims=True)
        scores = np.sum(_normalised_rows(left - mu) * _normalised_rows(right - mu), axis=1)
        threshold = best_threshold(scores[train], same[train], thr_num)
        thresholds.append(threshold)
        accuracies.append(verification_accuracy(scores[test], same[test], threshold))
    acc = np.asarray(accuracies, dtype=np.float64)
    thr = np.asarray(thresholds, dtype=np.float64)
    acc.setflags(write=False)
    thr.setflags(write=False)
    return VerificationResult(accuracies=acc, thresholds=thr, mean=float(acc.mean()), std=float(acc.std()))


class RocCurve(NamedTuple):
    """ROC points from the strictest threshold down: ``fpr``, ``tpr`` and the score ``thresholds``
    (``inf`` first, the ``(0, 0)`` point; a pair is accepted when its score ``>=`` the threshold)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_curve_points(scores, issame) -> RocCurve:
    """Every point of the ROC curve, one per distinct score (``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``; computed here because scikit-learn is not a kdface dependency).
    Needs at least one same and one different pair."""
    scores = _as_scores(scores)
    same = _as_issame(issame, scores.size)
    positives = int(np.count_nonzero(same))
    negatives = scores.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError(f"an ROC curve needs same and different pairs; got {positives} and {negatives}")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    tps = np.cumsum(same[order])[last_of_group]
    fps = last_of_group + 1 - tps
    fpr = np.r_[0.0, fps / negatives]
    tpr = np.r_[0.0, tps / positives]
    return RocCurve(fpr, tpr, np.r_[np.inf, sorted_scores[last_of_group]])


def tar_at_far(scores, issame, fars: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)) -> dict[float, float]:
    """True-accept rate at each false-accept rate, ``{far: tar}``, read off the piecewise-linear ROC
    curve (what ``np.interp`` over ``sklearn.metrics.roc_curve`` gives; at a FAR where the curve is
    vertical, the top of that step).

    A FAR below ``1 / num_negatives`` is not measurable with this many different pairs: its TAR is
    NaN (not the interpolated value, which would only reflect the line to ``(0, 0)``)."""
    scores = _as_scores(scores)
    same = _as_issame(issame, scores.size)
    fpr, tpr, _ = roc_curve_points(scores, same)  # raises without same or different pairs
    negatives = int(np.count_nonzero(~same))
    result = {}
    for far in fars:
        far_value = float(far)
        if not 0.0 <= far_value <= 1.0:
            raise ValueError(f"a FAR must be in [0, 1], got {far}")
        if far_value < 1.0 / negatives:
            result[far] = float("nan")
            continue
        k = int(np.searchsorted(fpr, far_value, side="right")) - 1  # last point with fpr <= far
        if fpr[k] == far_value or k == fpr.size - 1:
            result[far] = float(tpr[k])
        else:
            slope = (tpr[k + 1] - tpr[k]) / (fpr[k + 1] - fpr[k])
            result[far] = float(tpr[k] + (far_value - fpr[k]) * slope)
    return result


def plot_roc(curves: Mapping[str, Sequence[np.ndarray]], path, title: str = "ROC", min_far: float = 1e-5):
    """Save ROC curves (TAR against FAR, FAR on a log axis from ``min_far`` to 1) to a PNG at ``path``.

    ``curves`` maps a legend label to ``(fpr, tpr)`` (a :class:`RocCurve` works too); the Agg canvas
    is used directly, so pyplot's global state is untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, curve in curves.items():
        fpr, tpr = np.asarray(curve[0], np.float64), np.asarray(curve[1], np.float64)
        keep = fpr > 0  # log axis
        ax.plot(fpr[keep], tpr[keep], label=str(label), linewidth=1.6)
    ax.set_xscale("log")
    ax.set_xlim(min_far, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("FAR (false accept rate)")
    ax.set_ylabel("TAR (true accept rate)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if curves:
        ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png")
    return path


def cmc_ranks(
    probe_features,
    probe_labels,
    gallery_features,
    gallery_labels,
    ranks: Sequence[int] = (1, 5, 10, 20),
    chunk_elements: int = 1 << 24,
) -> dict[int, float]:
    """Closed-set identification (CMC), ``{rank: accuracy}``: a probe is a hit at rank ``k`` when a
    gallery image of its identity is among the ``k`` gallery images most similar to it (cosine).

    Gallery distractors carry label ``-100`` (:data:`DISTRACTOR_LABEL`) and only compete. As in the
    TinyFace code, probes without any mate in the gallery are left out of the denominator. The rank
    of a probe is ``1 + #(gallery images scoring strictly above its best mate)``: a non-mate that ties
    the best mate exactly does not push it down (the original's ``argsort`` order decides such ties).
    Similarities are computed ``chunk_elements`` at a time (probe rows x gallery size), so TinyFace's
    ~157k-image gallery never needs the full matrix.
    """
    probes = np.asarray(probe_features, dtype=np.float32)
    gallery = np.asarray(gallery_features, dtype=np.float32)
    p_labels = np.asarray(probe_labels).reshape(-1)
    g_labels = np.asarray(gallery_labels).reshape(-1)
    if probes.ndim != 2 or gallery.ndim != 2 or probes.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"probe and gallery features must be (N, D) with the same D; got {probes.shape} and {gallery.shape}"
        )
    if p_labels.size != probes.shape[0] or g_labels.size != gallery.shape[0]:
        raise ValueError(
            f"{p_labels.size} probe labels for {probes.shape[0]} probes, "
            f"{g_labels.size} gallery labels for {gallery.shape[0]} gallery images"
        )
    if np.any(p_labels == DISTRACTOR_LABEL):
        raise ValueError(f"a probe carries the distractor label {DISTRACTOR_LABEL}")
    ranks = [int(k) for k in ranks]
    if any(k < 1 for k in ranks):
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    probes = _normalised_rows(probes)
    gallery = _normalised_rows(gallery)
    rows = max(1, int(chunk_elements) // max(1, gallery.shape[0]))
    rank_of = np.empty(probes.shape[0], dtype=np.int64)
    has_mate = np.empty(probes.shape[0], dtype=bool)
    for start in range(0, probes.shape[0], rows):
        stop = start + rows
        sims = probes[start:stop] @ gallery.T
        mate = p_labels[start:stop, None] == g_labels[None, :]
        best_mate = np.where(mate, sims, -np.inf).max(axis=1, initial=-np.inf)
        rank_of[start:stop] = 1 + np.count_nonzero(sims > best_mate[:, None], axis=1)
        has_mate[start:stop] = mate.any(axis=1)
    if not has_mate.any():
        raise ValueError("no probe has a mate in the gallery")
    return {k: float(np.mean(rank_of[has_mate] <= k)) for k in ranks}
