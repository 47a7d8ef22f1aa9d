"""Expression data: the RAF-DB (SCN and IGKD layouts), Occlusion-RAF-DB and FED-RO readers, SynthFaces'
occlusion list, the expression TFDS builders and ``load_expression_split``; a fuzz test of the
RAF-DB label-file parser. Fixture trees are written here in the real formats (tests/fer_fixtures.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fer_fixtures import (
    rafdb_samples,
    write_fedro_folders,
    write_fedro_list,
    write_image,
    write_occlusion_list,
    write_rafdb_igkd,
    write_rafdb_scn,
)
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import _documented_or_result, mutated_text

from kdface.data import synthfaces
from kdface.data.validation import BadSamples
from kdface.errors import DataFormatError, UnsafeFileError
from kdface.tasks.expressions import fedro, rafdb
from kdface.tasks.expressions.labels import CLASS_NAMES
from kdface.tasks.expressions.sources import (
    EXPRESSION_TEST_SPLITS,
    expression_datasets,
    load_expression_split,
)


def _labels(samples):
    return {s.key: s.label for s in samples}


def _expected(split):
    return {name: raw - 1 for name, raw in rafdb_samples() if name.startswith(f"{split}_")}


# ------------------------------------------------------------------------------------------ RAF-DB


def test_both_layouts_read_the_same_labels(tmp_path):
    write_rafdb_scn(tmp_path / "scn")
    write_rafdb_igkd(tmp_path / "igkd")
    assert (
        rafdb.detect_layout(tmp_path / "scn") == "emolabel"
        and rafdb.detect_layout(tmp_path / "igkd") == "annotated"
    )
    for split in ("train", "test"):
        scn = list(rafdb.read_split(tmp_path / "scn", split))
        igkd = list(rafdb.read_split(tmp_path / "igkd", split))
        assert _labels(scn) == _labels(igkd) == _expected(split)
        assert all(Path(s.image_path).is_file() for s in scn + igkd)
        assert scn[0].origin.endswith("list_patition_label.txt:1" if split == "train" else ":10")
    with pytest.raises(DataFormatError, match="SCN layout"):
        list(rafdb.read_split(tmp_path, "train"))  # neither layout
    with pytest.raises(ValueError, match="unknown RAF-DB split"):
        list(rafdb.read_split(tmp_path / "scn", "val"))


def test_crlf_bom_blank_lines_and_readme_typo(tmp_path):
    write_rafdb_scn(tmp_path / "scn", crlf=True, bom=True, trailing_blank=3)
    write_rafdb_igkd(tmp_path / "igkd", crlf=True, typo=True)
    for split in ("train", "test"):
        assert _labels(rafdb.read_split(tmp_path / "scn", split)) == _expected(split)
        assert _labels(rafdb.read_split(tmp_path / "igkd", split)) == _expected(split)


SCN_BAD = {
    "one field": "train_00020.jpg",
    "three fields": "train_00020.jpg 3 1",
    "non-integer label": "train_00020.jpg happy",
    "label 8": "train_00020.jpg 8",
    "label 0": "train_00020.jpg 0",
    "unicode digit": "train_00020.jpg ٣",
    "bad prefix": "val_00020.jpg 3",
    "duplicate": "train_00001.jpg 2",
}
IGKD_BAD = {
    "two fields": "3/train_00020_aligned.jpg 3",
    "no class folder": "train_00020_aligned.jpg",
    "non-integer class": "x/train_00020_aligned.jpg",
    "class 7": "7/train_00020_aligned.jpg",
    "duplicate": "0/train_00001_aligned.jpg",
}


@pytest.mark.parametrize("kind", sorted(SCN_BAD))
def test_scn_malformed_lines(tmp_path, kind):
    label_file = write_rafdb_scn(tmp_path, extra_lines=["train_00019.jpg 1", SCN_BAD[kind]], crlf=True)
    write_image(tmp_path / "Image/aligned/train_00019_aligned.jpg", seed=1)
    bad_line = len(rafdb_samples()) + 2
    with pytest.raises(DataFormatError) as info:
        list(rafdb.read_split(tmp_path, "train"))
    assert info.value.path == str(label_file) and info.value.line == bad_line
    assert f"list_patition_label.txt:{bad_line}" in str(info.value)
    bad = BadSamples("skip")
    samples = list(rafdb.read_split(tmp_path, "train", bad=bad))
    assert len(bad) == 1 and bad.skipped[0].line == bad_line
    assert _labels(samples) == {**_expected("train"), "train_00019": 0}


@pytest.mark.parametrize("kind", sorted(IGKD_BAD))
def test_igkd_malformed_lines(tmp_path, kind):
    files = write_rafdb_igkd(tmp_path, extra_lines={"train": [IGKD_BAD[kind]]})
    bad_line = len(_expected("train")) + 1
    with pytest.raises(DataFormatError) as info:
        list(rafdb.read_split(tmp_path, "train"))
    assert info.value.path == str(files["train"]) and info.value.line == bad_line
    bad = BadSamples("skip")
    assert _labels(rafdb.read_split(tmp_path, "train", bad=bad)) == _expected("train")
    assert len(bad) == 1
    assert _labels(rafdb.read_split(tmp_path, "test")) == _expected("test")  # the other file is fine


def test_other_split_lines_are_checked_by_that_split_and_missing_images(tmp_path):
    write_rafdb_scn(tmp_path, extra_lines=["test_0020.jpg 9", "train_00030.jpg 4"])
    assert _labels(rafdb.read_split(tmp_path, "train", bad="skip")) == _expected("train")  # image missing
    with pytest.raises(DataFormatError, match="an image at .*train_00030_aligned.jpg"):
        list(rafdb.read_split(tmp_path, "train"))
    with pytest.raises(DataFormatError, match="label 1..7"):
        list(rafdb.read_split(tmp_path, "test"))


def test_missing_label_file_and_empty_split_always_raise(tmp_path):
    write_rafdb_scn(tmp_path, samples=[("train_00001", 3)])
    with pytest.raises(DataFormatError, match="at least one"):
        list(rafdb.read_split(tmp_path, "test", bad="skip"))
    (tmp_path / "igkd/Annotated").mkdir(parents=True)
    with pytest.raises(DataFormatError, match="missing"):
        list(rafdb.read_split(tmp_path / "igkd", "train", bad="skip"))


@pytest.mark.parametrize(
    "layout, line",
    [
        ("scn", "train_/../../../../etc/passwd 3"),
        ("igkd", "3/../../../../etc/passwd"),
        ("igkd", "/etc/passwd"),
        ("igkd", "3/a\x00b.jpg"),
    ],
)
def test_unsafe_paths_are_refused_even_under_skip(tmp_path, layout, line):
    if layout == "scn":
        write_rafdb_scn(tmp_path, extra_lines=[line])
    else:
        write_rafdb_igkd(tmp_path, extra_lines={"train": [line]})
    with pytest.raises(UnsafeFileError):
        list(rafdb.read_split(tmp_path, "train", bad="skip"))


# ------------------------------------------------------------------------------ Occlusion-RAF-DB


@pytest.mark.parametrize("layout", ["scn", "igkd"])
def test_occlusion_list_round_trip(tmp_path, layout):
    (write_rafdb_scn if layout == "scn" else write_rafdb_igkd)(tmp_path)
    test = [(name, raw) for name, raw in rafdb_samples() if name.startswith("test_")]
    entries = [(name, raw, i % 4 + 1) for i, (name, raw) in enumerate(test[:4])]
    write_occlusion_list(tmp_path / rafdb.OCCLUSION_LIST, entries)
    samples = list(rafdb.read_occlusion_list(tmp_path))
    assert [(s.key, s.label, s.attributes["occlusion_code"]) for s in samples] == [
        (name, raw - 1, code) for name, raw, code in entries
    ]
    by_key = {s.key: s for s in rafdb.read_split(tmp_path, "test")}
    assert all(s.image_path == by_key[s.key].image_path for s in samples)
    assert samples[1].origin.endswith(f"{rafdb.OCCLUSION_LIST}:2")


def test_occlusion_list_label_cross_check_and_bad_lines(tmp_path):
    label_file = write_rafdb_scn(tmp_path)
    name, raw = next((n, r) for n, r in rafdb_samples() if n.startswith("test_"))
    wrong = (raw % 7) + 1
    path = write_occlusion_list(tmp_path / "list.txt", [(name, wrong, 1)])
    with pytest.raises(DataFormatError) as info:
        list(rafdb.read_occlusion_list(tmp_path, path))
    assert str(path) in str(info.value) and str(label_file) in str(info.value) and info.value.line == 1
    lines = ["test_0002_aligned 2", "test_0002_aligned x 1", "test_0002_aligned 2 -1", "train_00001_aligned 0 1",
             f"{name}_aligned {raw - 1} 3"]  # fmt: skip
    path = write_occlusion_list(tmp_path / "list2.txt", lines)
    bad = BadSamples("skip")
    samples = list(rafdb.read_occlusion_list(tmp_path, path, bad=bad))
    assert [s.key for s in samples] == [name] and [r.line for r in bad.skipped] == [1, 2, 3, 4]
    write_occlusion_list(tmp_path / "list3.txt", ["../../../etc/passwd 1 1"])
    with pytest.raises(UnsafeFileError):
        list(rafdb.read_occlusion_list(tmp_path, tmp_path / "list3.txt", bad="skip"))
    with pytest.raises(DataFormatError, match="missing"):
        list(rafdb.read_occlusion_list(tmp_path))  # no rafdb_occlusion_list.txt


# ------------------------------------------------------------------------------------------ FED-RO


def test_fedro_class_folders_with_synonyms(tmp_path):
    folders = {"Surprised": 1, "fear": 1, "DISGUST": 1, "happy": 2, "Sad": 1, "angry": 1, "Neutral": 1}
    write_fedro_folders(tmp_path, folders)
    (tmp_path / ".cache").mkdir()
    labels = {}
    for s in fedro.read_split(tmp_path):
        labels.setdefault(s.key.split("/")[0], set()).add(s.label)
    assert labels == {"Surprised": {0}, "fear": {1}, "DISGUST": {2}, "happy": {3}, "Sad": {4}, "angry": {5},
                      "Neutral": {6}}  # fmt: skip
    write_fedro_folders(tmp_path, {"contempt": 1})
    with pytest.raises(DataFormatError) as info:
        list(fedro.read_split(tmp_path))
    assert "contempt" in str(info.value) and "happy" in str(info.value) and "surprise" in str(info.value)


def test_fedro_list_file(tmp_path):
    entries = [("imgs/a b.jpg", "Happy", True), ("imgs/b.png", "5", True), ("imgs/c.jpg", "surprise", True),
               ("imgs/d.jpg", "7", True), ("imgs/e.jpg", "happy", False), ("imgs/f.jpg", "joy", True)]  # fmt: skip
    path = write_fedro_list(tmp_path, entries)
    with pytest.raises(DataFormatError) as info:
        list(fedro.read_split(tmp_path))
    assert info.value.path == str(path) and info.value.line == 4
    bad = BadSamples("skip")
    assert _labels(fedro.read_split(tmp_path, bad=bad)) == {
        "imgs/a b.jpg": 3,
        "imgs/b.png": 5,
        "imgs/c.jpg": 0,
    }
    assert [r.line for r in bad.skipped] == [4, 5, 6]
    write_fedro_list(tmp_path, [("../x.jpg", "happy", False)])
    with pytest.raises(UnsafeFileError):
        list(fedro.read_split(tmp_path, bad="skip"))


# ------------------------------------------------------------------------------------- SynthFaces


@pytest.fixture(scope="module")
def tiny_synthfaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthfaces")
    return synthfaces.generate(root, synthfaces.SynthFacesConfig.tiny())


def test_synthfaces_occlusion_list_matches_metadata(tiny_synthfaces):
    data = (tiny_synthfaces / "rafdb" / synthfaces.OCCLUSION_LIST).read_bytes()
    assert data.endswith(b"\r\n") and data.count(b"\r\n") == data.count(b"\n")
    with open(tiny_synthfaces / "rafdb/metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = [
        f"{Path(r['image']).stem}_aligned {int(r['label']) - 1} {synthfaces.OCCLUDER_TYPES.index(r['occluder'])}"
        for r in rows
        if r["split"] == "test" and r["occluder"] != "none"
    ]
    assert data.decode().splitlines() == expected and expected
    samples = list(rafdb.read_occlusion_list(tiny_synthfaces / "rafdb"))
    assert len(samples) == len(expected)
    assert all(1 <= s.attributes["occlusion_code"] < len(synthfaces.OCCLUDER_TYPES) for s in samples)
    assert synthfaces.SynthFacesConfig.demo().rafdb_test_occlusion_fraction == 0.5


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def _examples(source):
    return list(source.dataset.as_numpy_iterator())


def _check_source(source, num_classes=7):
    examples = _examples(source)
    assert source.size == len(examples) > 0
    assert len(source.class_counts) == source.num_classes == num_classes
    assert source.class_names == CLASS_NAMES[:num_classes]
    counts = np.bincount([int(e["label"]) for e in examples], minlength=num_classes).tolist()
    assert counts == source.class_counts and sum(counts) == source.size
    for e in examples[:3]:
        assert isinstance(e["image"], bytes) and e["label"].dtype == np.int64 and e["box"].dtype == np.float32
        image = tf.io.decode_image(e["image"], channels=3).numpy()
        np.testing.assert_array_equal(e["box"], [0, 0, image.shape[1], image.shape[0]])
    return examples


def test_load_expression_split_synthfaces(tiny_synthfaces, tfds_dir):
    config = synthfaces.SynthFacesConfig.tiny()
    train = load_expression_split("synthface", "train", tiny_synthfaces, tfds_dir)
    test = load_expression_split("synthface", "test", tiny_synthfaces, tfds_dir)
    occluded = load_expression_split("synthface", "occluded", tiny_synthfaces, tfds_dir)
    n_list = len((tiny_synthfaces / "rafdb" / synthfaces.OCCLUSION_LIST).read_text().splitlines())
    assert (train.size, test.size, occluded.size) == (config.rafdb_train, config.rafdb_test, n_list)
    _check_source(train)
    test_keys = {e["key"] for e in _check_source(test)}
    assert {e["key"] for e in _check_source(occluded)} <= test_keys
    half = load_expression_split("synthface", "train[:50%]", tiny_synthfaces, tfds_dir)
    assert half.size == config.rafdb_train // 2
    _check_source(half)
    assert expression_datasets() == sorted(EXPRESSION_TEST_SPLITS)
    with pytest.raises(ValueError, match="unknown split"):
        load_expression_split("synthface", "common", tiny_synthfaces, tfds_dir)


def test_load_expression_split_rafdb(tmp_path_factory, tfds_dir):
    raw = tmp_path_factory.mktemp("rafdb")
    write_rafdb_scn(raw, extra_lines=["test_0030.jpg 2"])
    (raw / "Image/aligned/test_0030_aligned.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # corrupt image
    test = [(n, r) for n, r in rafdb_samples() if n.startswith("test_")]
    write_occlusion_list(raw / rafdb.OCCLUSION_LIST, [(n, r, 2) for n, r in test[:3]])
    with pytest.raises(DataFormatError, match="test_0030_aligned.jpg"):
        load_expression_split("raf-db", "test", raw, tfds_dir)
    source = load_expression_split("raf-db", "test", raw, tfds_dir, on_bad_sample="skip")
    examples = _check_source(source)
    assert {e["key"].decode(): int(e["label"]) for e in examples} == _expected("test")
    assert len(source.skipped) == 1 and "test_0030" in source.skipped[0]["reason"]
    train = load_expression_split("raf-db", "train", raw, tfds_dir, on_bad_sample="skip")
    assert train.skipped == [] and train.size == len(_expected("train"))
    occlusion = load_expression_split("occlusion-raf-db", "test", raw, tfds_dir, on_bad_sample="skip")
    assert occlusion.size == 3 and {e["key"].decode() for e in _check_source(occlusion)} == {
        n for n, _ in test[:3]
    }
    eight = load_expression_split("raf-db", "test", raw, tfds_dir, on_bad_sample="skip", num_classes=8)
    assert eight.num_classes == 8 and eight.class_counts[7] == 0
    with pytest.raises(ValueError, match="num_classes"):
        load_expression_split("ferplus", "test", raw, tfds_dir, num_classes=7)


# ------------------------------------------------------------------------------------------ fuzz

FUZZ_SAMPLES = rafdb_samples(4, 3)
SCN_SEED = "\n".join(f"{name}.jpg {raw}" for name, raw in FUZZ_SAMPLES) + "\n"
IGKD_SEED = "\n".join(f"{raw - 1}/{name}_aligned.jpg" for name, raw in FUZZ_SAMPLES[:4]) + "\n"


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    """Both layouts' images, written once; each fuzz case overwrites only the text files."""
    root = tmp_path_factory.mktemp("fuzz_rafdb")
    write_rafdb_scn(root / "scn", FUZZ_SAMPLES)
    write_rafdb_igkd(root / "igkd", FUZZ_SAMPLES)
    return root


