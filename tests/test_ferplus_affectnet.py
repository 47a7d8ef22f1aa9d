"""FERPlus and AffectNet readers (kdface.tasks.expressions.ferplus, kdface.tasks.expressions.affectnet) on tiny trees in the real
formats: the FERPlus majority vote, both layouts of each dataset, the class maps, the Occlusion-FERPlus
and Occlusion-AffectNet lists, every malformed-line kind, and Hypothesis fuzzing of each csv parser."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from kdface.data.validation import BadSamples
from kdface.errors import DataFormatError, UnsafeFileError
from kdface.tasks.expressions import affectnet, ferplus

DOCUMENTED = (DataFormatError, UnsafeFileError)

# ------------------------------------------------------------------------------------ fixture writers


def grey_face(seed: int, side: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _write_lines(path: Path, lines, newline: str = "\n", bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{line}{newline}" for line in lines)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


def label_row(name: str, votes) -> str:
    """A row of Microsoft's FER2013{Train,Valid,Test}/label.csv."""
    return f'{name},"(0, 0, 48, 48)",' + ",".join(str(v) for v in votes)


def pixels_field(grey: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in grey.ravel())


# (split, image name, 10 votes, FERPlus label after the vote or None). One table, both layouts.
FERPLUS_ROWS = [
    ("train", "fer0000000.png", (2, 0, 0, 0, 0, 8, 0, 0, 0, 0), 5),  # disgust
    ("train", "fer0000001.png", (0, 0, 0, 0, 0, 0, 10, 0, 0, 0), 6),  # fear
    ("train", "fer0000002.png", (3, 1, 1, 1, 0, 0, 0, 0, 0, 0), 0),  # neutral, only after zeroing the 1s
    ("train", "fer0000003.png", (4, 4, 0, 0, 0, 0, 0, 0, 2, 0), None),  # tie
    ("valid", "fer0028710.png", (0, 0, 0, 0, 9, 1, 0, 0, 0, 0), 4),  # anger
    ("valid", "fer0028711.png", (4, 2, 2, 0, 0, 0, 0, 0, 0, 0), None),  # exactly half
    ("test", "fer0032220.png", (0, 8, 2, 0, 0, 0, 0, 0, 0, 0), 1),  # happiness
    ("test", "fer0032221.png", (4, 4, 0, 0, 0, 0, 0, 0, 0, 0), None),  # tie
    ("test", "fer0032222.png", (0, 0, 1, 1, 1, 0, 0, 0, 7, 0), None),  # unknown majority
    ("test", "fer0032223.png", (0, 0, 0, 6, 1, 1, 1, 0, 0, 1), 3),  # sadness
    ("test", "fer0034656.png", (1, 0, 0, 0, 0, 0, 0, 9, 0, 0), 7),  # contempt
    ("test", "fer0034657.png", (0, 0, 7, 0, 0, 0, 3, 0, 0, 0), 2),  # surprise
]
USAGE_OF = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
FOLDER_OF = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}


def write_ferplus_folders(root: Path, rows=FERPLUS_ROWS, newline="\n", bom=False, extra=None, skip_images=()):
    """Microsoft's layout: FER2013*/label.csv (no header) + the png images. ``extra``: {split: [raw lines]}."""
    for split, folder in FOLDER_OF.items():
        lines = []
        for i, (row_split, name, votes, _) in enumerate(rows):
            if row_split == split:
                lines.append(label_row(name, votes))
                if name not in skip_images:
                    write_image(root / folder / name, grey_face(i))
        lines += (extra or {}).get(split, [])
        _write_lines(root / folder / "label.csv", lines, newline, bom)
    return root


def write_ferplus_kaggle(root: Path, rows=FERPLUS_ROWS, newline="\n", bom=False, extra_rows=()):
    """Kaggle's layout: fer2013.csv + fer2013new.csv, aligned line for line. ``extra_rows``: raw
    ``(fer2013.csv line, fer2013new.csv line)`` pairs appended; one unnamed (dropped) row is included."""
    pixel_lines = ["emotion,pixels,Usage"]
    vote_lines = ["Usage,Image name," + ",".join(ferplus.VOTE_COLUMNS)]
    for i, (split, name, votes, _) in enumerate(rows):
        pixel_lines.append(f"0,{pixels_field(grey_face(i))},{USAGE_OF[split]}")
        vote_lines.append(f"{USAGE_OF[split]},{name}," + ",".join(str(v) for v in votes))
        if i == 0:  # a row FERPlus dropped: no image name
            pixel_lines.append(f"3,{pixels_field(grey_face(99))},Training")
            vote_lines.append("Training,,0,0,0,0,0,0,0,0,0,10")
    for pixel_line, vote_line in extra_rows:
        pixel_lines.append(pixel_line)
        vote_lines.append(vote_line)
    _write_lines(root / "fer2013.csv", pixel_lines, newline, bom)
    _write_lines(root / "fer2013new.csv", vote_lines, newline, bom)
    return root


def hex_id(i: int) -> str:
    return f"{i:056x}"


