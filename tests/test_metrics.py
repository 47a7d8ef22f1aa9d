"""Landmark metrics and report writers, checked against hand-computed values."""

import json

import cv2
import numpy as np
import pytest

from kdface.metrics import (
    auc,
    auc_kdloss_original,
    ced_curve,
    failure_rate,
    nme_per_image,
    plot_ced,
    summarize,
)
from kdface.report import (
    draw_landmarks,
    overlay_grid,
    write_report_json,
    write_report_markdown,
)
from kdface.tasks.landmarks.points import NORMALISERS

# --- NME ---------------------------------------------------------------------------------------


def test_nme_hand_computed_two_images_three_points():
    # Normaliser = points (0, 2).
    # Image 0: gt (0,0) (3,4) (10,0) -> ||gt0 - gt2|| = 10.
    #   pred (3,4) (3,4) (10,0): errors 5, 0, 0 -> mean 5/3 -> NME = (5/3)/10 = 1/6.
    # Image 1: gt (0,0) (0,1) (0,2) -> ||gt0 - gt2|| = 2.
    #   pred = gt + (0.6, 0.8): every error is 1 -> mean 1 -> NME = 1/2.
    gt = np.array([[[0, 0], [3, 4], [10, 0]], [[0, 0], [0, 1], [0, 2]]], dtype=np.float32)
    pred = np.array([[[3, 4], [3, 4], [10, 0]], gt[1] + [0.6, 0.8]], dtype=np.float32)
    nme = nme_per_image(pred, gt, normaliser=(0, 2))
    assert nme.shape == (2,)
    np.testing.assert_allclose(nme, [1 / 6, 1 / 2], rtol=1e-6)


def test_nme_single_image_is_batch_of_one():
    gt = np.array([[0, 0], [4, 0]], dtype=float)
    np.testing.assert_allclose(nme_per_image(gt + [0, 1], gt, (0, 1)), [0.25])


def test_nme_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        nme_per_image(np.zeros((2, 68, 2)), np.zeros((2, 98, 2)))


def test_nme_zero_normaliser_names_image_index():
    gt = np.random.default_rng(0).uniform(0, 100, size=(3, 68, 2))
    gt[1, 45] = gt[1, 36]
    with pytest.raises(ValueError, match="image index 1"):
        nme_per_image(gt, gt)


def _offset_case(num_points, seed):
    """GT at random positions, prediction off by exactly 1 px everywhere -> NME = 1 / ||gt[a]-gt[b]||."""
    gt = np.random.default_rng(seed).uniform(0, 200, size=(4, num_points, 2))
    return gt + [0.6, 0.8], gt


@pytest.mark.parametrize(
    "num_points,pair,key",
    [(68, (36, 45), "300w"), (98, (60, 72), "wflw"), (98, (96, 97), "wflw_interpupil")],
)
def test_normaliser_indices_used_as_given(num_points, pair, key):
    assert NORMALISERS[key] == pair
    pred, gt = _offset_case(num_points, seed=num_points)
    expected = 1.0 / np.linalg.norm(gt[:, pair[0]] - gt[:, pair[1]], axis=-1)
    np.testing.assert_allclose(nme_per_image(pred, gt, pair), expected, rtol=1e-9)
    np.testing.assert_allclose(nme_per_image(pred, gt, key), expected, rtol=1e-9)


def test_default_normaliser_is_outer_eye_corners_and_wflw_pairs_differ():
    pred, gt = _offset_case(68, seed=1)
    np.testing.assert_allclose(nme_per_image(pred, gt), nme_per_image(pred, gt, (36, 45)))
    pred, gt = _offset_case(98, seed=2)
    assert not np.allclose(nme_per_image(pred, gt, (60, 72)), nme_per_image(pred, gt, (96, 97)))


# --- failure rate and AUC ----------------------------------------------------------------------


def test_failure_rate_tie_is_not_failure():
    assert failure_rate([0.1, 0.1, 0.1000001, 0.05]) == pytest.approx(0.25)
    assert failure_rate([0.05, 0.2], threshold=0.2) == 0.0


def test_auc_hand_values():
    # nme 0 -> 0.1/0.1 = 1; nme 0.05 -> 0.05/0.1 = 0.5; nme 0.2 -> 0 (beyond threshold).
    assert auc([0.0, 0.05, 0.2]) == pytest.approx((1 + 0.5 + 0) / 3)
    assert auc([0.0]) == pytest.approx(1.0)
    assert auc([0.3, 0.1]) == pytest.approx(0.0)


def test_auc_exact_matches_fine_numeric_integral():
    nme = np.random.default_rng(3).gamma(2.0, 0.025, size=500)
    t, f = ced_curve(nme, threshold=0.1, num=200001)
    numeric = np.trapezoid(f, t) / 0.1
    assert auc(nme) == pytest.approx(numeric, abs=1e-4)
    assert auc(nme, step=1e-5) == pytest.approx(auc(nme), abs=1e-4)


