"""10-fold verification, TAR@FAR / ROC and CMC (F-SKD spec §6) against brute-force references and
hand-built cases."""

import dataclasses
import math
import time

import numpy as np
import pytest

from kdface.metrics import (
    VerificationResult,
    best_threshold,
    cmc_ranks,
    plot_roc,
    roc_curve_points,
    tar_at_far,
    threshold_grid,
    verification_10_fold,
    verification_accuracy,
    verification_folds,
)

GRID = np.arange(-10000, 10001) / 10000.0


def brute_force_threshold(scores, same):
    """The original's loop, one comparison matrix for all 20,001 thresholds at once."""
    acc = (
        (scores[same][None, :] > GRID[:, None]).sum(1) + (scores[~same][None, :] < GRID[:, None]).sum(1)
    ) / len(scores)
    return GRID[acc == acc.max()].mean()


def brute_force_10_fold(left, right, same, fold):
    accs, thrs = [], []
    for i in np.unique(fold):
        test = fold == i
        mu = np.concatenate([left[~test], right[~test]]).mean(axis=0)
        fl, fr = left - mu, right - mu
        fl = fl / np.linalg.norm(fl, axis=1, keepdims=True)
        fr = fr / np.linalg.norm(fr, axis=1, keepdims=True)
        scores = (fl * fr).sum(axis=1)
        thr = brute_force_threshold(scores[~test], same[~test])
        s, y = scores[test], same[test]
        accs.append(((s[y] > thr).sum() + (s[~y] < thr).sum()) / len(s))
        thrs.append(thr)
    return np.array(accs), np.array(thrs)


def pairs_with_scores(scores):
    """Left/right 2-D features whose (centred, normalised) dot product is each score; every pair is
    followed by its negation, so the mean of any set of folds is 0 and the scores stay as given."""
    left, right = [], []
    for c in scores:
        v = np.array([c, math.sqrt(1 - c * c)])
        left += [np.array([1.0, 0.0]), np.array([-1.0, 0.0])]
        right += [v, -v]
    return np.array(left), np.array(right)


def test_vectorised_equals_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    n = 1200
    same = rng.random(n) < 0.5
    left = rng.normal(size=(n, 8))
    right = np.where(same[:, None], left + rng.normal(scale=1.2, size=(n, 8)), rng.normal(size=(n, 8)))
    fold = np.arange(n) * 10 // n
    result = verification_10_fold(left, right, same, fold)
    ref_acc, ref_thr = brute_force_10_fold(left, right, same, fold)
    np.testing.assert_array_equal(result.accuracies, ref_acc)
    np.testing.assert_allclose(result.thresholds, ref_thr, rtol=0, atol=1e-12)
    assert result.mean == pytest.approx(ref_acc.mean()) and result.std == pytest.approx(ref_acc.std())
    assert 0.6 < result.mean < 1.0  # informative data, not a degenerate case
    # an int fold size is index // size
    same_again = verification_10_fold(left, right, same, 120)
    np.testing.assert_array_equal(same_again.accuracies, result.accuracies)


def test_best_threshold_with_scores_on_the_grid():
    # scores rounded to 1e-3 lie exactly on thresholds: the strict comparisons decide every tie
    rng = np.random.default_rng(1)
    scores = np.round(rng.uniform(-0.3, 0.6, 400), 3)
    same = rng.random(400) < 0.5
    same[scores > 0.3] = True
    assert best_threshold(scores, same) == pytest.approx(brute_force_threshold(scores, same), abs=1e-12)
    assert np.array_equal(threshold_grid(), GRID)


def test_strict_inequalities_at_ties():
    assert verification_accuracy([0.5], [True], 0.5) == 0.0
    assert verification_accuracy([0.5], [False], 0.5) == 0.0
    assert verification_accuracy([0.5, 0.5], [True, False], 0.49995) == 0.5
    # accuracy is 1/2 at every threshold but 0.5 itself (0 there): the mean of the other 20,000
    assert best_threshold([0.5, 0.5], [True, False]) == pytest.approx(-0.5 / 20000, abs=1e-12)


def test_mean_threshold_need_not_be_a_maximiser():
    # Every fold: diff -0.60005, same -0.40005, diff 0.40005, same 0.60005. On 9 folds the accuracy is
    # maximal on (-0.6, -0.4) and (0.4, 0.6) only; their mean threshold (0) scores less, and the
    # original evaluates fold 0 at that mean anyway. Fold 0 also holds a same pair at 0.2, which
    # only the mean threshold gets right.
    block = [-0.60005, -0.40005, 0.40005, 0.60005]
    block_same = [False, True, False, True]
    scores, same, fold = [], [], []
    for f in range(10):
        extra = [0.2] if f == 0 else []
        scores += block + extra
        same += block_same + [True] * len(extra)
        fold += [f] * (4 + len(extra))
    left, right = pairs_with_scores(scores)
    same2 = np.repeat(same, 2)
    fold2 = np.repeat(fold, 2)
    result = verification_10_fold(left, right, same2, fold2)

    assert result.thresholds[0] == pytest.approx(0.0, abs=1e-9)
    train_scores = np.repeat(scores, 2)[fold2 != 0]
    best = max(verification_accuracy(train_scores, same2[fold2 != 0], t) for t in (-0.5, 0.0, 0.5))
    assert verification_accuracy(train_scores, same2[fold2 != 0], result.thresholds[0]) < best
    assert result.accuracies[0] == pytest.approx(0.6)  # at a maximiser (-0.5) it would be 0.8
    # the other folds see fold 0's extra pair, which breaks the tie: (-0.6, -0.4) alone, mean -0.50005
    np.testing.assert_allclose(result.thresholds[1:], -0.50005, atol=1e-9)
    np.testing.assert_allclose(result.accuracies[1:], 0.75)
    assert result.mean == pytest.approx(0.735)
    ref_acc, ref_thr = brute_force_10_fold(left, right, same2, fold2)
    np.testing.assert_array_equal(result.accuracies, ref_acc)
    np.testing.assert_allclose(result.thresholds, ref_thr, atol=1e-12)