def affectnet_row(
    rel, code, box=(10, 20, 30, 40), landmarks="1.5;2.5;3.5;4.5", valence="0.5", arousal="-0.25"
):
    x, y, w, h = box
    return f'{rel},{x},{y},{w},{h},"{landmarks}",{code},{valence},{arousal}'


AFFECTNET_HEADER = ",".join(affectnet.COLUMNS)
# (split, relative path, expression code); the box of row i is (10 + i, 20, 30, 40).
AFFECTNET_ROWS = [
    ("train", f"1/{hex_id(1)}.jpg", 1),  # Happy
    ("train", f"1/{hex_id(2)}.jpg", 2),  # Sad
    ("train", f"2/{hex_id(3)}.png", 7),  # Contempt
    ("train", f"2/{hex_id(4)}.jpg", 8),  # None
    ("train", f"3/{hex_id(5)}.jpg", 9),  # Uncertain
    ("train", f"3/{hex_id(6)}.jpg", 10),  # Non-face
    ("val", f"10/{hex_id(11)}.jpg", 0),  # Neutral
    ("val", f"10/{hex_id(12)}.jpg", 3),  # Surprise
    ("val", f"11/{hex_id(13)}.jpg", 7),  # Contempt
    ("val", f"11/{hex_id(14)}.jpg", 6),  # Anger
]


def write_affectnet_csv(root: Path, rows=AFFECTNET_ROWS, header=True, newline="\n", bom=False, extra=None):
    """The original release: Manually_Annotated_file_lists/*.csv + Manually_Annotated_Images/."""
    for split, name in affectnet.CSV_FILES.items():
        lines = [AFFECTNET_HEADER] if header else []
        for i, (row_split, rel, code) in enumerate(rows):
            if row_split == split:
                lines.append(affectnet_row(rel, code, box=(10 + i, 20, 30, 40)))
                write_image(root / affectnet.IMAGE_DIR / rel, grey_face(i, 64))
        lines += (extra or {}).get(split, [])
        _write_lines(root / affectnet.CSV_DIR / name, lines, newline, bom)
    return root


def write_affectnet_npy(root: Path, items):
    """The newer release: ``items`` = {split: [(stem, value saved in N_exp.npy)]}; images N.jpg."""
    for split, entries in items.items():
        folder = root / affectnet.SET_DIRS[split]
        (folder / "annotations").mkdir(parents=True, exist_ok=True)
        for i, (stem, value) in enumerate(entries):
            write_image(folder / "images" / f"{stem}.jpg", grey_face(i, 16))
            np.save(folder / "annotations" / f"{stem}_exp.npy", value)
    return root


def _drain(fn):
    """``list(fn())``, or ``None`` when a documented error was raised (fuzz tests)."""
    try:
        return list(fn())
    except DOCUMENTED:
        return None


# ------------------------------------------------------------------------------------ FERPlus: the vote


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ((10, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0),
        ((0, 6, 2, 0, 0, 0, 0, 0, 0, 0), 1),
        ((4, 4, 0, 0, 0, 0, 0, 0, 0, 0), None),  # tie
        ((0, 2, 0, 0, 0, 0, 0, 0, 6, 0), None),  # unknown wins
        ((0, 2, 0, 0, 0, 0, 0, 0, 0, 8), None),  # NF wins
        ((3, 1, 1, 1, 0, 0, 0, 0, 0, 0), 0),  # 3 > 6/2 fails, but the 1s are zeroed first: 3 > 3/2
        ((2, 0, 0, 0, 0, 0, 0, 0, 2, 0), None),  # 2 vs unknown 2: a tie
        ((4, 2, 2, 0, 0, 0, 0, 0, 0, 0), None),  # exactly half
        ((5, 2, 2, 0, 0, 0, 0, 0, 0, 0), 0),  # just over half
        ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), None),  # all zeroed
        ((0,) * 10, None),
        ((0, 0, 0, 0, 0, 0, 0, 2, 0, 0), 7),  # contempt
    ],
)
def test_majority_label(votes, expected):
    assert ferplus.majority_label(votes) == expected


def test_ferplus_kdface_mapping():
    # FERPlus happiness (1) -> kdface 3, sadness (3) -> 4, surprise (2) -> 0, contempt (7) -> 7
    from kdface.tasks.expressions.labels import CLASS_NAMES, FERPLUS_TO_KDFACE

    for code, name in enumerate(ferplus.VOTE_COLUMNS[:8]):
        assert CLASS_NAMES[FERPLUS_TO_KDFACE[code]] == name
    assert FERPLUS_TO_KDFACE[1] == 3


def test_affectnet_kdface_mapping():
    # AffectNet Happy (1) -> kdface 3 (happiness), Sad (2) -> 4 (sadness)
    from kdface.tasks.expressions.labels import AFFECTNET_TO_KDFACE, CLASS_NAMES

    same = {"Happy": "happiness", "Sad": "sadness"}
    for code, name in enumerate(affectnet.EMOTION_NAMES):
        assert CLASS_NAMES[AFFECTNET_TO_KDFACE[code]] == same.get(name, name.lower())
    assert AFFECTNET_TO_KDFACE[2] == 4


