"""Bad input: under ``--on-bad-sample error`` a clear error naming file and line; under ``skip`` a
counted, listed skip. Exercised through the TFDS builders (what training reads), on fixture trees
written in the real formats. Also: refusals of unsafe files (path escapes, Lambda models)."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest
from fixtures import pts_text, random_image, wflw_line, write_cofw_v5

from kdface.errors import DataFormatError, UnsafeFileError
from kdface.io.safe_load import load_keras_model
from kdface.tasks.landmarks import wflw
from kdface.tasks.landmarks.evaluation import load_model
from kdface.tasks.landmarks.sources import load_landmark_split


def _good_face(folder, name, seed, size=(40, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    cv2.imwrite(str(folder / f"{name}.jpg"), random_image(h, w, seed))
    pts = np.random.default_rng(seed).uniform(5, min(h, w) - 5, (68, 2)).round(2)
    (folder / f"{name}.pts").write_text(pts_text(pts))
    return pts


def _jpeg(seed=0, h=40, w=48):
    return cv2.imencode(".jpg", random_image(h, w, seed))[1].tobytes()


# name -> (how to break one face in afw/, text the error must contain)
def _corrupt_image(folder):
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all" * 20)


def _truncated_image(folder):
    data = _jpeg()
    (folder / "bad.jpg").write_bytes(data[: len(data) * 2 // 3])  # header intact, scan cut short


def _empty_image(folder):
    (folder / "bad.jpg").write_bytes(b"")


def _missing_image(folder):
    (folder / "bad.jpg").unlink()


def _absurd_dimensions(folder):
    (folder / "bad.jpg").unlink()
    cv2.imwrite(str(folder / "bad.png"), np.zeros((4, 40000, 3), np.uint8))


def _malformed_pts(folder):
    text = (folder / "bad.pts").read_text().splitlines()
    text[10] = "12.5 twelve"
    (folder / "bad.pts").write_text("\n".join(text) + "\n")


def _nan_landmark(folder):
    text = (folder / "bad.pts").read_text().splitlines()
    text[5] = "nan 3.0"
    (folder / "bad.pts").write_text("\n".join(text) + "\n")


def _wrong_count(folder):
    pts = np.random.default_rng(0).uniform(5, 30, (67, 2))
    (folder / "bad.pts").write_text(pts_text(pts))


def _far_outside(folder):
    text = (folder / "bad.pts").read_text().splitlines()
    text[20] = "9000.0 12.0"
    (folder / "bad.pts").write_text("\n".join(text) + "\n")


BREAKAGES = {
    "corrupt image": (_corrupt_image, "an image file (JPEG, PNG"),
    "truncated image": (_truncated_image, "decodes completely"),
    "empty image": (_empty_image, "a non-empty image file"),
    "missing image": (_missing_image, "an image beside it"),
    "absurd dimensions": (_absurd_dimensions, "40000 x 4"),
    "malformed annotation line": (_malformed_pts, "bad.pts:11: expected two numbers"),
    "NaN landmark": (_nan_landmark, "bad.pts:6: expected finite coordinates"),
    "wrong landmark count": (_wrong_count, "68 landmarks"),
    "landmark far outside the image": (_far_outside, "point 17 at (8999.5"),
}


def _tree(root, breakage):
    for i in range(3):
        _good_face(root / "afw", f"good{i}", i)
    for i in range(2):
        _good_face(root / "ibug", f"test{i}", 10 + i)
        _good_face(root / "lfpw" / "testset", f"test{i}", 20 + i)
    _good_face(root / "afw", "bad", 99)
    breakage(root / "afw")


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_300w_bad_sample_error_names_file_and_reason(tmp_path, name):
    breakage, message = BREAKAGES[name]
    _tree(tmp_path / "raw", breakage)
    with pytest.raises(DataFormatError) as info:
        load_landmark_split("300w", "train", tmp_path / "raw", tmp_path / "tfds")
    assert "afw/bad." in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_300w_bad_sample_skip_counts_and_lists_it(tmp_path, name):
    breakage, message = BREAKAGES[name]
    _tree(tmp_path / "raw", breakage)
    source = load_landmark_split("300w", "train", tmp_path / "raw", tmp_path / "tfds", on_bad_sample="skip")
    keys = sorted(example["key"].numpy().decode() for example in source.dataset)
    assert keys == ["afw/good0", "afw/good1", "afw/good2"] and source.size == 3
    assert len(source.skipped) == 1
    assert "afw/bad." in source.skipped[0]["path"] and message in source.skipped[0]["reason"]
    # "error" loads the same prepared copy and refuses the split that holds the recorded bad sample.
    with pytest.raises(DataFormatError):
        load_landmark_split("300w", "train", tmp_path / "raw", tmp_path / "tfds")


@pytest.mark.parametrize("first", ["skip", "error"])
def test_error_and_skip_share_one_prepared_copy(tmp_path, first):
    from kdface.tasks.landmarks import w300

    _tree(tmp_path / "raw", _malformed_pts)
    bad_pts = (tmp_path / "raw" / "afw" / "bad.pts").resolve()
    expected = f"{bad_pts}:11: expected two numbers 'x y', got '12.5 twelve'"  # what the reader raises
    with pytest.raises(DataFormatError) as direct:
        list(w300.read_split(tmp_path / "raw", "train"))
    assert str(direct.value) == expected

    def load(policy, split="train"):
        return load_landmark_split("300w", split, tmp_path / "raw", tmp_path / "tfds", on_bad_sample=policy)

    for policy in (first, "skip" if first == "error" else "error"):
        if policy == "error":
            with pytest.raises(DataFormatError) as info:
                load("error")
            assert str(info.value) == expected
            assert info.value.path == str(bad_pts) and info.value.line == 11
        else:
            source = load("skip")
            keys = sorted(example["key"].numpy().decode() for example in source.dataset)
            assert keys == ["afw/good0", "afw/good1", "afw/good2"] and source.size == 3  # 4 faces, 1 bad
            listed = [(r["path"], r["line"], r["reason"]) for r in source.skipped]
            assert listed == [(str(bad_pts), 11, expected)]
    prepared = sorted(path.name for path in (tmp_path / "tfds").iterdir())
    assert len(prepared) == 1 and prepared[0].startswith("300w-"), prepared
    # a split without bad samples loads under "error" too
    assert load("error", "common").size == 2 and load("error", "common").skipped == []


def test_error_names_the_first_bad_sample_when_preparing_fails(tmp_path):
    """Every test image of RAF-DB empty: under "skip" preparing fails on the empty split (as before);
    under "error" the first bad sample is raised, as it stopped the preparation before."""
    from fer_fixtures import write_rafdb_scn

    from kdface.tasks.expressions.sources import load_expression_split

    write_rafdb_scn(tmp_path / "raw")
    for image in (tmp_path / "raw/Image/aligned").glob("test_*"):
        image.write_bytes(b"")
    first_bad = "list_patition_label.txt:10 -> "
    for policy, messages in (
        ("error", [first_bad, "test_0001_aligned.jpg: expected a non-empty image file, got '0 bytes'"]),
        ("skip", ["at least one valid sample in the 'test' split"]),
    ):
        with pytest.raises(DataFormatError) as info:
            load_expression_split("raf-db", "test", tmp_path / "raw", tmp_path / "tfds", on_bad_sample=policy)
        assert all(message in str(info.value) for message in messages), str(info.value)


# CK+ through its builder: 4 subjects, 2 folds (S005 and S010 in fold 0, S006 and S011 in fold 1);
# each breakage hits S005's first sequence. name -> (breakage, text of the error, pairs it removes)
def _ck_tree(root):
    from fer_fixtures import write_ckplus

    return write_ckplus(
        root, {"S005": [(5, 3), (3, 5)], "S006": [(4, 1)], "S010": [(4, 6)], "S011": [(3, 7)]}
    )


def _ck_missing_frame(root):
    (root / "cohn-kanade-images/S005/001/S005_001_00000002.png").unlink()


def _ck_one_frame(root):
    for f in (2, 3, 4, 5):
        (root / f"cohn-kanade-images/S005/001/S005_001_{f:08d}.png").unlink()


def _ck_emotion(text):
    return lambda root: (root / "Emotion/S005/001/S005_001_00000005_emotion.txt").write_text(text)


def _ck_unreadable(root):
    path = root / "cohn-kanade-images/S005/001/S005_001_00000004.png"
    path.write_bytes(path.read_bytes()[:60])  # a truncated download


CK_BREAKAGES = {
    "missing frame": (
        _ck_missing_frame,
        "S005/001: expected frames numbered 1..5 without gaps, got 'frame 00000002 missing'",
        3,
    ),  # fmt: skip
    "one-frame sequence": (_ck_one_frame, "S005/001: expected a sequence of at least 2 frames", 3),
    "garbage emotion file": (
        _ck_emotion("disgust\n"),
        "S005_001_00000005_emotion.txt:1: expected one number",
        3,
    ),
    "out-of-range code": (
        _ck_emotion("   8.0000000e+00\n"),
        "S005_001_00000005_emotion.txt:1: expected a CK+ emotion code 1..7",
        3,
    ),  # fmt: skip
    "unreadable image": (_ck_unreadable, "S005_001_00000005_emotion.txt -> ", 1),
}


@pytest.mark.parametrize("name", list(CK_BREAKAGES))
def test_ckplus_bad_input_error_names_file_and_skip_counts_it(tmp_path, name):
    from kdface.tasks.expressions.sources import PairOptions, load_pair_split

    breakage, message, lost = CK_BREAKAGES[name]
    breakage(_ck_tree(tmp_path / "raw"))

    def load(split, policy):
        return load_pair_split("ck+", split, tmp_path / "raw", tmp_path / "tfds", on_bad_sample=policy,
                               options=PairOptions(folds=2))  # fmt: skip

    with pytest.raises(DataFormatError) as info:
        load("test-fold0", "error")
    assert message in str(info.value), str(info.value)
    source = load("test-fold0", "skip")
    keys = [example["key"].decode() for example in source.dataset.as_numpy_iterator()]
    assert source.size == len(keys) == 3 + 2 + 3 - lost  # S005: 3 + 2 pairs, S010: 3
    assert len(source.skipped) == lost if name == "unreadable image" else len(source.skipped) == 1
    assert message in source.skipped[0]["reason"] and source.skipped[0]["split"] == "fold0"
    other = load("test-fold1", "error")  # the other fold has no bad sample: it loads under "error"
    assert other.size == 3 + 2 and other.skipped == []
    assert len(list((tmp_path / "tfds").iterdir())) == 1  # error and skip share one prepared copy


def test_ckplus_stray_entry_is_reported_for_every_fold(tmp_path):
    from kdface.tasks.expressions.sources import PairOptions, load_pair_split

    raw = _ck_tree(tmp_path / "raw")
    (raw / "cohn-kanade-images/S5").mkdir()  # not a subject folder name: a subject would go unread

    def load(split, policy):
        return load_pair_split(
            "ck+", split, raw, tmp_path / "tfds", on_bad_sample=policy, options=PairOptions(folds=2)
        )

    for split in ("test-fold0", "test-fold1", "train-fold1"):
        with pytest.raises(DataFormatError, match="S5: expected a subject folder named S"):
            load(split, "error")
        skipped = load(split, "skip").skipped
        assert len(skipped) == 1 and skipped[0]["split"] is None


def _wflw_tree(root, bad_line):
    ann_dir = root / wflw.ANNOTATION_DIR
    ann_dir.mkdir(parents=True)
    (root / "WFLW_images" / "e").mkdir(parents=True)
    (root / "WFLW_images" / "e" / "a.jpg").write_bytes(_jpeg(1, 60, 60))
    rng = np.random.default_rng(0)
    good = [wflw_line(rng.uniform(5, 50, (98, 2)), (2, 2, 55, 55), (0,) * 6, "e/a.jpg") for _ in range(2)]
    lines = [good[0], bad_line, good[1]]
    for split in ("train", "test"):
        (ann_dir / wflw.ANNOTATION_FILES[split]).write_text("\n".join(lines) + "\n")
    return ann_dir / wflw.ANNOTATION_FILES["train"]


def _line(path="e/a.jpg", flags=(0,) * 6, points=None):
    points = np.random.default_rng(1).uniform(5, 50, (98, 2)) if points is None else points
    return wflw_line(points, (2, 2, 55, 55), flags, path)


WFLW_BAD_LINES = {
    "wrong field count": (" ".join(_line().split()[:-3]), "207 space-separated fields"),
    "out-of-range attribute label": (_line(flags=(0, 2, 0, 0, 0, 0)), "attribute 'expression'"),
    "NaN coordinate": (
        " ".join(_line().split()[:7] + ["nan"] + _line().split()[8:]),
        "field 8 is 'nan' (not finite)",
    ),
    "missing image": (_line(path="e/missing.jpg"), "an image at"),
}


@pytest.mark.parametrize("name", list(WFLW_BAD_LINES))
def test_wflw_bad_line_error_and_skip(tmp_path, name):
    bad_line, message = WFLW_BAD_LINES[name]
    annotation = _wflw_tree(tmp_path / "raw", bad_line)
    with pytest.raises(DataFormatError) as info:
        load_landmark_split("wflw", "train", tmp_path / "raw", tmp_path / "tfds")
    assert f"{annotation}:2" in str(info.value) and message in str(info.value), str(info.value)
    source = load_landmark_split("wflw", "train", tmp_path / "raw", tmp_path / "tfds", on_bad_sample="skip")
    assert source.size == 2 and len(source.skipped) == 1 and source.skipped[0]["line"] == 2


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "/etc/passwd", "e/../../outside.jpg", "C:\\Windows\\x.jpg"]
)
def test_wflw_paths_leaving_the_dataset_root_are_refused_even_under_skip(tmp_path, path):
    annotation = _wflw_tree(tmp_path / "raw", _line(path=path))
    for policy in ("error", "skip"):
        with pytest.raises(UnsafeFileError) as info:
            list(wflw.read_split(tmp_path / "raw", "train", bad=policy))
        assert f"{annotation}:2" in str(info.value) and "refused" in str(info.value)


def test_cofw_bad_rows_error_or_skip(tmp_path):
    rng = np.random.default_rng(0)
    images = [random_image(50, 50, i) for i in range(3)]
    phis = np.concatenate([rng.uniform(5, 45, (3, 58)), np.zeros((3, 29))], axis=1)
    phis[1, 3] = np.nan
    boxes = np.tile([3.0, 3.0, 40.0, 40.0], (3, 1))
    write_cofw_v5(tmp_path / "COFW_train_color.mat", images, phis, boxes)
    write_cofw_v5(tmp_path / "COFW_test_color.mat", images, phis, boxes, names=("IsT", "phisT", "bboxesT"))
    with pytest.raises(DataFormatError, match=r"COFW_train_color.mat:1: expected finite values"):
        load_landmark_split("cofw", "train", tmp_path, tmp_path / "tfds")
    source = load_landmark_split("cofw", "train", tmp_path, tmp_path / "tfds", on_bad_sample="skip")
    assert source.size == 2 and [r["line"] for r in source.skipped] == [1]


def test_unsafe_keras_model_is_refused_unless_allowed(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    for loader in (load_keras_model, load_model):
        with pytest.raises(UnsafeFileError, match="--unsafe-load-model"):
            loader(tmp_path / "lambda.keras")
    loaded = load_keras_model(tmp_path / "lambda.keras", unsafe=True)
    np.testing.assert_allclose(loaded.predict(np.ones((1, 4)), verbose=0), 2.0)
    (tmp_path / "fake.keras").write_bytes(b"not a zip")
    with pytest.raises(UnsafeFileError, match="not a Keras v3 model archive"):
        load_keras_model(tmp_path / "fake.keras")


@pytest.mark.slow
def test_training_cli_skips_lists_and_counts_bad_samples(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from kdface.data import synthfaces

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    victim = sorted((data / "300w" / "afw").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:300])  # truncated download
    command = [sys.executable, root / "train_student.py", "--no-kd", "--dataset", "synthface", "--data-dir", data,
               "--tfds-dir", tmp_path / "tfds", "--image-size", "32", "--batch-size", "4", "--epochs", "1",
               "--out", tmp_path / "m.keras"]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def run(*extra):
        return subprocess.run(list(map(str, command + list(extra))), capture_output=True, text=True, env=env,
                              cwd=tmp_path)  # fmt: skip

    refused = run("--run-dir", tmp_path / "run_error")
    assert refused.returncode == 2, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and victim.name in last and "decodes completely" in last
    skipped = run("--run-dir", tmp_path / "run_skip", "--on-bad-sample", "skip")
    assert skipped.returncode == 0, skipped.stdout[-2000:] + skipped.stderr[-2000:]
    assert "skipped 1 bad sample(s)" in skipped.stdout
    listing = json.loads((tmp_path / "run_skip" / "skipped_samples.json").read_text())
    assert listing["count"] == 1 and victim.name in listing["skipped"][0]["path"]


@pytest.mark.slow
def test_expression_test_cli_errors_on_or_skips_bad_samples(tmp_path):
    """RAF-DB with a truncated image and a malformed label line: test.py stops naming the file
    (exit 2), or with --on-bad-sample skip evaluates the rest and lists both."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import keras
    from fer_fixtures import write_rafdb_scn

    root = Path(__file__).resolve().parents[1]
    data = tmp_path / "raf"
    write_rafdb_scn(data, extra_lines=["test_0099.jpg eight"])
    victim = data / "Image/aligned/test_0002_aligned.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    inputs = keras.Input((32, 32, 3))
    probs = keras.layers.Dense(7, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, probs).save(tmp_path / "fer.keras")
    card = {"task": "expressions", "dataset": "raf-db", "class_names": ["surprise", "fear", "disgust", "happiness",
            "sadness", "anger", "neutral"], "image_size": 32}  # fmt: skip
    (tmp_path / "fer.json").write_text(json.dumps(card))
    command = [sys.executable, root / "test.py", "--model", tmp_path / "fer.keras", "--data-dir", data,
               "--tfds-dir", tmp_path / "tfds"]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def run(*extra):
        return subprocess.run(list(map(str, command + list(extra))), capture_output=True, text=True, env=env)

    refused = run("--out", tmp_path / "out_error")
    assert refused.returncode == 2, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    # the first bad sample stops it: the truncated image, with the label line that names it
    assert last.startswith("error: ") and "list_patition_label.txt:11 -> " in last and victim.name in last, (
        last
    )
    skipped = run("--out", tmp_path / "out_skip", "--on-bad-sample", "skip")
    assert skipped.returncode == 0, skipped.stdout[-2000:] + skipped.stderr[-2000:]
    listing = json.loads((tmp_path / "out_skip" / "skipped_samples.json").read_text())
    reasons = " ".join(r["path"] + " " + r["reason"] for r in listing["skipped"])
    assert listing["count"] == 2 and victim.name in reasons and "list_patition_label.txt" in reasons
    report = json.loads((tmp_path / "out_skip" / "report.json").read_text())
    assert report["fer"]["splits"]["test"]["count"] == 6  # 7 test images, 1 truncated
