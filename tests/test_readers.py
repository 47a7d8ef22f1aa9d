"""Landmark readers (300W, COFW, WFLW) on fixture files written in the real formats, and flip tables."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
from fixtures import pts_text, random_image, wflw_line, write_cofw_v5, write_cofw_v73

from kdface.tasks.landmarks import cofw, w300, wflw
from kdface.tasks.landmarks.points import (
    FLIP_PERMUTATIONS,
    DataFormatError,
    denormalise,
    flip_landmarks,
    flip_permutation,
    normalise,
)


def _raises(fn, *, where: str):
    """Call ``fn`` (consuming a generator) and check the DataFormatError message contains ``where``."""
    with pytest.raises(DataFormatError) as info:
        result = fn()
        if hasattr(result, "__next__"):  # readers are generators: errors surface on iteration
            list(result)
    assert where in str(info.value), str(info.value)
    return info.value


# ------------------------------------------------------------------------------------------- 300W


def _write_300w_face(folder, name, seed):
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), random_image(20, 24, seed))
    pts = np.random.default_rng(seed).uniform(1, 20, (68, 2)).round(3)
    (folder / f"{name}.pts").write_text(pts_text(pts))
    return pts


def test_300w_read_split(tmp_path):
    written = {
        "afw/a1": _write_300w_face(tmp_path / "afw", "a1", 1),
        "lfpw/trainset/l1": _write_300w_face(tmp_path / "lfpw/trainset", "l1", 2),
        "lfpw/trainset/l2": _write_300w_face(tmp_path / "lfpw/trainset", "l2", 3),
        "ibug/i1": _write_300w_face(tmp_path / "ibug", "i1", 4),
        "ibug/i2": _write_300w_face(tmp_path / "ibug", "i2", 5),
    }
    train = list(w300.read_split(tmp_path, "train"))
    challenging = list(w300.read_split(tmp_path, "challenging"))
    full = list(w300.read_split(tmp_path, "full"))
    assert [s.key for s in train] == ["lfpw/trainset/l1", "lfpw/trainset/l2", "afw/a1"]
    assert [s.key for s in challenging] == ["ibug/i1", "ibug/i2"]
    assert [s.key for s in full] == ["ibug/i1", "ibug/i2"]  # no common folders in the fixture
    for sample in train + challenging:
        assert sample.landmarks.shape == (68, 2) and sample.landmarks.dtype == np.float32
        np.testing.assert_allclose(sample.landmarks, written[sample.key] - 0.5, atol=1e-4)
        assert sample.image_path.endswith(sample.key + ".png")
        assert cv2.imread(sample.image_path).shape == (20, 24, 3)
    assert train[-1].attributes["subset"] == "afw"
    _raises(lambda: w300.read_split(tmp_path, "common"), where=str(tmp_path))


def test_300w_pts_round_trip(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2)).astype(np.float32)
    w300.write_pts(tmp_path / "x.pts", pts)
    np.testing.assert_allclose(w300.read_pts(tmp_path / "x.pts"), pts, atol=1e-3)
    text = (tmp_path / "x.pts").read_text()
    assert text.startswith("version: 1\nn_points: 68\n{\n") and text.endswith("}\n")
    first = [float(v) for v in text.splitlines()[3].split()]
    np.testing.assert_allclose(first, pts[0] + 0.5, atol=1e-3)  # file is 1-based pixel centres


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda lines: lines.__setitem__(4, "12.5"), ":5"),  # one number on a coordinate line
        (lambda lines: lines.__setitem__(6, "12.5 abc"), ":7"),  # non-numeric
        (lambda lines: lines.__setitem__(4, "nan 3"), ":5"),  # non-finite
        (lambda lines: lines.__setitem__(2, "("), ":3"),  # missing '{'
        (lambda lines: lines.__setitem__(1, "n_points 68"), ":2"),  # bad header
        (lambda lines: lines.__setitem__(0, "ver 1"), ":1"),
    ],
)
def test_300w_malformed_pts(tmp_path, mutate, where):
    path = tmp_path / "foo.pts"
    lines = pts_text(np.ones((68, 2))).splitlines()
    mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    _raises(lambda: w300.read_pts(path), where=f"{path}{where}")


def test_300w_wrong_point_count(tmp_path):
    path = tmp_path / "foo.pts"
    path.write_text(pts_text(np.ones((68, 2)), n_points=67))
    err = _raises(lambda: w300.read_pts(path), where=str(path))
    assert "67 coordinate lines" in str(err)


# ------------------------------------------------------------------------------------------- COFW


def _cofw_fixture(n=3, seed=0):
    rng = np.random.default_rng(seed)
    images = [random_image(30, 40, 10), random_image(25, 35, 11, channels=0), random_image(32, 28, 12)][:n]
    xs = rng.uniform(1, 20, (n, 29)).round(2)
    ys = rng.uniform(1, 20, (n, 29)).round(2)
    occ = rng.integers(0, 2, (n, 29)).astype(np.float64)
    phis = np.concatenate([xs, ys, occ], axis=1)  # N x 87, MATLAB orientation
    boxes = np.stack(
        [rng.uniform(1, 5, n).round(1), rng.uniform(1, 5, n).round(1), [10.0] * n, [12.0] * n], 1
    )
    return images, phis, boxes


def _check_cofw(samples, images, phis, boxes, split):
    assert [s.key for s in samples] == [f"{split}_{i:04d}" for i in range(len(images))]
    for sample, image, row, box in zip(samples, images, phis, boxes, strict=True):
        assert sample.landmarks.shape == (29, 2) and sample.landmarks.dtype == np.float32
        np.testing.assert_allclose(sample.landmarks[:, 0], row[:29] - 0.5, atol=1e-5)
        np.testing.assert_allclose(sample.landmarks[:, 1], row[29:58] - 0.5, atol=1e-5)
        np.testing.assert_array_equal(sample.attributes["occluded"], row[58:] == 1)
        assert sample.attributes["occluded"].dtype == bool
        x, y, w, h = box
        np.testing.assert_allclose(sample.box, (x - 0.5, y - 0.5, x - 0.5 + w, y - 0.5 + h))
        assert sample.image.dtype == np.uint8 and sample.image.shape == image.shape[:2] + (3,)
        expected = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(sample.image, expected)
        assert sample.image_path is None


def test_cofw_v5_and_v73_agree(tmp_path):
    images, phis, boxes = _cofw_fixture()
    (tmp_path / "v5").mkdir()
    (tmp_path / "v73").mkdir()
    write_cofw_v5(tmp_path / "v5/COFW_train_color.mat", images, phis, boxes)
    write_cofw_v73(tmp_path / "v73/COFW_train_color.mat", images, phis, boxes)
    assert h5py.is_hdf5(tmp_path / "v73/COFW_train_color.mat")
    v5 = list(cofw.read_split(tmp_path / "v5", "train"))
    v73 = list(cofw.read_split(tmp_path / "v73", "train"))
    _check_cofw(v5, images, phis, boxes, "train")
    _check_cofw(v73, images, phis, boxes, "train")


def test_cofw_test_split_variables(tmp_path):
    images, phis, boxes = _cofw_fixture(n=2)
    write_cofw_v73(tmp_path / "COFW_test_color.mat", images, phis, boxes, names=("IsT", "phisT", "bboxesT"))
    _check_cofw(list(cofw.read_split(tmp_path, "test")), images, phis, boxes, "test")
    _raises(lambda: cofw.read_split(tmp_path, "train"), where=str(tmp_path))  # no train file
    with pytest.raises(ValueError):
        list(cofw.read_split(tmp_path, "val"))


@pytest.mark.parametrize("writer", [write_cofw_v5, write_cofw_v73])
def test_cofw_malformed(tmp_path, writer):
    images, phis, boxes = _cofw_fixture()
    path = tmp_path / "COFW_train_color.mat"

    writer(path, images, phis[:, :86], boxes)  # 86 columns
    err = _raises(lambda: cofw.read_split(tmp_path, "train"), where=str(path))
    assert "'phisTr'" in str(err) and "87" in str(err)

    writer(path, images, phis[:2], boxes[:2])  # 3 images, 2 rows
    err = _raises(lambda: cofw.read_split(tmp_path, "train"), where=str(path))
    assert "'IsTr'" in str(err) and "'phisTr'" in str(err)

    writer(path, images, phis, boxes[:, :3])
    err = _raises(lambda: cofw.read_split(tmp_path, "train"), where=str(path))
    assert "'bboxesTr'" in str(err)

    bad = phis.copy()
    bad[1, 5] = np.nan
    writer(path, images, bad, boxes)
    err = _raises(lambda: cofw.read_split(tmp_path, "train"), where=f"{path}:1")
    assert "'phisTr'" in str(err) and "sample index" in str(err)

    bad = phis.copy()
    bad[2, 60] = 2
    writer(path, images, bad, boxes)
    err = _raises(lambda: cofw.read_split(tmp_path, "train"), where=f"{path}:2")
    assert "occlusion" in str(err)


def test_cofw_not_a_mat_file(tmp_path):
    (tmp_path / "COFW_train_color.mat").write_bytes(b"not a mat file at all")
    _raises(lambda: cofw.read_split(tmp_path, "train"), where="COFW_train_color.mat")


def test_cofw_folder_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    written = {}
    for name in ("img1", "img2"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), random_image(16, 16, 7))
        xs, ys = rng.uniform(1, 15, 29).round(3), rng.uniform(1, 15, 29).round(3)
        (tmp_path / f"an_{name}.txt").write_text(
            "\t".join(map(str, xs)) + "\n" + "\t".join(map(str, ys)) + "\n"
        )
        (tmp_path / f"bb_{name}.txt").write_text("2 3 10 11\n")
        written[name] = (xs, ys)
    samples = list(cofw.read_folder(tmp_path))
    assert [s.key for s in samples] == ["img1", "img2"]
    for sample in samples:
        xs, ys = written[sample.key]
        np.testing.assert_allclose(sample.landmarks, np.stack([xs, ys], 1) - 0.5, atol=1e-5)
        assert sample.box == (1.5, 2.5, 11.5, 13.5)
        assert sample.image_path == str(tmp_path / f"{sample.key}.png") and sample.image is None

    bad = tmp_path / "an_img2.txt"
    bad.write_text("\t".join(["1"] * 29) + "\n" + "\t".join(["1"] * 28 + ["x1"]) + "\n")
    _raises(lambda: cofw.read_folder(tmp_path), where=f"{bad}:2")
    bad.write_text("\t".join(["1"] * 29) + "\n")  # y values missing
    _raises(lambda: cofw.read_folder(tmp_path), where=str(bad))


# ------------------------------------------------------------------------------------------- WFLW


def _wflw_fixture(root):
    rng = np.random.default_rng(5)
    ann_dir = root / wflw.ANNOTATION_DIR
    ann_dir.mkdir(parents=True)
    rels = ["51--Dresses/51_Dresses_wearingdress_51_377.jpg", "0--Parade/0_Parade_marchingband_1_116.jpg"]
    for rel in rels:
        (root / "WFLW_images" / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "WFLW_images" / rel), random_image(20, 20, 1))
    faces = {
        "test": [
            (rng.uniform(0, 19, (98, 2)), (1, 2, 15, 18), (1, 0, 0, 0, 1, 0), rels[0]),
            (rng.uniform(0, 19, (98, 2)), (0, 0, 19, 19), (0, 1, 0, 0, 0, 0), rels[0]),
            (rng.uniform(0, 19, (98, 2)), (3, 4, 16, 17), (1, 1, 0, 0, 0, 1), rels[1]),
        ],
        "train": [
            (rng.uniform(0, 19, (98, 2)), (2, 2, 12, 12), (0, 0, 1, 1, 0, 0), rels[1]),
            (rng.uniform(0, 19, (98, 2)), (5, 5, 14, 14), (0, 0, 0, 0, 0, 0), rels[0]),
        ],
    }
    for split, rows in faces.items():
        lines = [wflw_line(*row) for row in rows]
        if split == "test":
            lines.insert(1, "")  # blank line: skipped, but line numbers keep counting
        (ann_dir / wflw.ANNOTATION_FILES[split]).write_text("\n".join(lines) + "\n")
    return faces


def test_wflw_read_split(tmp_path):
    faces = _wflw_fixture(tmp_path)
    test = list(wflw.read_split(tmp_path, "test"))
    train = list(wflw.read_split(tmp_path, "train"))
    assert [s.key for s in test] == [
        f"{faces['test'][0][3]}#1",
        f"{faces['test'][1][3]}#3",
        f"{faces['test'][2][3]}#4",
    ]
    assert len(train) == 2
    for samples, rows in ((test, faces["test"]), (train, faces["train"])):
        for sample, (coords, box, attrs, rel) in zip(samples, rows, strict=True):
            assert sample.landmarks.shape == (98, 2) and sample.landmarks.dtype == np.float32
            np.testing.assert_allclose(sample.landmarks, coords + 0.5, atol=1e-5)
            assert sample.box == tuple(v + 0.5 for v in box)
            assert sample.attributes == dict(zip(wflw.ATTRIBUTES, map(bool, attrs), strict=True))
            assert sample.image_path == str(tmp_path / "WFLW_images" / rel)
    subsets = {name: [s.key for s in wflw.read_split(tmp_path, name)] for name in wflw.ATTRIBUTES}
    assert subsets["pose"] == [test[0].key, test[2].key]
    assert subsets["expression"] == [test[1].key, test[2].key]
    assert subsets["occlusion"] == [test[0].key]
    assert subsets["blur"] == [test[2].key]
    assert subsets["illumination"] == [] and subsets["makeup"] == []  # train-only flags don't leak
    with pytest.raises(ValueError):
        list(wflw.read_split(tmp_path, "validation"))


def test_wflw_parse_line():
    coords = np.arange(196, dtype=np.float64).reshape(98, 2) / 4
    landmarks, box, attrs, rel = wflw.parse_line(
        wflw_line(coords, (1, 2, 3, 4), (0, 1, 0, 1, 0, 1), "a/b.jpg"), "f", 1
    )
    np.testing.assert_allclose(landmarks, coords + 0.5)
    assert box == (1.5, 2.5, 3.5, 4.5) and rel == "a/b.jpg"
    assert attrs == {"pose": False, "expression": True, "illumination": False, "makeup": True,
                     "occlusion": False, "blur": True}  # fmt: skip


def test_wflw_malformed(tmp_path):
    _wflw_fixture(tmp_path)
    path = tmp_path / wflw.ANNOTATION_DIR / wflw.ANNOTATION_FILES["test"]
    good = path.read_text().splitlines()
    fields = good[2].split()
    cases = {
        "195 coordinates": " ".join(fields[:1] + fields[2:]),
        "attribute 2": " ".join(fields[:200] + ["2"] + fields[201:]),
        "text coordinate": " ".join(fields[:7] + ["abc"] + fields[8:]),
        "infinite": " ".join(fields[:7] + ["inf"] + fields[8:]),
        "missing image": " ".join(fields[:-1] + ["nowhere/none.jpg"]),
    }
    for name, line in cases.items():
        path.write_text("\n".join(good[:2] + [line] + good[3:]) + "\n")
        err = _raises(lambda: wflw.read_split(tmp_path, "test"), where=f"{path}:3")
        if name != "missing image":
            assert "207 space-separated fields" in str(err)
        else:
            assert "nowhere/none.jpg" in str(err)
    with pytest.raises(DataFormatError, match="x.txt:9"):
        wflw.parse_line("1 2 3", "x.txt", 9)


# ---------------------------------------------------------------------------- flip permutations


def _ring(n, cx, cy, rx, ry):
    """``n`` points round an ellipse, starting at its leftmost point and going over the top
    (clockwise on screen): the order of the eye and mouth contours in both 68 and 98 schemes."""
    phi = np.pi - 2 * np.pi * np.arange(n) / n
    return np.stack([cx + rx * np.cos(phi), cy - ry * np.sin(phi)], 1)


def _arc(n, rx, cy, ry):
    """Jaw line: image-left temple, down round the chin, up to the image-right temple."""
    theta = np.pi * np.arange(n) / (n - 1)
    return np.stack([-rx * np.cos(theta), cy + ry * np.sin(theta)], 1)


def _row(xs, y0, bend=0.1):
    """Points along a row; y depends on |x| only, so mirrored x give mirrored points."""
    xs = np.asarray(xs, np.float64)
    return np.stack([xs, y0 - bend * (1 - np.abs(xs))], 1)


def _template_68():
    """A left/right-symmetric face in the iBUG 68-point order (x = 0 is the symmetry axis)."""
    return np.concatenate(
        [
            _arc(17, 1.0, -0.3, 1.3),  # 0-16 jaw
            _row(np.linspace(-0.8, -0.2, 5), -0.5),  # 17-21 image-left brow, outer -> inner
            _row(np.linspace(0.2, 0.8, 5), -0.5),  # 22-26 image-right brow, inner -> outer
            np.array([[0, -0.3], [0, -0.15], [0, 0.0], [0, 0.15]]),  # 27-30 nose bridge
            _row(np.linspace(-0.2, 0.2, 5), 0.35),  # 31-35 nostrils, left -> right
            _ring(6, -0.45, -0.25, 0.2, 0.08),  # 36-41 image-left eye, from its outer corner
            _ring(6, 0.45, -0.25, 0.2, 0.08),  # 42-47 image-right eye, from its inner corner
            _ring(12, 0.0, 0.65, 0.4, 0.2),  # 48-59 outer lips from the image-left corner
            _ring(8, 0.0, 0.65, 0.3, 0.08),  # 60-67 inner lips from the image-left corner
        ]
    )


def _template_98():
    """A left/right-symmetric face in the WFLW 98-point order."""
    return np.concatenate(
        [
            _arc(33, 1.0, -0.3, 1.3),  # 0-32 jaw
            _row(np.linspace(-0.8, -0.2, 5), -0.5),  # 33-37 image-left brow top, outer -> inner
            _row([-0.3, -0.45, -0.6, -0.75], -0.42),  # 38-41 its bottom edge, inner -> outer
            _row(np.linspace(0.2, 0.8, 5), -0.5),  # 42-46 image-right brow top, inner -> outer
            _row([0.75, 0.6, 0.45, 0.3], -0.42),  # 47-50 its bottom edge, outer -> inner
            np.array([[0, -0.3], [0, -0.15], [0, 0.0], [0, 0.15]]),  # 51-54 nose bridge
            _row(np.linspace(-0.2, 0.2, 5), 0.35),  # 55-59 nostrils
            _ring(8, -0.45, -0.25, 0.2, 0.08),  # 60-67 image-left eye from its outer corner
            _ring(8, 0.45, -0.25, 0.2, 0.08),  # 68-75 image-right eye from its inner corner
            _ring(12, 0.0, 0.65, 0.4, 0.2),  # 76-87 outer lips
            _ring(8, 0.0, 0.65, 0.3, 0.08),  # 88-95 inner lips
            np.array([[-0.45, -0.25], [0.45, -0.25]]),  # 96-97 pupils
        ]
    )


def _template_29():
    """A left/right-symmetric face in the COFW 29-point order (RCPR / LFPW-29 layout)."""
    named = [
        (-0.8, -0.5), (0.8, -0.5),  # 0, 1 brow outer ends
        (-0.2, -0.5), (0.2, -0.5),  # 2, 3 brow inner ends
        (-0.5, -0.58), (-0.5, -0.45),  # 4, 5 image-left brow top / bottom middle
        (0.5, -0.58), (0.5, -0.45),  # 6, 7 image-right brow top / bottom middle
        (-0.65, -0.25), (0.65, -0.25),  # 8, 9 eye outer corners
        (-0.25, -0.25), (0.25, -0.25),  # 10, 11 eye inner corners
        (-0.45, -0.32), (-0.45, -0.18),  # 12, 13 image-left eye top / bottom lid
        (0.45, -0.32), (0.45, -0.18),  # 14, 15 image-right eye top / bottom lid
        (-0.45, -0.25), (0.45, -0.25),  # 16, 17 pupils
        (-0.2, 0.3), (0.2, 0.3),  # 18, 19 nose wings
        (0.0, 0.2), (0.0, 0.35),  # 20 nose tip, 21 under the nose
        (-0.35, 0.65), (0.35, 0.65),  # 22, 23 mouth corners
        (0.0, 0.52), (0.0, 0.62), (0.0, 0.67), (0.0, 0.8),  # 24-27 lips, top to bottom
        (0.0, 1.25),  # 28 chin
    ]  # fmt: skip
    return np.array(named)


TEMPLATES = {68: _template_68, 98: _template_98, 29: _template_29}
SEMANTIC_PAIRS = {  # (a, b): a and b swap; (a, a): a is on the symmetry axis
    68: [(36, 45), (0, 16), (48, 54), (39, 42), (17, 26), (31, 35), (30, 30), (8, 8), (57, 57), (66, 66)],
    98: [(60, 72), (96, 97), (76, 82), (0, 32), (33, 46), (38, 50), (64, 68), (54, 54), (16, 16), (79, 79)],
    29: [(8, 9), (10, 11), (16, 17), (22, 23), (0, 1), (4, 6)]
    + [(i, i) for i in (20, 21, 24, 25, 26, 27, 28)],
}


@pytest.mark.parametrize("n", [68, 98, 29])
def test_flip_permutation_is_an_involution(n):
    perm = flip_permutation(n)
    assert perm is FLIP_PERMUTATIONS[n] and perm.shape == (n,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    np.testing.assert_array_equal(perm[perm], np.arange(n))


@pytest.mark.parametrize("n", [68, 98, 29])
def test_flip_permutation_semantic_pairs(n):
    perm = flip_permutation(n)
    for a, b in SEMANTIC_PAIRS[n]:
        assert perm[a] == b and perm[b] == a, (a, b, perm[a])


@pytest.mark.parametrize("n", [68, 98, 29])
def test_flip_mirrors_geometry(n):
    template = TEMPLATES[n]()
    assert template.shape == (n, 2)
    assert len(np.unique(template.round(6), axis=0)) == n  # no two points coincide
    width = 200.0
    face = (template * 50 + [width / 2, 100]).astype(np.float32)  # symmetric about x = width / 2
    np.testing.assert_allclose(flip_landmarks(face, width), face, atol=1e-4)
    # Not vacuous: mirroring without relabelling (the identity permutation) moves the points.
    assert not np.allclose(np.stack([width - face[:, 0], face[:, 1]], 1), face, atol=1e-2)


def test_flip_twice_and_errors():
    pts = np.random.default_rng(0).uniform(0, 64, (98, 2)).astype(np.float32)
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(pts, 64), 64), pts, atol=1e-5)
    np.testing.assert_allclose(flip_landmarks(pts, 64)[97, 0], 64 - pts[96, 0], atol=1e-5)
    with pytest.raises(ValueError):
        flip_permutation(5)


def test_normalise_round_trip():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 112, (4, 68, 2)).astype(np.float32)
    vec = normalise(pts, 112, 96)
    assert vec.shape == (4, 136)
    np.testing.assert_allclose(vec[0, :2], [pts[0, 0, 0] / 112 - 0.5, pts[0, 0, 1] / 96 - 0.5], atol=1e-6)
    np.testing.assert_allclose(denormalise(vec, 112, 96), pts, atol=1e-4)
    np.testing.assert_allclose(denormalise(normalise(pts[0], 112, 96), 112, 96), pts[0], atol=1e-4)
    np.testing.assert_allclose(normalise([[56.0, 48.0]], 112, 96), [0.0, 0.0])