# ------------------------------------------------------------------------------------ FERPlus: splits


def _expected(split):
    from kdface.tasks.expressions.labels import FERPLUS_TO_KDFACE

    return {
        name: FERPLUS_TO_KDFACE[code] for s, name, _, code in FERPLUS_ROWS if s == split and code is not None
    }


@pytest.mark.parametrize("split", ferplus.SPLITS)
def test_ferplus_layouts_agree(tmp_path, split):
    folders = write_ferplus_folders(tmp_path / "folders")
    kaggle = write_ferplus_kaggle(tmp_path / "kaggle")
    stats = {}
    a = list(ferplus.read_split(folders, split, stats=stats))
    b = list(ferplus.read_split(kaggle, split))
    assert {s.key: s.label for s in a} == _expected(split) == {s.key: s.label for s in b}
    dropped = sum(1 for s, _, _, c in FERPLUS_ROWS if s == split and c is None)
    assert stats == {
        "rows": len(a) + dropped,
        "kept": len(a),
        **({"dropped_by_vote": dropped} if dropped else {}),
    }
    by_key = {s.key: s for s in b}
    for sample in a:
        assert sample.image is None and Path(sample.image_path).is_file()
        other = by_key[sample.key]
        assert other.image_path is None and other.image.shape == (48, 48, 3) and other.image.dtype == np.uint8
        png = np.asarray(Image.open(sample.image_path))
        np.testing.assert_array_equal(other.image[:, :, 0], png)
        np.testing.assert_array_equal(other.image[:, :, 2], png)
        assert sample.attributes["votes"] == other.attributes["votes"]
        assert re.fullmatch(r".*label\.csv:\d+", sample.origin) and re.fullmatch(
            r".*fer2013new\.csv:\d+", other.origin
        )


def test_ferplus_labels(tmp_path):
    root = write_ferplus_folders(tmp_path)
    labels = {s.key: s.label for s in ferplus.read_split(root, "test")}
    assert labels["fer0032220.png"] == 3  # FERPlus happiness -> kdface happiness
    assert labels["fer0032223.png"] == 4  # sadness
    assert labels["fer0034657.png"] == 0  # surprise
    assert labels["fer0034656.png"] == 7  # contempt


def test_ferplus_kaggle_counts_unnamed_rows(tmp_path):
    root = write_ferplus_kaggle(tmp_path)
    stats = {}
    samples = list(ferplus.read_split(root, "train", stats=stats))
    assert len(samples) == 3 and stats["unnamed"] == 1 and stats["dropped_by_vote"] == 1


def test_ferplus_crlf_bom_and_data_subfolder(tmp_path):
    write_ferplus_folders(tmp_path / "repo" / "data", newline="\r\n", bom=True)
    assert {s.key: s.label for s in ferplus.read_split(tmp_path / "repo", "test")} == _expected("test")
    kaggle = write_ferplus_kaggle(tmp_path / "k", newline="\r\n", bom=True)
    assert {s.key: s.label for s in ferplus.read_split(kaggle, "valid")} == _expected("valid")


def test_ferplus_whole_dataset_errors(tmp_path):
    with pytest.raises(DataFormatError, match="a FERPlus tree"):
        list(ferplus.read_split(tmp_path, "test"))
    (tmp_path / "FER2013Test").mkdir()
    with pytest.raises(DataFormatError, match="label file of split 'test'"):
        list(ferplus.read_split(tmp_path, "test"))
    _write_lines(
        tmp_path / "FER2013Test" / "label.csv", [label_row("fer1.png", (4, 4, 0, 0, 0, 0, 0, 0, 0, 0))]
    )
    with pytest.raises(DataFormatError, match="at least one FERPlus image"):  # all dropped: an empty split
        list(ferplus.read_split(tmp_path, "test"))
    kaggle = write_ferplus_kaggle(tmp_path / "k")
    (kaggle / "fer2013new.csv").write_text("Usage,Name\nTraining,x\n")
    with pytest.raises(DataFormatError, match=r"fer2013new\.csv:1: expected a header line"):
        list(ferplus.read_split(kaggle, "train"))
    with pytest.raises(ValueError, match="unknown FERPlus split"):
        list(ferplus.read_split(kaggle, "val"))


def test_ferplus_kaggle_misaligned_files(tmp_path):
    root = write_ferplus_kaggle(tmp_path)
    lines = (root / "fer2013.csv").read_text().splitlines()
    (root / "fer2013.csv").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(DataFormatError, match=r"fer2013\.csv:\d+: expected a row for every row"):
        list(ferplus.read_split(root, "test"))


def test_ferplus_unsafe_image_name(tmp_path):
    root = write_ferplus_folders(tmp_path, extra={"test": [label_row("../../etc/passwd", (10,) + (0,) * 9)]})
    with pytest.raises(UnsafeFileError):
        list(ferplus.read_split(root, "test", bad="skip"))