def test_result_is_frozen():
    left, right = pairs_with_scores(np.linspace(-0.9, 0.9, 20))
    result = verification_10_fold(left, right, np.tile([True, False], 20), 4)
    assert isinstance(result, VerificationResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.mean = 1.0
    with pytest.raises(ValueError):
        result.accuracies[0] = 1.0


def test_folds_by_dataset():
    np.testing.assert_array_equal(verification_folds(6000, "agedb_30"), np.arange(6000) // 600)
    np.testing.assert_array_equal(verification_folds(6000, "LFW"), np.arange(6000) // 600)
    np.testing.assert_array_equal(verification_folds(7000, "cfp_fp.bin"), np.arange(7000) // 700)
    np.testing.assert_array_equal(verification_folds(7000, "CFP-FP"), np.arange(7000) // 700)
    assert verification_folds(5999, "lfw").max() == 9  # the original LFW loader drops pair 0
    np.testing.assert_array_equal(verification_folds(6000, "calfw"), np.arange(6000) // 600)
    generic = verification_folds(55, "tiny")
    assert np.all(np.diff(generic) >= 0) and set(np.bincount(generic)) == {5, 6}
    with pytest.raises(ValueError, match="agedb_30: 1200 pairs"):
        verification_folds(1200, "agedb_30")


def test_speed_7000_pairs():
    rng = np.random.default_rng(2)
    left = rng.normal(size=(7000, 1024)).astype(np.float32)
    right = rng.normal(size=(7000, 1024)).astype(np.float32)
    same = rng.random(7000) < 0.5
    start = time.perf_counter()
    verification_10_fold(left, right, same, verification_folds(7000, "cfp_fp"))
    # < 1 s on a quiet core; the bound leaves room for a shared CI machine
    assert time.perf_counter() - start < 5.0


def test_roc_and_tar_at_far_constructed():
    # positives 0.9, 0.5; negatives 0.8, 0.5, 0.5, 0.1: the 0.5 group (1 same, 2 diff) is a diagonal
    scores = [0.9, 0.8, 0.5, 0.5, 0.5, 0.1]
    same = [True, False, True, False, False, False]
    fpr, tpr, thr = roc_curve_points(scores, same)
    np.testing.assert_allclose(fpr, [0, 0, 0.25, 0.75, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.5, 0.1])
    tar = tar_at_far(scores, same, fars=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0))
    assert math.isnan(tar[0.1])  # below 1 / 4 negatives: not measurable
    assert tar[0.25] == 0.5
    assert tar[0.5] == pytest.approx(0.75)  # halfway along the diagonal
    assert tar[0.75] == 1.0 and tar[0.9] == 1.0 and tar[1.0] == 1.0
    # at the FAR of a vertical step, the top of the step
    tar2 = tar_at_far([0.9, 0.8, 0.7, 0.1], [False, True, True, False], fars=(0.5,))
    assert tar2[0.5] == 1.0


def test_plot_roc_writes_png(tmp_path):
    curve = roc_curve_points([0.9, 0.8, 0.5, 0.5, 0.5, 0.1], [True, False, True, False, False, False])
    path = plot_roc({"student": curve, "teacher": (curve.fpr, curve.tpr)}, tmp_path / "roc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def unit(deg):
    return np.array([math.cos(math.radians(deg)), math.sin(math.radians(deg))])


def test_cmc_hand_case():
    # gallery: id 1 at 0 deg, id 2 at 30, a distractor at 10, id 3 at 90
    gallery = np.stack([unit(0), unit(30), unit(10), unit(90)]) * [[2.0], [1.0], [0.5], [3.0]]
    g_labels = [1, 2, -100, 3]
    # probe id 1 at 12 deg: the distractor (2 deg away) beats its mate (12) -> rank 2
    # probe id 2 at 29 deg -> rank 1; probe id 3 at 55: id 2 (25 away) beats its mate (35) -> rank 2
    # probe id 7 has no mate and is left out
    probes = np.stack([unit(12), unit(29), unit(55), unit(40)])
    p_labels = [1, 2, 3, 7]
    expected = {1: 1 / 3, 2: 1.0, 5: 1.0}
    assert cmc_ranks(probes, p_labels, gallery, g_labels, ranks=(1, 2, 5)) == pytest.approx(expected)
    small_chunks = cmc_ranks(probes, p_labels, gallery, g_labels, ranks=(1, 2, 5), chunk_elements=1)
    assert small_chunks == pytest.approx(expected)
    with pytest.raises(ValueError, match="no probe has a mate"):
        cmc_ranks(probes[3:], [7], gallery, g_labels)
