"""TFDS builders over the real formats (fixture trees written here) and SynthFaces; stale-copy guard."""

import numpy as np
import pytest
from fixtures import write_cofw_v73 as _write_v73
from test_readers import _cofw_fixture, _wflw_fixture

from kdface.data import synthfaces
from kdface.tasks.landmarks import w300
from kdface.tasks.landmarks.sources import load_landmark_split


@pytest.fixture(scope="module")
def tiny_synthfaces(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthfaces")
    synthfaces.generate(root, synthfaces.SynthFacesConfig.tiny())
    return root


def _examples(source):
    return list(source.dataset.as_numpy_iterator())


def test_synthface_builder_serves_the_300w_tree(tiny_synthfaces, tmp_path):
    train = load_landmark_split("synthface", "train", tiny_synthfaces, tmp_path)
    examples = _examples(train)
    on_disk = list(w300.read_split(tiny_synthfaces / "300w", "train"))
    assert train.size == len(examples) == len(on_disk) > 0
    assert train.num_points == 68 and train.normaliser == (36, 45)
    by_key = {s.key: s for s in on_disk}
    for example in examples[:5]:
        assert isinstance(example["image"], bytes)  # left encoded until after shuffling
        np.testing.assert_allclose(example["landmarks"], by_key[example["key"].decode()].landmarks)
    full = load_landmark_split("synthface", "full", tiny_synthfaces, tmp_path)
    common = load_landmark_split("synthface", "common", tiny_synthfaces, tmp_path)
    challenging = load_landmark_split("synthface", "challenging", tiny_synthfaces, tmp_path)
    assert full.size == common.size + challenging.size


def test_changed_raw_files_are_not_served_stale(tmp_path):
    root = tmp_path / "raw"
    synthfaces.generate(root, synthfaces.SynthFacesConfig.tiny())
    first = {
        e["key"]: e["landmarks"] for e in _examples(load_landmark_split("synthface", "train", root, tmp_path))
    }
    pts = sorted((root / "300w" / "afw").glob("*.pts"))[0]
    moved = w300.read_pts(pts) + 1.0
    w300.write_pts(pts, moved)
    again = {
        e["key"]: e["landmarks"] for e in _examples(load_landmark_split("synthface", "train", root, tmp_path))
    }
    key = f"afw/{pts.stem}".encode()
    np.testing.assert_allclose(again[key], moved, atol=1e-3)
    assert not np.allclose(first[key], again[key])


def test_cofw_builder(tmp_path):
    images, phis, boxes = _cofw_fixture()
    raw = tmp_path / "cofw"
    raw.mkdir()
    _write_v73(raw / "COFW_train_color.mat", images, phis, boxes)
    _write_v73(
        raw / "COFW_test_color.mat", images[:2], phis[:2], boxes[:2], names=("IsT", "phisT", "bboxesT")
    )
    test = load_landmark_split("cofw", "test", raw, tmp_path / "tfds")
    examples = _examples(test)
    assert test.size == 2 and test.num_points == 29 and test.normaliser == (8, 9)
    np.testing.assert_allclose(examples[0]["landmarks"][:, 0], phis[0, :29] - 0.5, atol=1e-5)


def test_wflw_builder_and_subsets(tmp_path):
    faces = _wflw_fixture(tmp_path / "wflw")
    test = load_landmark_split("wflw", "test", tmp_path / "wflw", tmp_path / "tfds")
    assert test.size == len(faces["test"]) and test.num_points == 98
    pose = _examples(load_landmark_split("wflw", "pose", tmp_path / "wflw", tmp_path / "tfds"))
    assert len(pose) == sum(attrs[0] for _, _, attrs, _ in faces["test"])


def test_real_dataset_without_data_dir_explains_how_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="ibug.doc.ic.ac.uk"):
        load_landmark_split("300w", "train", None, tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_landmark_split("300w", "test", tmp_path, tmp_path)