GOOD_VOTES = (0, 9, 1, 0, 0, 0, 0, 0, 0, 0)
FOLDER_BAD_LINES = {
    "column count": 'fer0040000.png,"(0, 0, 48, 48)",1,2,3',
    "non-integer vote": 'fer0040000.png,"(0, 0, 48, 48)",0,9,x,0,0,0,0,0,0,0',
    "float vote": 'fer0040000.png,"(0, 0, 48, 48)",0,9.5,1,0,0,0,0,0,0,0',
    "negative vote": 'fer0040000.png,"(0, 0, 48, 48)",0,9,-1,0,0,0,0,0,0,0',
    "missing image": label_row("fer0040000.png", GOOD_VOTES),
}


@pytest.mark.parametrize("kind", sorted(FOLDER_BAD_LINES))
def test_ferplus_folders_bad_lines(tmp_path, kind):
    root = write_ferplus_folders(tmp_path, extra={"test": [FOLDER_BAD_LINES[kind]]})
    line = 1 + sum(1 for s, *_ in FERPLUS_ROWS if s == "test")
    with pytest.raises(DataFormatError, match=rf"FER2013Test/label\.csv:{line}: expected"):
        list(ferplus.read_split(root, "test"))
    bad = BadSamples("skip")
    samples = list(ferplus.read_split(root, "test", bad=bad))
    assert {s.key: s.label for s in samples} == _expected("test")
    assert len(bad) == 1 and bad.skipped[0].line == line and bad.skipped[0].path.endswith("label.csv")


PIXELS_OK = pixels_field(grey_face(7))
KAGGLE_BAD_ROWS = {  # (fer2013.csv line, fer2013new.csv line, the file the error names)
    "votes column count": (
        f"0,{PIXELS_OK},PrivateTest",
        "PrivateTest,fer0040000.png,1,2,3",
        "fer2013new.csv",
    ),
    "pixels column count": (
        f"0,{PIXELS_OK}",
        "PrivateTest,fer0040000.png,0,9,1,0,0,0,0,0,0,0",
        "fer2013.csv",
    ),
    "non-integer vote": (
        f"0,{PIXELS_OK},PrivateTest",
        "PrivateTest,fer0040000.png,0,9,a,0,0,0,0,0,0,0",
        "fer2013new.csv",
    ),  # fmt: skip
    "negative vote": (
        f"0,{PIXELS_OK},PrivateTest",
        "PrivateTest,fer0040000.png,0,9,-3,0,0,0,0,0,0,0",
        "fer2013new.csv",
    ),  # fmt: skip
    "unknown usage": (
        f"0,{PIXELS_OK},PrivateTest",
        "Testing,fer0040000.png,0,9,1,0,0,0,0,0,0,0",
        "fer2013new.csv",
    ),
    "usage mismatch": (
        f"0,{PIXELS_OK},Training",
        "PrivateTest,fer0040000.png,0,9,1,0,0,0,0,0,0,0",
        "fer2013.csv",
    ),
    "2303 pixels": (
        f"0,{PIXELS_OK.rsplit(' ', 1)[0]},PrivateTest",
        "PrivateTest,fer0040000.png,0,9,1,0,0,0,0,0,0,0",
        "fer2013.csv",
    ),  # fmt: skip
    "pixel 256": (
        f"0,256 {PIXELS_OK.split(' ', 1)[1]},PrivateTest",
        "PrivateTest,fer0040000.png,0,9,1,0,0,0,0,0,0,0",
        "fer2013.csv",
    ),  # fmt: skip
    "pixel not int": (
        f"0,1.5 {PIXELS_OK.split(' ', 1)[1]},PrivateTest",
        "PrivateTest,fer0040000.png,0,9,1,0,0,0,0,0,0,0",
        "fer2013.csv",
    ),  # fmt: skip
}


@pytest.mark.parametrize("kind", sorted(KAGGLE_BAD_ROWS))
def test_ferplus_kaggle_bad_lines(tmp_path, kind):
    pixel_line, vote_line, named = KAGGLE_BAD_ROWS[kind]
    root = write_ferplus_kaggle(tmp_path, extra_rows=[(pixel_line, vote_line)])
    line = len(FERPLUS_ROWS) + 3  # header + rows + the unnamed row, then ours
    with pytest.raises(DataFormatError, match=rf"{re.escape(named)}:{line}: expected"):
        list(ferplus.read_split(root, "test"))
    bad = BadSamples("skip")
    assert {s.key: s.label for s in ferplus.read_split(root, "test", bad=bad)} == _expected("test")
    assert len(bad) == 1 and bad.skipped[0].line == line


# ------------------------------------------------------------------------------------ Occlusion-FERPlus

OCCLUSION_FERPLUS = ["1_fer0032220.png 8 0", "3_fer0032223.png 8 2", "7_fer0034656.png 8 1", "4_fer0028710.png 8 3",
                     "5_fer0000000.png 8 0"]  # fmt: skip