def test_auc_original_worked_example():
    # Every image at 0.0356: F(t_k) = 1 for k >= 7 (t_7 = 0.0368), so
    # AUC_code = sum_{k=7..19} (0.1/19) (2k - 1) / 2 = (0.1/19) * 325/2 = 0.8553;
    # standard AUC = (0.1 - 0.0356) / 0.1 = 0.644.
    nme = np.full(50, 0.0356)
    assert round(auc_kdloss_original(nme), 3) == 0.855
    assert round(auc(nme), 3) == 0.644
    assert auc_kdloss_original(np.zeros(5)) == pytest.approx(0.95)


def test_ced_monotone_and_ends_at_f_threshold():
    nme = np.array([0.01, 0.02, 0.1, 0.15, 0.03])
    t, f = ced_curve(nme, threshold=0.1, num=1000)
    assert t.shape == f.shape == (1000,)
    assert t[0] == 0.0 and t[-1] == pytest.approx(0.1)
    assert np.all(np.diff(f) >= 0)
    assert f[-1] == pytest.approx(4 / 5)  # 0.1 counts (<=), 0.15 does not
    assert f[-1] == pytest.approx(1 - failure_rate(nme))


def test_summarize_keys_and_units():
    s = summarize([0.0, 0.05, 0.2])
    assert s["count"] == 3
    assert s["nme"] == pytest.approx(25 / 3)  # mean 0.0833 -> percent
    assert s["median"] == pytest.approx(5.0)
    assert s["fr"] == pytest.approx(100 / 3)
    assert s["auc"] == pytest.approx(0.5)
    assert "auc_original" in s


def test_empty_nme_rejected():
    with pytest.raises(ValueError, match="empty"):
        failure_rate([])


# --- plots and reports -------------------------------------------------------------------------


def test_plot_ced_writes_png(tmp_path):
    path = tmp_path / "sub" / "ced.png"
    rng = np.random.default_rng(4)
    plot_ced({"teacher": rng.uniform(0, 0.08, 100), "student": rng.uniform(0, 0.12, 100)}, path)
    assert path.stat().st_size > 1000
    assert cv2.imread(str(path)) is not None


def test_overlay_grid_pixel_size(tmp_path):
    images = np.random.default_rng(5).uniform(0, 1, size=(10, 64, 48, 3)).astype(np.float32)
    pred = np.full((10, 68, 2), 20.0)
    path = tmp_path / "grid.png"
    grid = overlay_grid(images, pred, pred + 1, path, cols=4)
    # Short side 48 -> integer scale ceil(128/48) = 3 -> tiles 192 x 144; 10 images -> 3 rows x 4 cols,
    # under a header band (title and key) as wide as the grid.
    header = grid.shape[0] - 3 * 192
    assert grid.shape[1:] == (4 * 144, 3) and 0 < header < 192
    assert cv2.imread(str(path)).shape == grid.shape
    # the last tile (index 9: row 2, column 1) is where its crop was drawn, below the header
    tile = cv2.resize(
        np.round(images[9] * 255).astype(np.uint8), (144, 192), interpolation=cv2.INTER_NEAREST_EXACT
    )
    np.testing.assert_array_equal(grid[header + 2 * 192 : header + 3 * 192, 144:288][:40], tile[:40])


def test_draw_landmarks_uses_corner_origin():
    # Point (4.5, 4.5) is the centre of pixel row 4, column 4; (4.25, 3.8) checks sub-pixel placement.
    for x, y in [(4.5, 4.5), (4.25, 3.8)]:
        img = draw_landmarks(np.zeros((10, 10, 3), np.uint8), [[x, y]], color=(255, 0, 0), radius=2.5)
        assert img[..., 1:].max() == 0
        red = img[..., 0].astype(float)
        rows, cols = np.mgrid[:10, :10]
        # Intensity centroid in kdface coordinates (pixel centre = index + 0.5).
        cx, cy = (red * (cols + 0.5)).sum() / red.sum(), (red * (rows + 0.5)).sum() / red.sum()
        assert cx == pytest.approx(x, abs=0.1) and cy == pytest.approx(y, abs=0.1)


def test_report_json_round_trips_numpy(tmp_path):
    path = tmp_path / "report.json"
    data = {
        "nme": np.float32(3.5),
        "count": np.int64(7),
        "per_image": np.array([0.1, 0.2]),
        "ok": np.bool_(1),
    }
    write_report_json(path, data)
    loaded = json.loads(path.read_text())
    assert loaded == {"nme": 3.5, "count": 7, "per_image": [0.1, 0.2], "ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_report_markdown_table_and_images(tmp_path):
    path = tmp_path / "report.md"
    rows = [
        {"model": "teacher", **summarize([0.03, 0.04])},
        {"model": "student", "nme": np.float64(4.56789), "fr": 1.0, "auc": 0.61234},
    ]
    write_report_markdown(
        path,
        "300W results",
        rows,
        ["model", "nme", "fr", "auc"],
        notes="Full set.",
        images={"CED": "ced.png"},
    )
    text = path.read_text()
    assert text.startswith("# 300W results")
    assert "| model | NME % | FR % | AUC |" in text
    assert "| teacher | 3.50 | 0.00 | 0.6500 |" in text
    assert "| student | 4.57 | 1.00 | 0.6123 |" in text
    assert "![CED](ced.png)" in text
    assert "Full set." in text
