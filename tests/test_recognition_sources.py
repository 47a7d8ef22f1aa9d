"""Recognition sources on fixture trees in the real formats: CASIA-WebFace as train.rec/train.idx, as
train.list + image/ and as identity folders, through the TFDS builder into the file-backed store; a bad
image under --on-bad-sample error and skip; verification sets by name; TinyFace identification."""

import io

import numpy as np
import pytest
from PIL import Image

from kdface.errors import DataFormatError


def _jpeg(seed: int, size: int = 16) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        buf, format="JPEG", quality=95
    )
    return buf.getvalue()


def _load(root, tmp_path, policy="error"):
    from kdface.tasks.recognition.sources import load_identity_split

    return load_identity_split("casia-webface", root, tmp_path / "tfds", on_bad_sample=policy)


def _decoded_labels(split):
    images = [bytes(split.store.read_numpy(i)) for i in range(len(split.labels))]
    return images, split.labels.tolist()


def test_casia_recordio_through_the_builder(tmp_path):
    from kdface.tasks.recognition.recordio import write_recordio

    items = [(0, _jpeg(1)), (0, _jpeg(2)), (1, _jpeg(3)), (2, _jpeg(4)), (2, _jpeg(5))]
    root = tmp_path / "faces_webface_112x112"
    root.mkdir()
    write_recordio(root / "train.rec", root / "train.idx", items)
    split = _load(root, tmp_path)
    assert split.num_classes == 3 and len(split.labels) == 5 and not split.skipped
    images, labels = _decoded_labels(split)
    keys = [k.decode() for k in split.keys.tolist()]
    by_key = dict(zip(keys, zip(images, labels, strict=True), strict=True))
    for key, (label, data) in enumerate(items, start=1):
        assert by_key[f"rec/{key:09d}"] == (data, label)


def test_casia_train_list_and_folders_and_a_bad_image(tmp_path):
    from kdface.tasks.recognition.casia import write_train_list

    root = tmp_path / "casia"
    paths = []
    for label, ident in enumerate(("0000045", "0000099")):
        folder = root / "image" / ident
        folder.mkdir(parents=True)
        for k in range(2):
            path = folder / f"{k:03d}.jpg"
            path.write_bytes(_jpeg(10 * label + k))
            paths.append((f"/old/machine/faces_webface_112x112/image/{ident}/{k:03d}.jpg", label))
    write_train_list(root / "train.list", paths)
    split = _load(root, tmp_path)
    assert split.num_classes == 2 and sorted(split.labels.tolist()) == [0, 0, 1, 1]

    folders = tmp_path / "folders"
    for ident in ("b", "a"):
        (folders / ident).mkdir(parents=True)
        (folders / ident / "1.jpg").write_bytes(_jpeg(ord(ident)))
    (folders / "a" / "2.jpg").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="2.jpg"):
        _load(folders, tmp_path)
    split = _load(folders, tmp_path, policy="skip")
    assert len(split.skipped) == 1 and "2.jpg" in split.skipped[0]["path"]
    keys = [k.decode() for k in split.keys.tolist()]
    assert dict(zip(keys, split.labels.tolist(), strict=True)) == {"a/1.jpg": 0, "b/1.jpg": 1}


def test_identity_holdout_keeps_every_identity_in_training():
    from kdface.tasks.recognition.sources import IdentitySplit

    labels = np.repeat(np.arange(4), [1, 2, 5, 10])
    split = IdentitySplit(None, labels, labels.astype(object), 4, [])
    train, val = split.holdout(0.2, seed=0)
    assert set(labels[train]) == {0, 1, 2, 3} and len(train) + len(val) == len(labels)
    assert sorted(np.bincount(labels[val], minlength=4).tolist()) == [0, 0, 1, 2]
    assert len(split.holdout(0.0, 0)[1]) == 0


def test_verification_set_by_name(tmp_path):
    from kdface.errors import MissingFileError
    from kdface.tasks.recognition.sources import load_verification
    from kdface.tasks.recognition.verification_bin import write_bin

    encoded = [_jpeg(i, size=20) for i in range(16)]
    images = [encoded[i % 16] for i in range(12000)]  # AgeDB-30's 6000 pairs
    write_bin(tmp_path / "agedb_30.bin", images, [i % 2 == 0 for i in range(6000)])
    pairs = load_verification("agedb-30", tmp_path, image_size=16)
    assert pairs.images.shape == (12000, 16, 16, 3) and pairs.issame.sum() == 3000
    assert pairs.folds.tolist() == [i // 600 for i in range(6000)]  # the original's folds
    with pytest.raises(MissingFileError, match="lfw.bin"):
        load_verification("lfw", tmp_path)


def test_tinyface_rank_k_identification(tmp_path):
    import keras

    from kdface.tasks.recognition.evaluation import identify_tinyface

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (3, 3))
    for folder, names in (("Probe", ["1_1.jpg", "2_1.jpg", "3_1.jpg"]), ("Gallery_Match", ["1_2.jpg", "2_2.jpg",
                                                                                           "3_2.jpg"]),
                          ("Gallery_Distractor", ["9_1.jpg"])):  # fmt: skip
        (tmp_path / "tinyface" / folder).mkdir(parents=True)
        for name in names:
            ident = int(name.split("_")[0])
            colour = colours[ident - 1] if ident <= 3 else np.array([128, 128, 128])
            image = np.broadcast_to(colour, (12, 12, 3)).astype(np.uint8)
            Image.fromarray(image).save(tmp_path / "tinyface" / folder / name)
    images = keras.Input((8, 8, 3))
    model = keras.Model(images, keras.layers.GlobalAveragePooling2D()(images - 0.5))  # the mean colour
    result = identify_tinyface(model, tmp_path / "tinyface", 8)
    assert result["probes"] == 3 and result["gallery"] == 4
    assert result["cmc"][1] == pytest.approx(100.0) and result["cmc"][20] == pytest.approx(100.0)


def test_test_sizes_default_to_the_ladder_and_refuse_what_nearest_cannot_make():
    from kdface.errors import ConfigError
    from kdface.tasks.recognition.evaluation import evaluation_sizes

    card = {"resolution": {"sizes": [4, 8, 16, 32], "degradation": "nearest"}}
    assert evaluation_sizes(None, card, 32) == [32, 16, 8, 4]
    assert evaluation_sizes([112, 8], card, 32) == [32, 8]  # a side above the model's is its full size
    with pytest.raises(ConfigError, match="--down-size 12: nearest down-then-up needs a side that divides"):
        evaluation_sizes([12], card, 32)
    assert evaluation_sizes([12], {"resolution": {"degradation": "linear"}}, 32) == [12]