@pytest.mark.parametrize("layout", ["folders", "kaggle"])
def test_ferplus_occlusion_list(tmp_path, layout):
    root = (write_ferplus_folders if layout == "folders" else write_ferplus_kaggle)(tmp_path)
    _write_lines(root / ferplus.OCCLUSION_LIST, OCCLUSION_FERPLUS, newline="\r\n")
    samples = list(ferplus.read_occlusion_list(root))
    assert [(s.key, s.label, s.attributes["occlusion_code"]) for s in samples] == [
        ("fer0032220.png", 3, 0),
        ("fer0032223.png", 4, 2),
        ("fer0034656.png", 7, 1),
        ("fer0028710.png", 5, 3),  # found in valid
        ("fer0000000.png", 2, 0),  # found in train
    ]
    assert [s.attributes["split"] for s in samples] == ["test", "test", "test", "valid", "train"]
    assert samples[1].origin.endswith(f"{ferplus.OCCLUSION_LIST}:2")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2_fer0032220.png 8 0", "by the FERPlus majority vote"),  # label mismatch
        ("0_fer0032221.png 8 0", "no majority"),  # a tie: not in FERPlus
        ("1_fer9999999.png 8 0", "an image of FERPlus"),  # nowhere
        ("9_fer0032220.png 8 0", "a label 0..7"),
        ("fer0032220.png 8 0", "a label 0..7"),
        ("1_fer0032220.png 8", "2 fields"),
        ("1_fer0032220.png 8 x", "non-negative integers"),
    ],
)
def test_ferplus_occlusion_list_bad_lines(tmp_path, line, message):
    root = write_ferplus_folders(tmp_path)
    path = _write_lines(tmp_path / "list.txt", [OCCLUSION_FERPLUS[0], line], newline="\r\n")
    with pytest.raises(DataFormatError, match=rf"list\.txt:2: expected .*{message}"):
        list(ferplus.read_occlusion_list(root, path))
    bad = BadSamples("skip")
    assert [s.key for s in ferplus.read_occlusion_list(root, path, bad=bad)] == ["fer0032220.png"]
    assert len(bad) == 1 and bad.skipped[0].line == 2


# ------------------------------------------------------------------------------------ AffectNet


@pytest.mark.parametrize("header", [True, False])
def test_affectnet_csv(tmp_path, header):
    root = write_affectnet_csv(tmp_path, header=header, newline="\r\n", bom=True)
    stats = {}
    train = list(affectnet.read_split(root, "train", stats=stats))
    assert [(s.key, s.label) for s in train] == [
        (f"1/{hex_id(1)}.jpg", 3),  # Happy -> kdface happiness
        (f"1/{hex_id(2)}.jpg", 4),  # Sad -> kdface sadness
        (f"2/{hex_id(3)}.png", 7),  # Contempt
    ]
    assert stats == {"rows": 6, "kept": 3, "dropped_None": 1, "dropped_Uncertain": 1, "dropped_Non-face": 1}
    assert train[1].box == (11.0, 20.0, 41.0, 60.0)  # (x, y, x + w, y + h)
    assert train[0].attributes["valence"] == 0.5 and train[0].attributes["arousal"] == -0.25
    assert Path(train[0].image_path).is_file()
    assert train[0].origin.endswith(f"training.csv:{2 if header else 1}")
    val = list(affectnet.read_split(root, "val"))
    assert [s.label for s in val] == [6, 0, 7, 5]


def test_affectnet_seven_classes(tmp_path):
    root = write_affectnet_csv(tmp_path)
    stats = {}
    val = list(affectnet.read_split(root, "val", num_classes=7, stats=stats))
    assert [s.label for s in val] == [6, 0, 5] and stats["dropped_Contempt"] == 1
    with pytest.raises(ValueError, match="7 or 8"):
        list(affectnet.read_split(root, "val", num_classes=6))


def test_affectnet_npy_layout(tmp_path):
    items = {
        "train": [("0", np.array("1")), ("1", np.array(["2"])), ("2", np.array(7)), ("10", np.array([9]))],
        "val": [("0", np.array("0")), ("3", np.array(b"3")), ("5", np.array(8.0))],
    }
    root = write_affectnet_npy(tmp_path, items)
    stats = {}
    train = list(affectnet.read_split(root, "train", stats=stats))
    assert [(s.key, s.label, s.box) for s in train] == [
        ("0.jpg", 3, None),
        ("1.jpg", 4, None),
        ("2.jpg", 7, None),
    ]
    assert stats["dropped_Uncertain"] == 1
    assert [s.label for s in affectnet.read_split(root, "val", num_classes=7)] == [6, 0]


def test_affectnet_layouts_agree(tmp_path):
    csv_root = write_affectnet_csv(tmp_path / "csv")
    items = [(str(i), np.array(str(code))) for i, (s, _, code) in enumerate(AFFECTNET_ROWS) if s == "val"]
    npy_root = write_affectnet_npy(tmp_path / "npy", {"val": items})
    for n in (7, 8):
        a = [s.label for s in affectnet.read_split(csv_root, "val", num_classes=n)]
        b = [s.label for s in affectnet.read_split(npy_root, "val", num_classes=n)]
        assert a == b


