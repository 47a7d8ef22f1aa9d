"""CK+: the reader (pairs of one subject, labels, face boxes, folds) on fixture trees written here in
CK+'s layout (tests/fer_fixtures.py), its bad input, the TFDS builders and ``load_pair_split``, and
SynthFaces' CK+ tree read through the same reader."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fer_fixtures import ck_landmarks, write_ck_frame, write_ck_text, write_ckplus

from kdface.data import synthfaces
from kdface.data.builders import ensure_synthfaces
from kdface.data.validation import BadSamples
from kdface.errors import ConfigError, DataFormatError, UnknownNameError
from kdface.tasks.expressions import ckplus
from kdface.tasks.expressions.labels import CKPLUS_TO_KDFACE, CLASS_NAMES
from kdface.tasks.expressions.sources import (
    PairOptions,
    load_expression_split,
    load_pair_split,
    pair_datasets,
    pair_tfds_split,
)

DISGUST, CONTEMPT, SURPRISE, NEUTRAL = (
    CLASS_NAMES.index(n) for n in ("disgust", "contempt", "surprise", "neutral")
)
TREE = {
    "S005": [(5, 3), (4, None), (2, 2)],  # disgust; unlabelled; contempt in 2 frames
    "S010": [(6, 7)],  # surprise
    "S011": [(6, 7)],  # the same as S010, byte for byte (identical_files below)
}


def identical_files(subject, sequence, frame):
    """S010 and S011 share every pixel: only the folders tell them apart."""
    return (10 if subject in ("S010", "S011") else int(subject[1:])) * 10_000 + sequence * 100 + frame


@pytest.fixture
def tree(tmp_path):
    return write_ckplus(tmp_path / "ck", TREE, seed_of=identical_files)


def _pairs(root, **kwargs):
    kwargs.setdefault("folds", 3)
    return list(ckplus.read_pairs(root, **kwargs))


def _summary(pairs):
    return [(p.key, p.label, p.subject, p.fold) for p in pairs]


# ------------------------------------------------------------------------------------------ the reader


def test_label_map_covers_ckplus_codes():
    assert CKPLUS_TO_KDFACE == {0: NEUTRAL, 1: CLASS_NAMES.index("anger"), 2: CONTEMPT, 3: DISGUST,
                                4: CLASS_NAMES.index("fear"), 5: CLASS_NAMES.index("happiness"),
                                6: CLASS_NAMES.index("sadness"), 7: SURPRISE}  # fmt: skip


def test_reader_pairs_onset_with_the_last_frames_of_labelled_sequences(tree):
    assert _summary(_pairs(tree)) == [
        ("S005_001_00000001+S005_001_00000003", DISGUST, "S005", 0),
        ("S005_001_00000001+S005_001_00000004", DISGUST, "S005", 0),
        ("S005_001_00000001+S005_001_00000005", DISGUST, "S005", 0),
        ("S005_003_00000001+S005_003_00000002", CONTEMPT, "S005", 0),  # 2 frames: the onset is never a target
        ("S010_001_00000001+S010_001_00000004", SURPRISE, "S010", 1),
        ("S010_001_00000001+S010_001_00000005", SURPRISE, "S010", 1),
        ("S010_001_00000001+S010_001_00000006", SURPRISE, "S010", 1),
        ("S011_001_00000001+S011_001_00000004", SURPRISE, "S011", 2),
        ("S011_001_00000001+S011_001_00000005", SURPRISE, "S011", 2),
        ("S011_001_00000001+S011_001_00000006", SURPRISE, "S011", 2),
    ]
    one = _pairs(tree, peak_frames=1)
    assert [p.target.name for p in one] == ["S005_001_00000005", "S005_003_00000002", "S010_001_00000006",
                                           "S011_001_00000006"]  # fmt: skip
    pair = _pairs(tree)[0]
    assert pair.sequence == "S005/001" and pair.origin.endswith("S005_001_00000005_emotion.txt")
    assert Path(pair.neutral.path) == tree / "cohn-kanade-images/S005/001/S005_001_00000001.png"


def test_face_box_is_the_onset_landmarks_box_for_every_frame_of_a_sequence(tree):
    pairs = _pairs(tree)
    onset_points = ck_landmarks(identical_files("S005", 1, 1))  # what the fixture wrote, less CK+'s +0.5
    expected = ckplus.landmark_box(onset_points)
    for pair in pairs[:3]:
        np.testing.assert_allclose(pair.neutral_box, expected, atol=1e-4)
        assert pair.target_box == pair.neutral_box  # one window for the whole sequence
    x0, y0, x1, y1 = expected
    (px0, py0), (px1, py1) = onset_points.min(0), onset_points.max(0)
    assert x0 < px0 and x1 > px1 and y0 < py0 - 0.05 * (py1 - py0) and y1 > py1  # around the points, raised
    assert abs((x1 - x0) - (y1 - y0)) < 1e-6 and x1 - x0 == pytest.approx(
        ckplus.BOX_SCALE * max(px1 - px0, py1 - py0)
    )


def test_neutral_pairs_stay_within_a_subject(tree):
    neutral = [p for p in _pairs(tree, neutral_pairs=True) if p.label == NEUTRAL]
    assert [p.key for p in neutral] == [
        "S005_001_00000001+S005_002_00000001",  # unlabelled sequences' onsets count too
        "S005_002_00000001+S005_003_00000001",
        "S005_003_00000001+S005_001_00000001",
        "S010_001_00000001+S010_001_00000001",  # one sequence: the onset with itself
        "S011_001_00000001+S011_001_00000001",
    ]


def test_emotion_file_naming_an_earlier_frame_sets_the_peak(tmp_path):
    root = write_ckplus(tmp_path, {"S005": [(8, 5, 6)], "S006": [(3, 1)]})
    pairs = _pairs(root, folds=2)
    assert [p.target.name for p in pairs[:3]] == [f"S005_001_0000000{k}" for k in (4, 5, 6)]
    assert pairs[0].label == CLASS_NAMES.index("happiness")


def test_pairs_never_cross_subjects_even_with_identical_files(tree):
    pairs = _pairs(tree, neutral_pairs=True)
    for pair in pairs:
        folder = Path(pair.neutral.path).parent.parent.name
        assert folder == Path(pair.target.path).parent.parent.name == pair.subject
        assert pair.neutral.name.startswith(pair.subject) and pair.target.name.startswith(pair.subject)
    # S010 and S011 are byte-identical, and still never paired with each other
    s010 = tree / "cohn-kanade-images/S010/001/S010_001_00000001.png"
    assert s010.read_bytes() == (tree / "cohn-kanade-images/S011/001/S011_001_00000001.png").read_bytes()
    assert {p.subject for p in pairs if "S010" in p.key} == {"S010"}
    # a frame of S011 dropped into S010's folder is refused, not paired with S010's onset
    shutil.copy(
        tree / "cohn-kanade-images/S011/001/S011_001_00000006.png", tree / "cohn-kanade-images/S010/001/"
    )
    with pytest.raises(DataFormatError, match="a frame of S010/001"):
        _pairs(tree)
    bad = BadSamples("skip")
    assert {p.subject for p in _pairs(tree, bad=bad)} == {"S005", "S011"} and len(bad) == 1
    # and subject_pairs refuses two subjects' sequences outright
    sequences = ckplus.read_subject(tree, "S005") + ckplus.read_subject(tree, "S011")
    with pytest.raises(ValueError, match="one subject"):
        ckplus.subject_pairs(tree, sequences, fold=0)


def test_folds_are_subject_disjoint_balanced_and_deterministic():
    subjects = [
        f"S{n:03d}" for n in (5, 10, 11, 14, 22, 26, 29, 32, 34, 35, 37, 42, 44, 45, 46, 50, 51, 52, 53)
    ]
    folds = ckplus.subject_folds(subjects, 10)
    assert folds == ckplus.subject_folds(reversed(subjects), 10)  # by name, not by listing order
    assert [folds[s] for s in subjects] == [i % 10 for i in range(len(subjects))]
    sizes = np.bincount(list(folds.values()), minlength=10)
    assert sizes.max() - sizes.min() <= 1
    with pytest.raises(ValueError, match="2 folds"):
        ckplus.subject_folds(subjects, 1)


def test_pair_split_names():
    assert pair_tfds_split("test-fold3") == ("fold3", (3,))
    assert pair_tfds_split("test") == ("fold0", (0,))
    split, folds = pair_tfds_split("train-fold3[:90%]", 5)
    assert split == "fold0[:90%]+fold1[:90%]+fold2[:90%]+fold4[:90%]" and folds == (0, 1, 2, 4)
    with pytest.raises(ConfigError, match="fold 10 of 10"):
        pair_tfds_split("test-fold10")
    with pytest.raises(UnknownNameError, match="train-fold<k>"):
        pair_tfds_split("validation")


def test_landmarks_missing_fall_back_to_a_detected_face(tmp_path):
    root = write_ckplus(tmp_path / "noise", {"S005": [(3, 1)], "S006": [(3, 1)]}, landmarks=False)
    with pytest.raises(DataFormatError, match="Haar cascade"):  # random pixels: no face
        _pairs(root, folds=2)
    # a SynthFaces face is found by OpenCV's cascade
    face = synthfaces.render_face(
        synthfaces.FaceParams(width=320, height=245, face_size=110, clutter=0.0), 0
    )[0]
    for subject in ("S005", "S006"):
        for f in (1, 2, 3):
            path = root / f"cohn-kanade-images/{subject}/001/{subject}_001_{f:08d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(face, cv2.COLOR_RGB2GRAY))
    pairs = _pairs(root, folds=2)
    x0, y0, x1, y1 = pairs[0].neutral_box
    assert len(pairs) == 4 and 60 < x0 < x1 < 260 and 0 < y0 < y1 < 245


# ------------------------------------------------------------------------------------------ bad input


def _drop_frame(root):
    (root / "cohn-kanade-images/S005/001/S005_001_00000003.png").unlink()


def _one_frame(root):
    for f in (2, 3, 4, 5):
        (root / f"cohn-kanade-images/S005/001/S005_001_{f:08d}.png").unlink()


def _emotion(text):
    return lambda root: (root / "Emotion/S005/001/S005_001_00000005_emotion.txt").write_text(text)


def _emotion_beyond_the_frames(root):
    emotion = root / "Emotion/S005/001"
    (emotion / "S005_001_00000005_emotion.txt").rename(emotion / "S005_001_00000009_emotion.txt")


def _emotion_naming_frame_zero(root):
    emotion = root / "Emotion/S005/001"
    (emotion / "S005_001_00000005_emotion.txt").rename(emotion / "S005_001_00000000_emotion.txt")


def _two_emotion_files(root):
    write_ck_text(root / "Emotion/S005/001/S005_001_00000004_emotion.txt", "   3.0000000e+00\n")


def _label_without_frames(root):
    write_ck_text(root / "Emotion/S005/007/S005_007_00000004_emotion.txt", "   3.0000000e+00\n")


def _misnamed_frame(root):
    write_ck_frame(root / "cohn-kanade-images/S005/001/frame_6.png", 1)


def _landmark_line(root):
    path = root / "Landmarks/S005/001/S005_001_00000001_landmarks.txt"
    lines = path.read_text().splitlines()
    lines[6] = "   1.0e+01   nan"
    path.write_text("\n".join(lines) + "\n")


def _landmarks_missing(root):
    (root / "Landmarks/S005/001/S005_001_00000001_landmarks.txt").unlink()


SEQUENCE_BREAKAGES = {
    "missing frame": (
        _drop_frame,
        "S005/001: expected frames numbered 1..5 without gaps, got 'frame 00000003 missing'",
    ),
    "one frame": (_one_frame, "S005/001: expected a sequence of at least 2 frames"),
    "garbage emotion": (_emotion("happy\n"), "S005_001_00000005_emotion.txt:1: expected one number"),
    "emotion code 9": (_emotion("   9.0000000e+00\n"), "_emotion.txt:1: expected a CK+ emotion code 1..7"),
    "emotion code 0": (_emotion("0\n"), "_emotion.txt:1: expected a CK+ emotion code 1..7"),
    "fractional code": (_emotion("3.5"), "got '3.5'"),
    "two numbers": (_emotion("3\n4\n"), "_emotion.txt:2: expected one number"),
    "empty emotion": (_emotion(""), "got 'an empty file'"),
    "emotion beyond the frames": (_emotion_beyond_the_frames, "got 'frame 00000009 missing'"),
    "emotion naming frame 0": (_emotion_naming_frame_zero, "got 'frame 00000000 missing'"),
    "two emotion files": (_two_emotion_files, "one emotion file per sequence"),
    "label without frames": (_label_without_frames, "S005/007: expected the frames it labels"),
    "misnamed frame": (_misnamed_frame, "frame_6.png: expected a frame named S005_001_<8-digit"),
    "bad landmark line": (_landmark_line, "S005_001_00000001_landmarks.txt:7: expected two numbers"),
    "landmarks missing": (
        _landmarks_missing,
        "S005_001_00000001_landmarks.txt: expected the onset frame's 68",
    ),
}


@pytest.mark.parametrize("name", list(SEQUENCE_BREAKAGES))
def test_bad_sequence_is_a_clear_error_or_a_counted_skip(tree, name):
    breakage, message = SEQUENCE_BREAKAGES[name]
    breakage(tree)
    with pytest.raises(DataFormatError) as info:
        _pairs(tree)
    assert message in str(info.value), str(info.value)
    bad = BadSamples("skip")
    pairs = _pairs(tree, bad=bad)
    assert len(bad) == 1 and message in bad.skipped[0].reason
    lost = {"S005_001_"} if name != "label without frames" else set()  # the broken sequence, and only it
    assert {p.key[:9] for p in pairs} == {"S005_001_", "S005_003_", "S010_001_", "S011_001_"} - lost


def test_unreadable_frames_are_bad_pairs(tree):
    (tree / "cohn-kanade-images/S010/001/S010_001_00000005.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tree / "cohn-kanade-images/S011/001/S011_001_00000001.png").write_bytes(b"")  # an onset: all its pairs
    with pytest.raises(DataFormatError) as info:
        list(ckplus.validated_pairs(_pairs(tree)))
    assert "S010_001_00000006_emotion.txt -> " in str(info.value) and "S010_001_00000005.png" in str(
        info.value
    )
    bad = BadSamples("skip")
    kept = [pair.key for pair, _, _ in ckplus.validated_pairs(_pairs(tree), bad)]
    assert len(kept) == 10 - 1 - 3 and len(bad) == 4
    assert {Path(r.path.split(" -> ")[-1]).name for r in bad.skipped} == {"S010_001_00000005.png",
                                                                         "S011_001_00000001.png"}  # fmt: skip


def test_stray_entries_are_bad_samples_of_the_whole_dataset(tree):
    (tree / "cohn-kanade-images/README.txt").write_text("hello")
    (tree / "cohn-kanade-images/.DS_Store").write_text("ignored")
    with pytest.raises(DataFormatError, match="README.txt: expected a subject folder"):
        ckplus.subject_folders(tree)
    (tree / "cohn-kanade-images/README.txt").unlink()
    (tree / "Emotion/S099/001").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="S099: expected the subject's frames"):
        ckplus.subject_folders(tree)
    shutil.rmtree(tree / "Emotion")
    with pytest.raises(DataFormatError, match="Emotion/ folder"):
        ckplus.subject_folders(tree, "skip")


# ------------------------------------------------------------------------------------------ builders


def _subjects(source):
    return {e["subject"].decode() for e in source.dataset.as_numpy_iterator()}


def test_load_pair_split_prepares_folds_and_single_images(tmp_path):
    subjects = {f"S{n:03d}": [(4, n % 7 + 1), (3, None)] for n in range(5, 11)}
    raw = write_ckplus(tmp_path / "raw", subjects)
    options = PairOptions(folds=3)
    test = load_pair_split("ck+", "test-fold1", raw, tmp_path / "tfds", options=options)
    train = load_pair_split("ck+", "train-fold1", raw, tmp_path / "tfds", options=options)
    assert _subjects(test) == {"S006", "S009"} and _subjects(train) == {"S005", "S007", "S008", "S010"}
    assert (test.size, train.size, test.folds, train.folds) == (6, 12, (1,), (0, 2))
    assert test.num_classes == 8 and test.class_names == CLASS_NAMES and sum(test.class_counts) == 6
    example = next(test.dataset.as_numpy_iterator())
    assert set(example) == {"neutral", "target", "neutral_box", "target_box", "label", "key", "subject", "sequence",
                            "fold"}  # fmt: skip
    assert (
        example["neutral"][:4] == b"\x89PNG" and example["fold"] == 1 and example["label"].dtype == np.int64
    )
    assert example["key"].decode().startswith(example["sequence"].decode().replace("/", "_"))
    images = load_expression_split("ck+", "test-fold1", raw, tmp_path / "tfds", pair_options=options)
    assert images.size == 6 and images.num_classes == 8
    assert [e["key"] for e in images.dataset.as_numpy_iterator()] == [
        e["key"] for e in test.dataset.as_numpy_iterator()
    ]
    assert all(e["image"] == p["target"] for e, p in zip(images.dataset.as_numpy_iterator(),
                                                          test.dataset.as_numpy_iterator(), strict=True))  # fmt: skip
    with_neutral = load_pair_split("ck+", "test-fold1", raw, tmp_path / "tfds",
                                   options=PairOptions(folds=3, neutral_pairs=True))  # fmt: skip
    assert with_neutral.size == 6 + 4 and with_neutral.class_counts[NEUTRAL] == 4
    assert len(list((tmp_path / "tfds").iterdir())) == 2  # one prepared copy per protocol
    with pytest.raises(ConfigError, match="num_classes 8"):
        load_expression_split("ck+", "test", raw, tmp_path / "tfds", num_classes=7)
    with pytest.raises(UnknownNameError, match="no neutral/target pairs"):
        load_pair_split("raf-db", "test", raw, tmp_path / "tfds")
    assert pair_datasets() == ["ck+", "synthface-ck+"]


def test_fewer_subjects_than_folds_is_an_error(tmp_path):
    raw = write_ckplus(tmp_path / "raw", {"S005": [(3, 1)], "S006": [(3, 2)]})
    with pytest.raises(DataFormatError, match="at least 10 subject folders"):
        load_pair_split("ck+", "test", raw, tmp_path / "tfds", on_bad_sample="skip")


# ------------------------------------------------------------------------------------------ SynthFaces


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return synthfaces.generate(
        tmp_path_factory.mktemp("synth") / "synthfaces", synthfaces.SynthFacesConfig.tiny()
    )


def _ck_metadata(root):
    with open(root / "ckplus/metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_synthfaces_writes_a_ckplus_tree_with_ramps(tiny_root):
    config = synthfaces.SynthFacesConfig.tiny()
    jobs = synthfaces.plan_ckplus(config)
    rows = _ck_metadata(tiny_root)
    assert len(jobs) == config.ckplus_sequences and len({j.subject for j in jobs}) == config.ckplus_subjects
    assert len(rows) == sum(j.frames for j in jobs) and all(
        config.ckplus_min_frames <= j.frames <= config.ckplus_max_frames for j in jobs
    )
    labelled = [j for j in jobs if j.code is not None]
    assert {j.subject for j in labelled} == {j.subject for j in jobs}  # every subject has a label
    emotion_files = sorted((tiny_root / "ckplus/Emotion").rglob("*_emotion.txt"))
    assert len(emotion_files) == len(labelled)
    assert emotion_files[0].read_text() == f"   {float(labelled[0].code):.7e}\n"
    assert all(1 <= j.code <= 7 for j in labelled)
    for sequence in {(r["subject"], r["sequence"]) for r in rows}:
        frames = sorted(
            (r for r in rows if (r["subject"], r["sequence"]) == sequence), key=lambda r: int(r["frame"])
        )
        intensities = [float(r["intensity"]) for r in frames]
        assert intensities[0] == 0.0 and intensities == sorted(intensities) and intensities[-1] > 0.25
        assert len({r["identity"] for r in frames}) == 1
    identities = {r["subject"]: r["identity"] for r in rows}
    assert len(set(identities.values())) == config.ckplus_subjects
    assert min(int(i) for i in identities.values()) >= 100_000  # people of their own
    image = cv2.imread(str(tiny_root / rows[0]["path"]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (config.ckplus_height, config.ckplus_width)  # grey, like CK+'s frames


def test_synthfaces_ckplus_tree_reads_through_the_ckplus_reader(tiny_root, tmp_path):
    config = synthfaces.SynthFacesConfig.tiny()
    jobs = synthfaces.plan_ckplus(config)
    pairs = list(ckplus.read_pairs(tiny_root / "ckplus"))
    expected = sum(min(3, j.frames - 1) for j in jobs if j.code is not None)
    assert len(pairs) == expected
    codes = {j.folder: j.code for j in jobs}
    assert all(p.label == CKPLUS_TO_KDFACE[codes[p.sequence]] for p in pairs)
    assert CONTEMPT in {p.label for p in pairs} or 2 not in codes.values()
    for pair, hw, _ in ckplus.validated_pairs(pairs):
        x0, y0, x1, y1 = pair.neutral_box
        assert hw == (config.ckplus_height, config.ckplus_width) and 0 < x0 < x1 < hw[1] and y1 > 0
    # every subject's sequences are in one fold, and train/test folds through the builder are disjoint
    folds = ckplus.subject_folds({p.subject for p in pairs}, 10)
    assert all(p.fold == folds[p.subject] for p in pairs)
    for k in (0, 7):
        test = load_pair_split("synthface-ck+", f"test-fold{k}", tiny_root, tmp_path / "tfds")
        train = load_pair_split("synthface-ck+", f"train-fold{k}", tiny_root, tmp_path / "tfds")
        assert not _subjects(test) & _subjects(train)
        assert test.size + train.size == len(pairs)


def test_synthfaces_other_trees_unchanged_and_ckplus_added_alone(tmp_path):
    without = synthfaces.SynthFacesConfig.tiny(ckplus_subjects=0)
    assert not any(k.startswith("ckplus") for k in without.to_dict())  # as recorded before the CK+ tree
    root = synthfaces.generate(tmp_path / "raw", without)
    assert not (root / "ckplus").exists()
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    files.pop(root / "synthfaces.json")
    with pytest.raises(ConfigError, match="no CK\\+ tree"):
        ensure_synthfaces(root, "faceid", "ckplus")
    ensure_synthfaces(root, "tiny", "rafdb")  # another tree: nothing is written
    ensure_synthfaces(root, "tiny", "ckplus")
    assert (root / "ckplus/metadata.csv").is_file()
    assert files == {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}  # untouched, not rewritten
    info = json.loads((root / "synthfaces.json").read_text())
    assert (
        info["ckplus"]["sequences"] == 20 and info["config"] == synthfaces.SynthFacesConfig.tiny().to_dict()
    )
    other = synthfaces.generate(tmp_path / "full", synthfaces.SynthFacesConfig.tiny())
    for path in (root / "ckplus").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (other / path.relative_to(root)).read_bytes(), path
    before = (root / "synthfaces.json").stat().st_mtime_ns
    synthfaces.generate(root, synthfaces.SynthFacesConfig.tiny())  # complete: nothing to do
    assert (root / "synthfaces.json").stat().st_mtime_ns == before


def test_contempt_lifts_one_mouth_corner_and_mirrors():
    identity = synthfaces.sample_identity(0, 3)
    neutral = synthfaces.sample_expression(7, np.random.default_rng(0), jitter=0.0)
    contempt = synthfaces.sample_expression(8, np.random.default_rng(0), intensity=1.0, jitter=0.0)
    lm0 = synthfaces.face_landmarks(synthfaces.FaceParams(identity=identity.symmetric(), expression=neutral))
    lm1 = synthfaces.face_landmarks(synthfaces.FaceParams(identity=identity.symmetric(), expression=contempt))
    assert contempt.corner_asym > 0 and lm1[54, 1] < lm0[54, 1] - 1.0  # the image-right corner goes up
    assert abs(lm1[48, 1] - lm0[48, 1]) < abs(lm1[54, 1] - lm0[54, 1]) / 3
    mirrored = synthfaces.mirror_params(synthfaces.FaceParams(identity=identity, expression=contempt))
    assert mirrored.expression.corner_asym == -contempt.corner_asym
