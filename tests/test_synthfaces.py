"""SynthFaces: determinism, landmark geometry, mirror symmetry, occlusion and the on-disk trees."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from kdface.data import synthfaces as sf
from kdface.tasks.landmarks.points import flip_landmarks
from kdface.tasks.landmarks.w300 import read_split


def _params(identity_id=3, label=7, **kw) -> sf.FaceParams:
    identity = sf.sample_identity(0, identity_id)
    expression = sf.sample_expression(label, np.random.default_rng(0), intensity=1.0, jitter=0.0)
    kw.setdefault("clutter", 0.0)
    kw.setdefault("noise", 0.0)
    return sf.FaceParams(identity=identity, expression=expression, **kw)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def test_render_is_deterministic_and_seed_dependent():
    p = _params(label=4, clutter=1.0, noise=3.0, occluder="object", pose=sf.Pose(roll=7, yaw=12, scale=0.95))
    img1, lm1, m1 = sf.render_face(p, np.random.default_rng(11))
    img2, lm2, m2 = sf.render_face(p, np.random.default_rng(11))
    assert img1.dtype == np.uint8 and img1.shape == (128, 128, 3)
    assert m1.dtype == np.uint8 and m1.shape == (128, 128)
    assert lm1.dtype == np.float32 and lm1.shape == (68, 2)
    assert img1.tobytes() == img2.tobytes() and m1.tobytes() == m2.tobytes()
    np.testing.assert_array_equal(lm1, lm2)
    img3, lm3, _ = sf.render_face(p, np.random.default_rng(12))
    assert img3.tobytes() != img1.tobytes()
    np.testing.assert_array_equal(lm1, lm3)  # landmarks depend on the params only
    np.testing.assert_array_equal(lm1, sf.face_landmarks(p))


def test_identities_are_persistent_and_distinct():
    assert sf.sample_identity(0, 5) == sf.sample_identity(0, 5)
    assert sf.sample_identity(0, 5) != sf.sample_identity(0, 6)
    assert sf.sample_identity(0, 5) != sf.sample_identity(1, 5)


@pytest.mark.parametrize("label", range(1, 8))
def test_landmark_layout(label):
    for identity_id in range(6):
        p = _params(identity_id, label)
        _, lm, _ = sf.render_face(p, 0)
        assert lm.shape == (68, 2) and np.all(np.isfinite(lm))
        assert np.all(lm > 0) and np.all(lm[:, 0] < p.width) and np.all(lm[:, 1] < p.height)
        x, y = lm[:, 0], lm[:, 1]
        assert x[0] < x[8] < x[16] and x[36] < x[39] < x[42] < x[45] and x[48] < x[54]
        assert x[17] < x[21] < x[22] < x[26] and x[31] < x[33] < x[35]
        assert y[8] == y.max()  # chin lowest
        brows, eyes, mouth = y[17:27].max(), y[36:48], y[48:68].min()
        assert brows < eyes.min() and eyes.max() < y[30] < y[33] < mouth
        assert y[37] < y[41] and y[44] < y[46]  # upper lids above lower lids


def test_expressions_change_geometry():
    def lm(label, identity_id):
        return sf.face_landmarks(_params(identity_id, label))

    for identity_id in range(5):
        neutral, surprise = lm(7, identity_id), lm(1, identity_id)
        assert surprise[66, 1] - surprise[62, 1] > neutral[66, 1] - neutral[62, 1] + 1.0  # mouth opens
        assert surprise[19, 1] < neutral[19, 1] - 1.0  # brows up

        def corner_lift(p):
            return 0.5 * (p[51, 1] + p[57, 1]) - 0.5 * (p[48, 1] + p[54, 1])

        assert corner_lift(lm(4, identity_id)) > corner_lift(lm(5, identity_id)) + 1.0
        anger = lm(6, identity_id)
        assert anger[21, 1] > neutral[21, 1] and anger[22, 1] > neutral[22, 1]  # inner brows down
    # per-image intensity jitter: two Happiness samples differ
    a = sf.sample_expression(4, np.random.default_rng(1))
    b = sf.sample_expression(4, np.random.default_rng(2))
    assert a != b and a.label == b.label == 4
    assert sf.sample_expression(8, np.random.default_rng(0)).label == 8  # contempt: the CK+ tree's
    with pytest.raises(ValueError):
        sf.sample_expression(9, np.random.default_rng(0))


def test_landmarks_lie_on_drawn_features():
    base = _params(7, 7, blur=0.0)
    green_lips = dataclasses.replace(base.identity, lip_color=(0.0, 255.0, 0.0), skin=(255.0, 110.0, 0.0))
    p = dataclasses.replace(base, identity=green_lips, width=256, height=256, face_size=170)
    img, lm, _ = sf.render_face(p, 0)
    img = img.astype(int)

    def px(pt):
        return img[int(pt[1]), int(pt[0])]

    # the upper lip lies between the outer (51) and inner (62) contour, the lower between 66 and 57
    for a, b in ((51, 62), (50, 61), (52, 63), (66, 57), (67, 58), (65, 56)):
        r, g, bl = px(0.5 * (lm[a] + lm[b]))
        assert g > r + 60 and g > bl + 60, (a, b, (r, g, bl))
    # just inside the jaw contour is skin (orange, also after shading)
    centre = lm[30]
    for i in range(3, 14):
        inside = lm[i] + 3.0 * (centre - lm[i]) / np.linalg.norm(centre - lm[i])
        r, g, bl = px(inside)
        assert r > g + 40 and g > bl + 30, (i, (r, g, bl))


def test_symmetric_face_is_its_own_mirror_image():
    for identity_id in range(4):
        p = _params(identity_id, 4)
        p = dataclasses.replace(p, identity=p.identity.symmetric(), blur=0.5)
        img, lm, _ = sf.render_face(p, 3)
        np.testing.assert_allclose(flip_landmarks(lm, p.width), lm, atol=1e-3)
        diff = np.abs(cv2.flip(img, 1).astype(int) - img)
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3, (diff.mean(), np.percentile(diff, 99))


def test_mirrored_params_render_the_mirror_image():
    p = _params(
        5, 2, pose=sf.Pose(roll=9, yaw=-15, scale=1.05, shift_x=0.03), light_azimuth=35, gaze=(0.4, 0)
    )
    assert p.identity.asym_eye != 0  # a genuinely asymmetric face
    img, lm, _ = sf.render_face(p, 3)
    img_m, lm_m, _ = sf.render_face(sf.mirror_params(p), 3)
    np.testing.assert_allclose(flip_landmarks(lm, p.width), lm_m, atol=1e-3)
    diff = np.abs(cv2.flip(img, 1).astype(int) - img_m)
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3
    assert np.abs(img_m.astype(int) - img).mean() > 2  # and it is not symmetric itself


@pytest.mark.parametrize("occluder", sf.OCCLUDER_TYPES)
def test_occluders_have_masks(occluder):
    p = _params(2, 7, occluder=occluder)
    clean, lm, _ = sf.render_face(dataclasses.replace(p, occluder="none"), 4)
    img, lm2, mask = sf.render_face(p, 4)
    np.testing.assert_array_equal(lm, lm2)
    assert set(np.unique(mask)) <= {0, 255}
    flags = sf.landmark_occlusion(lm, mask)
    if occluder == "none":
        assert not mask.any() and not flags.any()
        return
    covered = mask > 0
    assert 0.005 < covered.mean() < 0.6
    changed = np.abs(img.astype(int) - clean).sum(-1) > 30
    assert changed[covered].mean() > 0.3  # the mask is where the occluder was drawn ...
    near = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0  # anti-aliased edges spill over by < 1 px
    assert changed[~near].mean() < 0.003  # ... and nowhere else
    if occluder == "sunglasses":
        assert flags[36:48].all()
    if occluder == "mask":
        assert flags[48:68].all() and not flags[36:48].any()


# ---------------------------------------------------------------------------------------------
# on-disk trees
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "synthfaces"
    return sf.generate(root, sf.SynthFacesConfig.tiny(), workers=1)


def _metadata(root: Path) -> list[dict]:
    with open(root / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_generate_writes_300w_tree(tiny_root):
    cfg = sf.SynthFacesConfig.tiny()
    data = np.load(tiny_root / "landmarks.npz")
    truth = dict(zip(data["paths"].tolist(), data["landmarks"], strict=True))
    counts = {"train": cfg.w300_train, "common": cfg.w300_common, "challenging": cfg.w300_challenging}
    for split, n in counts.items():
        samples = list(read_split(tiny_root / "300w", split))
        assert len(samples) == n
        for s in samples:
            rel = Path(s.image_path).relative_to(tiny_root).as_posix()
            assert rel.endswith(".png")
            np.testing.assert_allclose(s.landmarks, truth[rel], atol=1e-3)
            img = cv2.imread(s.image_path)
            assert img.shape == (cfg.image_size, cfg.image_size, 3)
            assert np.all(s.landmarks >= 0) and np.all(s.landmarks <= cfg.image_size)
    # the face takes ~2/3 of the image: room for a box + padding crop
    lm = np.stack([s.landmarks for s in read_split(tiny_root / "300w", "common")])
    width = (lm[:, :, 0].max(1) - lm[:, :, 0].min(1)) / cfg.image_size
    assert 0.5 < np.median(width) < 0.8


def test_generated_image_matches_rendering(tiny_root):
    # the image on disk is the RGB rendering (PNG, lossless) of the recorded landmarks' face
    sample = next(iter(read_split(tiny_root / "300w", "train")))
    img = cv2.cvtColor(cv2.imread(sample.image_path), cv2.COLOR_BGR2RGB)
    jobs, _ = sf._plan(sf.SynthFacesConfig.tiny())
    job = next(j for j in jobs if (tiny_root / j.image_rel).as_posix() == Path(sample.image_path).as_posix())
    params, rng = sf._job_params(job, 0)
    rendered, lm, _ = sf.render_face(params, rng)
    np.testing.assert_array_equal(img, rendered)
    np.testing.assert_allclose(sample.landmarks, lm, atol=1e-3)


def test_generate_writes_rafdb_tree(tiny_root):
    cfg = sf.SynthFacesConfig.tiny()
    lines = (tiny_root / "rafdb/EmoLabel/list_patition_label.txt").read_text().splitlines()
    assert len(lines) == cfg.rafdb_train + cfg.rafdb_test
    names = {"train": 0, "test": 0}
    for line in lines:
        name, label = line.split()
        assert 1 <= int(label) <= 7
        split = name.split("_")[0]
        names[split] += 1
        aligned = tiny_root / "rafdb/Image/aligned" / name.replace(".jpg", "_aligned.jpg")
        assert aligned.is_file()
    assert names == {"train": cfg.rafdb_train, "test": cfg.rafdb_test}
    assert lines[0].startswith("train_00001.jpg ") and f"test_{1:04d}.jpg" in "".join(lines)
    img = cv2.imread(str(tiny_root / "rafdb/Image/aligned/test_0001_aligned.jpg"))
    assert img.shape == (cfg.rafdb_size, cfg.rafdb_size, 3)
    with open(tiny_root / "rafdb/metadata.csv", newline="") as f:
        raf = list(csv.DictReader(f))
    assert len(raf) == len(lines)
    for row, line in zip(raf, lines, strict=True):
        assert line == f"{row['image']} {row['label']}"


def test_metadata_masks_pairs_and_disjoint_identities(tiny_root):
    rows = _metadata(tiny_root)
    cfg = sf.SynthFacesConfig.tiny()
    n_identity_images = cfg.num_identity_folders * cfg.images_per_identity
    total = cfg.w300_train + cfg.w300_common + cfg.w300_challenging + cfg.rafdb_train + cfg.rafdb_test
    assert len(rows) == total + n_identity_images
    occluded = 0
    for row in rows:
        assert (tiny_root / row["path"]).is_file()
        assert row["generator_version"] == sf.GENERATOR_VERSION
        assert 1 <= int(row["expression"]) <= 7
        assert row["occluder"] in sf.OCCLUDER_TYPES
        if row["occluder"] == "none":
            assert row["mask_path"] == "" and row["occluded_landmarks"] == ""
        else:
            occluded += 1
            mask = cv2.imread(str(tiny_root / row["mask_path"]), cv2.IMREAD_UNCHANGED)
            assert mask.ndim == 2 and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            flags = [int(i) for i in row["occluded_landmarks"].split(";") if i]
            assert len(flags) == int(row["num_occluded_landmarks"])
    assert 0.1 < occluded / len(rows) < 0.6

    def ids(tree, *splits):
        return {row["identity"] for row in rows if row["tree"] == tree and row["split"] in splits}

    assert ids("300w", "train") and ids("300w", "common", "challenging")
    assert not ids("300w", "train") & ids("300w", "common", "challenging")
    assert not ids("rafdb", "train") & ids("rafdb", "test")
    assert not ids("rafdb", "train") & ids("300w", "common", "challenging")
    # every RAF-DB identity has a neutral/expressive pair sharing the pose
    pairs: dict[str, list[dict]] = {}
    for row in rows:
        if row["pair_id"]:
            pairs.setdefault(row["pair_id"], []).append(row)
    assert {r["identity"] for p in pairs.values() for r in p} == ids("rafdb", "train", "test")
    for members in pairs.values():
        assert sorted(r["pair_role"] for r in members) == ["expressive", "neutral"]
        neutral = next(r for r in members if r["pair_role"] == "neutral")
        expressive = next(r for r in members if r["pair_role"] == "expressive")
        assert neutral["expression"] == "7" and expressive["expression"] != "7"
        for key in ("identity", "roll", "yaw", "scale", "shift_x", "light_azimuth", "occluder"):
            assert neutral[key] == expressive[key]
    # identity folders
    # identity folders: train identities under identities/, held-out ones under identities_test/
    train_ids, _ = sf.identity_split(cfg)
    folders = sorted(p.name for p in (tiny_root / "identities").iterdir())
    assert folders == [f"{i:05d}" for i in train_ids if i < cfg.num_identity_folders]
    held_out = sorted(p.name for p in (tiny_root / "identities_test").iterdir())
    assert held_out == [f"{i:05d}" for i in sf.held_out_folder_identities(cfg)] and len(held_out) >= 2
    for folder in (tiny_root / "identities" / folders[0], tiny_root / "identities_test" / held_out[0]):
        assert len(list(folder.glob("*.jpg"))) == cfg.images_per_identity
    assert ids("identities", "train") == {str(int(f)) for f in folders}
    assert ids("identities", "test") == {str(int(f)) for f in held_out}


def test_generate_is_deterministic_across_workers_and_skips_when_done(tiny_root, tmp_path):
    other = sf.generate(tmp_path / "w2", sf.SynthFacesConfig.tiny(), workers=2)
    files = sorted(
        p.relative_to(tiny_root).as_posix()
        for p in tiny_root.rglob("*")
        if p.is_file() and p.name != "synthfaces.json"
    )
    assert files == sorted(
        p.relative_to(other).as_posix()
        for p in other.rglob("*")
        if p.is_file() and p.name != "synthfaces.json"
    )
    for rel in files:
        assert (tiny_root / rel).read_bytes() == (other / rel).read_bytes(), rel
    # a complete run is not redone
    marker = other / "synthfaces.json"
    image = other / files[0]
    before = (marker.stat().st_mtime_ns, image.stat().st_mtime_ns)
    sf.generate(other, sf.SynthFacesConfig.tiny())
    assert (marker.stat().st_mtime_ns, image.stat().st_mtime_ns) == before
    # a different seed regenerates (different pixels) and leaves no stale files
    (other / "300w/afw/stale.pts").write_text("x")
    sf.generate(other, sf.SynthFacesConfig.tiny(seed=1))
    assert not (other / "300w/afw/stale.pts").exists()
    assert (other / files[0]).read_bytes() != (tiny_root / files[0]).read_bytes()
    assert marker.exists() and not (other / ".synthfaces-in-progress").exists()


def test_generate_refuses_foreign_directory(tmp_path):
    (tmp_path / "300w").mkdir()
    with pytest.raises(FileExistsError):
        sf.generate(tmp_path, sf.SynthFacesConfig.tiny())


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        sf.main(["--help"])
    out = capsys.readouterr().out
    assert "--preset" in out and "default: demo" in out and "datasets/synthfaces" in out


def test_config_validation():
    with pytest.raises(ValueError):
        sf.SynthFacesConfig.tiny(rafdb_train=4).validate()  # too few images for one pair per identity
    with pytest.raises(ValueError):
        sf.SynthFacesConfig.preset("huge")
    assert sf.SynthFacesConfig.demo().num_identities >= 100
    assert os.fspath(sf.generate.__defaults__[0]) == "datasets/synthfaces"