def test_affectnet_whole_dataset_errors(tmp_path):
    with pytest.raises(DataFormatError, match="an AffectNet tree"):
        list(affectnet.read_split(tmp_path, "train"))
    root = write_affectnet_csv(tmp_path)
    (root / affectnet.CSV_DIR / "validation.csv").write_text("subDirectory_filePath,face_x,expression\n")
    with pytest.raises(DataFormatError, match=r"validation\.csv:1: expected a header line"):
        list(affectnet.read_split(root, "val"))
    (root / affectnet.CSV_DIR / "validation.csv").write_text(
        AFFECTNET_HEADER + "\n" + affectnet_row("a.jpg", 9)
    )
    with pytest.raises(DataFormatError, match="at least one AffectNet sample"):
        list(affectnet.read_split(root, "val"))
    (root / affectnet.CSV_DIR / "validation.csv").unlink()
    with pytest.raises(DataFormatError, match="annotation file of split 'val'"):
        list(affectnet.read_split(root, "val"))


REL_BAD = f"9/{hex_id(99)}.jpg"
AFFECTNET_BAD_LINES = {
    "field count": f"{REL_BAD},1,2,3",
    "box not a number": affectnet_row(f"1/{hex_id(1)}.jpg", 1, box=("x", 20, 30, 40)),
    "box nan": affectnet_row(f"1/{hex_id(1)}.jpg", 1, box=(10, "nan", 30, 40)),
    "zero width": affectnet_row(f"1/{hex_id(1)}.jpg", 1, box=(10, 20, 0, 40)),
    "negative height": affectnet_row(f"1/{hex_id(1)}.jpg", 1, box=(10, 20, 30, -4)),
    "label not an int": affectnet_row(f"1/{hex_id(1)}.jpg", "1.5"),
    "label empty": affectnet_row(f"1/{hex_id(1)}.jpg", ""),
    "label out of range": affectnet_row(f"1/{hex_id(1)}.jpg", 11),
    "missing image": affectnet_row(REL_BAD, 1),
    "empty path": affectnet_row("", 1),
}


@pytest.mark.parametrize("kind", sorted(AFFECTNET_BAD_LINES))
def test_affectnet_bad_lines(tmp_path, kind):
    root = write_affectnet_csv(tmp_path, extra={"train": [AFFECTNET_BAD_LINES[kind]]})
    line = 2 + sum(1 for s, *_ in AFFECTNET_ROWS if s == "train")
    with pytest.raises(DataFormatError, match=rf"training\.csv:{line}: expected"):
        list(affectnet.read_split(root, "train"))
    bad = BadSamples("skip")
    assert len(list(affectnet.read_split(root, "train", bad=bad))) == 3
    assert len(bad) == 1 and bad.skipped[0].line == line


def test_affectnet_unsafe_path(tmp_path):
    root = write_affectnet_csv(tmp_path, extra={"train": [affectnet_row("/etc/passwd", 1)]})
    with pytest.raises(UnsafeFileError):
        list(affectnet.read_split(root, "train", bad="skip"))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("4_exp.npy", np.array([1, 2]), "0-d or 1-element"),
        ("4_exp.npy", np.array("happy"), "integer expression code"),
        ("4_exp.npy", np.array(True), "integer expression code"),
        ("4_exp.npy", np.array(12), "expression code 0..10"),
        ("4_exp.npy", np.array([{"a": 1}], dtype=object), "no pickle"),
        ("4_exp.npy", b"not a numpy file", "no pickle"),
        ("4_exp.npy", None, "an expression file"),  # image without its annotation
    ],
)
def test_affectnet_npy_bad(tmp_path, name, content, message):
    root = write_affectnet_npy(tmp_path, {"train": [("0", np.array("1"))]})
    annotations = root / "train_set" / "annotations"
    write_image(root / "train_set" / "images" / "4.jpg", grey_face(4, 16))
    if isinstance(content, bytes):
        (annotations / name).write_bytes(content)
    elif content is not None:
        np.save(annotations / name, content, allow_pickle=True)
    with pytest.raises(DataFormatError, match=message):
        list(affectnet.read_split(root, "train"))
    bad = BadSamples("skip")
    assert [s.key for s in affectnet.read_split(root, "train", bad=bad)] == ["0.jpg"] and len(bad) == 1


def test_affectnet_npy_missing_image(tmp_path):
    root = write_affectnet_npy(tmp_path, {"train": [("0", np.array("1")), ("1", np.array("2"))]})
    (root / "train_set" / "images" / "1.jpg").unlink()
    with pytest.raises(DataFormatError, match="1_exp.npy: expected an image"):
        list(affectnet.read_split(root, "train"))


# ------------------------------------------------------------------------------------ Occlusion-AffectNet

OCCLUSION_AFFECTNET = [
    f"val/0/{hex_id(11)}/",
    f"val/3/{hex_id(12)}/",
    f"val/7/{hex_id(13)}/",
    f"val/6/{hex_id(14)}/",
]