@given(scn=mutated_text(SCN_SEED), igkd=mutated_text(IGKD_SEED), occ=mutated_text("test_0001_aligned 2 1\r\n"),
       split=st.sampled_from(rafdb.SPLITS), policy=st.sampled_from(("error", "skip")))  # fmt: skip
def test_fuzz_rafdb_label_files(fuzz_root, scn, igkd, occ, split, policy):
    root = fuzz_root
    (root / "scn/EmoLabel/list_patition_label.txt").write_bytes(scn)
    (root / "scn" / rafdb.OCCLUSION_LIST).write_bytes(occ)
    (root / "igkd/Annotated/train_labels.txt").write_bytes(igkd)
    (root / "igkd/Annotated/val_labels.txt").write_bytes(igkd)
    for layout in ("scn", "igkd"):
        result = _documented_or_result(
            lambda layout=layout: rafdb.read_split(root / layout, split, bad=policy)
        )
        for sample in result or ():
            assert 0 <= sample.label < 7 and sample.origin and Path(sample.image_path).is_file()
    _documented_or_result(lambda: rafdb.read_occlusion_list(root / "scn", bad=policy))


def test_a_split_with_every_sample_bad_is_an_error(tmp_path):
    write_rafdb_scn(tmp_path / "raw")
    for image in (tmp_path / "raw/Image/aligned").glob("test_*"):
        image.write_bytes(b"")
    with pytest.raises(DataFormatError, match="at least one valid sample in the 'test' split"):
        load_expression_split("raf-db", "test", tmp_path / "raw", tmp_path / "tfds", on_bad_sample="skip")


def test_an_older_synthfaces_tree_is_regenerated_with_its_config(tmp_path):
    import json

    config = synthfaces.SynthFacesConfig.tiny(rafdb_test=14)
    root = synthfaces.generate(tmp_path / "raw", config)
    marker = root / "synthfaces.json"
    info = json.loads(marker.read_text())
    info["generator_version"] = "1.0.0"
    del info["config"]["rafdb_test_occlusion_fraction"]
    marker.write_text(json.dumps(info))
    (root / "rafdb" / synthfaces.OCCLUSION_LIST).unlink()  # as written by generator 1.0.0
    source = load_expression_split("synthface", "test", root, tmp_path / "tfds")
    assert source.size == 14 and (root / "rafdb" / synthfaces.OCCLUSION_LIST).is_file()
    assert json.loads(marker.read_text())["generator_version"] == synthfaces.GENERATOR_VERSION