def test_affectnet_occlusion_list(tmp_path):
    root = write_affectnet_csv(tmp_path)
    _write_lines(root / affectnet.OCCLUSION_LIST, OCCLUSION_AFFECTNET, newline="\r\n")
    samples = list(affectnet.read_occlusion_list(root))
    assert [s.label for s in samples] == [6, 0, 7, 5]
    assert samples[0].key == f"10/{hex_id(11)}.jpg" and samples[0].box == (16.0, 20.0, 46.0, 60.0)
    assert samples[2].origin.endswith(f"{affectnet.OCCLUSION_LIST}:3")
    assert samples[2].attributes["label_origin"].endswith("validation.csv:4")
    stats = {}
    seven = list(affectnet.read_occlusion_list(root, num_classes=7, stats=stats))
    assert [s.label for s in seven] == [6, 0, 5] and stats == {"dropped_Contempt": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"val/2/{hex_id(12)}/", "the label of"),  # mismatch: the image is Surprise (3)
        (f"val/1/{hex_id(99)}/", "an image of the AffectNet validation split"),
        (f"train/3/{hex_id(12)}/", "val/<AffectNet label"),
        (f"val/8/{hex_id(12)}/", "val/<AffectNet label"),
        ("val/3/", "val/<AffectNet label"),
    ],
)
def test_affectnet_occlusion_list_bad_lines(tmp_path, line, message):
    root = write_affectnet_csv(tmp_path)
    path = _write_lines(tmp_path / "occ.txt", [OCCLUSION_AFFECTNET[0], line], newline="\r\n")
    with pytest.raises(DataFormatError, match=rf"occ\.txt:2: expected .*{re.escape(message)}"):
        list(affectnet.read_occlusion_list(root, path))
    bad = BadSamples("skip")
    assert len(list(affectnet.read_occlusion_list(root, path, bad=bad))) == 1 and len(bad) == 1


def test_affectnet_occlusion_list_npy_hint(tmp_path):
    root = write_affectnet_npy(tmp_path, {"val": [("0", np.array("0"))]})
    path = _write_lines(tmp_path / "occ.txt", OCCLUSION_AFFECTNET[:1])
    with pytest.raises(DataFormatError, match="names images by number"):
        list(affectnet.read_occlusion_list(root, path))


# ------------------------------------------------------------------------------------ fuzzing

WEIRD = (
    "",
    " ",
    "nan",
    "-1",
    "1e999",
    "²",
    "99999999999999999999",
    "../x",
    "/abs",
    '"',
    '"a,b"',
    "\x00",
    ";",
    "\r",
)


@st.composite
def csv_lines(draw, seeds):
    """A few lines: seed lines with fields replaced by weird or random text, and random text lines."""
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            lines.append(draw(st.text(max_size=80)))
            continue
        fields = draw(st.sampled_from(seeds)).split(",")
        for _ in range(draw(st.integers(0 if kind == 1 else 1, 3))):
            i = draw(st.integers(0, len(fields) - 1))
            fields[i] = draw(st.one_of(st.sampled_from(WEIRD), st.text(max_size=12)))
        if draw(st.booleans()) and len(fields) > 1:
            del fields[draw(st.integers(0, len(fields) - 1))]
        lines.append(",".join(fields))
    return lines


def _write_fuzz(path: Path, lines, newline: str) -> None:
    path.write_bytes(newline.join(lines).encode("utf-8", "surrogatepass"))


NEWLINES = st.sampled_from(("\n", "\r\n"))
BADS = st.sampled_from((None, "skip"))


@pytest.fixture(scope="module")
def fuzz_dirs():
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_ferplus_folders(root / "folders")
        write_ferplus_kaggle(root / "kaggle")
        write_affectnet_csv(root / "affectnet")
        write_ferplus_folders(root / "occ_folders")
        write_affectnet_csv(root / "occ_affectnet")
        yield root


@settings(max_examples=100)
@given(
    lines=csv_lines([label_row(n, v) for s, n, v, _ in FERPLUS_ROWS if s == "test"]),
    newline=NEWLINES,
    bad=BADS,
)
def test_fuzz_ferplus_label_csv(fuzz_dirs, lines, newline, bad):
    root = fuzz_dirs / "folders"
    _write_fuzz(root / "FER2013Test" / "label.csv", lines, newline)
    for sample in _drain(lambda: ferplus.read_split(root, "test", bad=bad)) or []:
        assert 0 <= sample.label < 8 and os.path.isfile(sample.image_path)


_PIXEL_SEEDS = [f"0,{pixels_field(grey_face(i))},PrivateTest" for i in range(2)] + ["0,1 2 3,PrivateTest"]
_VOTE_SEEDS = [f"PrivateTest,{n}," + ",".join(map(str, v)) for s, n, v, _ in FERPLUS_ROWS if s == "test"]


@settings(max_examples=60)
@given(pixels=csv_lines(_PIXEL_SEEDS), votes=csv_lines(_VOTE_SEEDS), newline=NEWLINES, bad=BADS)
def test_fuzz_ferplus_kaggle_csv(fuzz_dirs, pixels, votes, newline, bad):
    root = fuzz_dirs / "kaggle"
    _write_fuzz(root / "fer2013.csv", ["emotion,pixels,Usage"] + pixels, newline)
    _write_fuzz(
        root / "fer2013new.csv", ["Usage,Image name," + ",".join(ferplus.VOTE_COLUMNS)] + votes, newline
    )
    for sample in _drain(lambda: ferplus.read_split(root, "test", bad=bad)) or []:
        assert sample.image.shape == (48, 48, 3) and sample.image.dtype == np.uint8


@settings(max_examples=100)
@given(
    lines=csv_lines([AFFECTNET_HEADER] + [affectnet_row(r, c) for s, r, c in AFFECTNET_ROWS if s == "val"]),
    newline=NEWLINES,
    bad=BADS,
    num_classes=st.sampled_from((7, 8)),
)
def test_fuzz_affectnet_csv(fuzz_dirs, lines, newline, bad, num_classes):
    root = fuzz_dirs / "affectnet"
    _write_fuzz(root / affectnet.CSV_DIR / "validation.csv", lines, newline)
    for sample in _drain(lambda: affectnet.read_split(root, "val", num_classes=num_classes, bad=bad)) or []:
        assert 0 <= sample.label < num_classes and all(np.isfinite(sample.box))
        assert sample.box[2] > sample.box[0] and sample.box[3] > sample.box[1]


@settings(max_examples=60)
@given(
    ferplus_list=st.lists(st.one_of(st.sampled_from(OCCLUSION_FERPLUS), st.text(max_size=40)), max_size=4),
    affectnet_list=st.lists(
        st.one_of(st.sampled_from(OCCLUSION_AFFECTNET), st.text(max_size=40)), max_size=4
    ),
    newline=NEWLINES,
    bad=BADS,
)
def test_fuzz_occlusion_lists(fuzz_dirs, ferplus_list, affectnet_list, newline, bad):
    _write_fuzz(fuzz_dirs / "f.txt", ferplus_list, newline)
    _write_fuzz(fuzz_dirs / "a.txt", affectnet_list, newline)
    _drain(lambda: ferplus.read_occlusion_list(fuzz_dirs / "occ_folders", fuzz_dirs / "f.txt", bad=bad))
    _drain(lambda: affectnet.read_occlusion_list(fuzz_dirs / "occ_affectnet", fuzz_dirs / "a.txt", bad=bad))


@settings(max_examples=100)
@given(
    text=st.one_of(
        st.text(alphabet="0123456789 \t\x0b\u3000.-²", max_size=60),
        st.tuples(st.integers(2302, 2306), st.integers(250, 300), st.integers(0, 2**16)).map(
            lambda c: " ".join(map(str, np.random.default_rng(c[2]).integers(0, c[1], c[0])))
        ),
        st.tuples(st.integers(0, 2303), st.sampled_from(WEIRD + ("0001", "\x0b", "\u3000"))).map(
            lambda c: " ".join(PIXELS_OK.split()[: c[0]] + [c[1]] + PIXELS_OK.split()[c[0] + 1 :])
        ),
    )
)
def test_fuzz_parse_pixels(text):
    try:
        image = ferplus.parse_pixels(text, "fer2013.csv", 2)
    except DataFormatError:
        return
    expected = np.array(text.split(), dtype=np.int64)
    np.testing.assert_array_equal(image[:, :, 1].ravel(), expected)


def test_prepared_through_sources_with_protocol_splits_and_occlusion_lists(tmp_path):
    """FERPlus and AffectNet through their TFDS builders and ``load_expression_split``: FERPlus'
    usual training set (train-valid), the occlusion lists as test splits, AffectNet with 7 or 8 classes."""
    from kdface.tasks.expressions.sources import load_expression_split

    tfds_dir = tmp_path / "tfds"
    fer_root = write_ferplus_folders(tmp_path / "ferplus")
    _write_lines(fer_root / ferplus.OCCLUSION_LIST, OCCLUSION_FERPLUS, newline="\r\n")
    sizes = {split: load_expression_split("ferplus", split, fer_root, tfds_dir).size
             for split in ("train", "valid", "train-valid", "test")}  # fmt: skip
    assert sizes == {"train": 3, "valid": 1, "train-valid": 4, "test": 4}
    occluded = load_expression_split("occlusion-ferplus", "test", fer_root, tfds_dir)
    assert occluded.size == 5 and occluded.class_names[-1] == "contempt" and sum(occluded.class_counts) == 5
    labels = sorted(int(e["label"]) for e in occluded.dataset.as_numpy_iterator())
    assert labels == [2, 3, 4, 5, 7]
    aff_root = write_affectnet_csv(tmp_path / "affectnet")
    _write_lines(aff_root / affectnet.OCCLUSION_LIST, OCCLUSION_AFFECTNET, newline="\r\n")
    eight = load_expression_split("affectnet", "train", aff_root, tfds_dir)
    seven = load_expression_split("affectnet", "train", aff_root, tfds_dir, num_classes=7)
    assert (eight.size, seven.size, eight.num_classes, seven.num_classes) == (3, 2, 8, 7)
    boxes = [tuple(e["box"]) for e in eight.dataset.as_numpy_iterator()]
    assert (10.0, 20.0, 40.0, 60.0) in boxes  # the csv's face box, not the whole image
    assert load_expression_split("occlusion-affectnet", "test", aff_root, tfds_dir, num_classes=7).size == 3
