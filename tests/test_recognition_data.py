"""Recognition data: low-resolution synthesis, resolution draws, the RecordIO / CASIA / TinyFace / pair
list readers on fixture files in the real formats, and SynthFaces' held-out verification pairs."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import random_image

from kdface.data import resolution as lowres
from kdface.data import synthfaces as sf
from kdface.data.validation import BadSamples
from kdface.errors import ConfigError, DataFormatError, UnsafeFileError
from kdface.tasks.recognition import casia, recordio, tinyface
from kdface.tasks.recognition.verification_bin import read_bin

SPEC_KERNEL = [0.1525, 0.2218, 0.2514, 0.2218, 0.1525]  # spec §2.2, 4 decimals


def _block_reference(x: np.ndarray, f: int) -> np.ndarray:
    """Pixel (r, c) takes the block's top-left pixel ((r // f) * f, (c // f) * f), by explicit loops."""
    out = np.empty_like(x)
    for r in range(x.shape[-3]):
        for c in range(x.shape[-2]):
            out[..., r, c, :] = x[..., (r // f) * f, (c // f) * f, :]
    return out


# ------------------------------------------------------------------------------ low resolution


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_nearest_is_subsample_and_repeat(dtype):
    x = (np.arange(2 * 8 * 8 * 3) % 251).reshape(2, 8, 8, 3).astype(dtype)
    for size, f in ((4, 2), (2, 4), (1, 8)):
        out = lowres.low_resolution(x, size)
        assert out.dtype == x.dtype and out.shape == x.shape
        np.testing.assert_array_equal(out, _block_reference(x, f))
        np.testing.assert_array_equal(lowres.low_resolution(x[1], size), _block_reference(x[1], f))  # HWC
    # hand-checked row 0 of channel 0 at size 4 (f = 2): pixels 0, 0, 2, 2, 4, 4, 6, 6 of the row
    np.testing.assert_array_equal(
        lowres.low_resolution(x, 4)[0, 0, :, 0], x[0, 0, [0, 0, 2, 2, 4, 4, 6, 6], 0]
    )
    np.testing.assert_array_equal(lowres.low_resolution(x, 8), x)  # size >= H: unchanged
    np.testing.assert_array_equal(lowres.low_resolution(x, 100), x)
    with pytest.raises(ValueError, match="divide"):
        lowres.low_resolution(x, 3)


def test_nearest_equals_cv2_inter_nearest_and_per_image_sizes():
    """Spec §2.2: for d in {56, 28, 14} cv2's INTER_NEAREST down/up is the top-left block sampling."""
    images = np.stack([random_image(112, 112, s) for s in range(3)])
    for d in (56, 28, 14):
        small = cv2.resize(images[0], (d, d), interpolation=cv2.INTER_NEAREST)
        reference = cv2.resize(small, (112, 112), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(lowres.low_resolution(images[0], d), reference)
    mixed = lowres.low_resolution(images, [14, 112, 28])
    np.testing.assert_array_equal(mixed[0], lowres.low_resolution(images[0], 14))
    np.testing.assert_array_equal(mixed[1], images[1])
    np.testing.assert_array_equal(mixed[2], lowres.low_resolution(images[2], 28))


def test_askd_kernel_reduces_to_the_vertical_5_tap_kernel():
    kernel = lowres.askd_blur_kernel()
    assert kernel.shape == (5, 5) and kernel.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(kernel[:, 2], SPEC_KERNEL, atol=5e-5)
    assert np.abs(kernel[:, [0, 1, 3, 4]]).max() < 1e-20  # sigma_x = 0.1: exp(-50) off centre
    np.testing.assert_allclose(lowres.ASKD_VERTICAL_KERNEL, kernel[:, 2], rtol=0, atol=1e-15)


def test_askd_blur_by_hand_and_against_torch():
    # constant over 2 x 2 blocks, so the nearest step at size 4 is the identity and only the blur acts
    column = np.array([0.0, 0.0, 10.0, 10.0, 40.0, 40.0, 100.0, 100.0])
    factors = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0])  # columns differ block-wise
    x = np.repeat((column[:, None] * factors[None, :])[:, :, None], 2, axis=2)
    out = lowres.low_resolution(x, 4, method="askd")
    w, v = lowres.ASKD_VERTICAL_KERNEL, column
    # reflect padding: rows -2, -1 mirror rows 2, 1; rows 8, 9 mirror rows 6, 5
    by_hand = [
        w[0] * v[2] + w[1] * v[1] + w[2] * v[0] + w[3] * v[1] + w[4] * v[2],
        w[0] * v[1] + w[1] * v[0] + w[2] * v[1] + w[3] * v[2] + w[4] * v[3],
        w[0] * v[5] + w[1] * v[6] + w[2] * v[7] + w[3] * v[6] + w[4] * v[5],
    ]
    np.testing.assert_allclose(out[[0, 1, 7], 0, 0], by_hand, rtol=1e-12)
    np.testing.assert_allclose(out[:, 4, 1], 3.0 * out[:, 0, 1], rtol=1e-12)  # vertical only
    torch = pytest.importorskip("torch")
    image = random_image(16, 16, 7).astype(np.float64)
    blocky = lowres.low_resolution(image, 8)
    t = torch.from_numpy(blocky.transpose(2, 0, 1)[None].copy())
    t = torch.nn.functional.pad(t, [2, 2, 2, 2], mode="reflect")
    k = torch.from_numpy(lowres.askd_blur_kernel()).expand(3, 1, 5, 5)
    ref = torch.nn.functional.conv2d(t, k, groups=3)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(lowres.low_resolution(image, 8, method="askd"), ref, atol=1e-9)
    rounded = lowres.low_resolution(image.astype(np.uint8), 8, method="askd")
    assert rounded.dtype == np.uint8
    np.testing.assert_array_equal(rounded, np.round(ref).astype(np.uint8))


def test_random_and_linear_use_cv2():
    images = np.stack([random_image(32, 32, s) for s in range(6)])
    out = lowres.low_resolution(images, 8, method="random", rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)
    for i in range(6):
        down, up = (lowres.RANDOM_INTERPOLATIONS[k] for k in rng.integers(0, 5, 2))
        ref = cv2.resize(cv2.resize(images[i], (8, 8), interpolation=down), (32, 32), interpolation=up)
        np.testing.assert_array_equal(out[i], ref)
    linear = lowres.low_resolution(images[0].astype(np.float32), 8, method="linear")
    ref = cv2.resize(cv2.resize(images[0].astype(np.float32), (8, 8)), (32, 32))
    np.testing.assert_array_equal(linear, ref)
    assert lowres.low_resolution(images[0], 12, method="linear").shape == (32, 32, 3)  # any size


def test_low_resolution_tf_equals_numpy_for_mixed_sizes():
    import tensorflow as tf

    images = np.stack([random_image(112, 112, s) for s in range(5)])
    sizes = np.array([14, 112, 56, 28, 16])
    expected = lowres.low_resolution(images, sizes)
    np.testing.assert_array_equal(lowres.low_resolution_tf(images, sizes).numpy(), expected)
    floats = images.astype(np.float32) / 255.0
    np.testing.assert_array_equal(
        lowres.low_resolution_tf(floats, sizes).numpy(), expected.astype(np.float32) / 255.0
    )
    compiled = tf.function(lowres.low_resolution_tf, jit_compile=True)
    np.testing.assert_array_equal(compiled(tf.constant(images), tf.constant(sizes)).numpy(), expected)
    # inside tf.data, one size per sample, no py_function
    ds = tf.data.Dataset.from_tensor_slices((images, sizes)).map(lowres.low_resolution_tf)
    np.testing.assert_array_equal(np.stack([x.numpy() for x in ds]), expected)
    np.testing.assert_array_equal(
        lowres.low_resolution_tf(images, 28).numpy(), lowres.low_resolution(images, 28)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="divide"):
        lowres.low_resolution_tf(images, [14, 112, 56, 28, 24])


def test_draw_down_sizes_frequencies():
    n = 40_000
    rng = np.random.default_rng(0)
    equal = lowres.draw_down_sizes(n, 1, rng=rng)
    for d in (14, 28, 56, 112):
        assert abs(np.mean(equal == d) - 0.25) < 0.01, d
    assert set(np.unique(equal)) == {14, 28, 56, 112}
    unequal = lowres.draw_down_sizes(n, 1, equal=False, rng=rng)
    assert abs(np.mean(unequal == 112) - 0.5) < 0.01
    for d in (14, 28, 56):
        assert abs(np.mean(unequal == d) - 1 / 6) < 0.01, d
    small = lowres.draw_down_sizes(n, 1, image_size=64, rng=rng)
    assert set(np.unique(small)) == {8, 16, 32, 64}
    assert lowres.resolution_ladder(64) == (8, 16, 32, 64) and lowres.resolution_ladder() == (14, 28, 56, 112)
    np.testing.assert_array_equal(lowres.draw_down_sizes(5, 0), [112] * 5)
    np.testing.assert_array_equal(lowres.draw_down_sizes(5, 28), [28] * 5)
    askd = lowres.draw_down_sizes(n, [112, 28], rng=rng)
    assert abs(np.mean(askd == 28) - 0.5) < 0.01
    with pytest.raises(ValueError):
        lowres.draw_down_sizes(3, 200)
    with pytest.raises(ValueError):
        lowres.resolution_ladder(100)


def test_degrade_pair_order():
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)  # no symmetry
    hr_f, lr_f = lowres.degrade_pair(image, 4, True, order="fskd")
    hr_a, lr_a = lowres.degrade_pair(image, 4, True, order="askd")
    np.testing.assert_array_equal(hr_f, image[:, ::-1])
    np.testing.assert_array_equal(hr_a, image[:, ::-1])
    np.testing.assert_array_equal(lr_f, _block_reference(image, 2)[:, ::-1])  # degrade, then flip
    np.testing.assert_array_equal(lr_a, _block_reference(image[:, ::-1], 2))  # flip, then degrade
    assert not np.array_equal(lr_f, lr_a)
    # F-SKD keeps each block's top-left pixel (column 0 -> output columns 7, 6), A-SKD its top-right
    assert lr_f[0, 7, 0] == image[0, 0, 0] and lr_a[0, 0, 0] == image[0, 7, 0]
    hr, lr = lowres.degrade_pair(image, 4, False, order="askd")
    np.testing.assert_array_equal(lr, lowres.degrade_pair(image, 4, False, order="fskd")[1])
    batch = np.stack([image, image])
    _, lrs = lowres.degrade_pair(batch, 4, np.array([True, False]))
    np.testing.assert_array_equal(lrs[0], lr_f)
    np.testing.assert_array_equal(lrs[1], _block_reference(image, 2))


# ------------------------------------------------------------------------------ RecordIO


def _jpeg(seed: int, size: int = 16) -> bytes:
    ok, data = cv2.imencode(".jpg", random_image(size, size, seed))
    assert ok
    return data.tobytes()


MAGIC_BYTES = struct.pack("<I", recordio.MAGIC)


def _items():
    # the third payload holds the magic word 4-byte aligned in the record: dmlc writes it in 3 parts
    tricky = b"\xff\xd8" + b"xx" + MAGIC_BYTES + b"abcd" + MAGIC_BYTES + b"tail!"
    return [(0, _jpeg(1)), (0, _jpeg(2)), (1, tricky), (1, _jpeg(3)), (1, _jpeg(4)), (5, _jpeg(5))]


def _write_rec(tmp_path, items=None):
    return recordio.write_recordio(tmp_path / "train.rec", tmp_path / "train.idx", items or _items())


def test_recordio_round_trip(tmp_path):
    items = _items()
    rec, idx = _write_rec(tmp_path)
    reader = recordio.RecordIOReader(rec, idx)
    assert len(reader) == 6 and list(reader.image_keys) == [1, 2, 3, 4, 5, 6]
    assert reader.meta == (7, 10) and reader.num_identities == 3
    assert list(reader) == items
    assert reader.read(3) == items[2]
    # identity records: [first key, end key) of each class, in order
    ranges = [reader.read_record(k) for k in range(7, 10)]
    assert [r.label.tolist() for r in ranges] == [[1, 3], [3, 6], [6, 7]] and all(r.flag == 2 for r in ranges)
    meta = reader.read_record(0)
    assert meta.flag == 2 and meta.label.tolist() == [7.0, 10.0] and meta.payload == b""
    image = reader.read_record(4)
    assert image.flag == 0 and image.id == 4 and image.label.tolist() == [1.0]
    # the bytes on disk, decoded by hand: idx lines, chunk headers, continuation flags
    lines = idx.read_text().splitlines()
    assert lines[0] == "0\t0" and len(lines) == 10 and all(len(line.split("\t")) == 2 for line in lines)
    data = rec.read_bytes()
    offsets = [int(line.split("\t")[1]) for line in lines]
    magic, lrec = struct.unpack_from("<II", data, offsets[3])
    assert magic == recordio.MAGIC and lrec >> 29 == 1  # first of several parts
    flag, label, id_, id2 = struct.unpack_from("<IfQQ", data, offsets[1] + 8)
    assert (flag, label, id_, id2) == (0, 0.0, 1, 0)
    assert data[offsets[1] + 8 + 24 : offsets[1] + 8 + 24 + len(items[0][1])] == items[0][1]
    assert all(o % 4 == 0 for o in offsets) and len(data) % 4 == 0
    # the reader pickles (for workers) and reopens its file
    import pickle

    clone = pickle.loads(pickle.dumps(reader))
    assert clone.read(6) == items[5]
    reader.close()
    with pytest.raises(ValueError, match="grouped"):
        recordio.write_recordio(tmp_path / "x.rec", tmp_path / "x.idx", [(0, b"a"), (1, b"b"), (0, b"c")])


def _offsets(idx: Path) -> list[int]:
    return [int(line.split("\t")[1]) for line in idx.read_text().splitlines()]


def _rec_error(rec, idx, key=None) -> str:
    with pytest.raises(DataFormatError) as info:
        reader = recordio.RecordIOReader(rec, idx)
        if key is None:
            list(reader)
        else:
            reader.read(key)
    return str(info.value)


def test_recordio_corruptions(tmp_path):
    rec, idx = _write_rec(tmp_path)
    good_rec, good_idx = rec.read_bytes(), idx.read_text()
    offsets = _offsets(idx)
    # bad magic at record 2
    data = bytearray(good_rec)
    data[offsets[2] : offsets[2] + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(data))
    message = _rec_error(rec, idx, 2)
    assert str(rec) in message and "record key 2" in message and "0xced7230a" in message
    assert "'0x00000000'" in message and f"byte {offsets[2]}" in message and "idx line 3" in message
    # truncated inside record 6 (the last image): the identity records' offsets now lie beyond the end
    rec.write_bytes(good_rec[: offsets[6] + 20])
    message = _rec_error(rec, idx)
    assert f"{idx}:8" in message and "offset" in message and str(offsets[7]) in message
    short = tmp_path / "short.idx"
    short.write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets[:7])))
    message = _rec_error(rec, short, 6)
    assert "record key 6" in message and "truncated" in message and str(rec) in message
    short.write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets[:5])))  # keys 0..4
    message = _rec_error(rec, short)  # record 0 asks for images 1..6
    assert str(short) in message and "1..6" in message
    # idx line not "key<TAB>offset"
    rec.write_bytes(good_rec)
    idx.write_text(good_idx.replace(f"3\t{offsets[3]}", f"3 {offsets[3]}"))
    message = _rec_error(rec, idx)
    assert f"{idx}:4" in message and "'<key>\\t<byte offset>'" in message
    # offset beyond the end of the .rec
    idx.write_text(good_idx.replace(f"3\t{offsets[3]}", f"3\t{len(good_rec) + 4}"))
    message = _rec_error(rec, idx)
    assert f"{idx}:4" in message and str(len(good_rec) + 4) in message and f"{len(good_rec)} bytes" in message
    # a label that is not a class: -1
    idx.write_text(good_idx)
    data = bytearray(good_rec)
    struct.pack_into("<f", data, offsets[1] + 8 + 4, -1.0)
    rec.write_bytes(bytes(data))
    assert "record key 1" in _rec_error(rec, idx, 1) and "-1.0" in _rec_error(rec, idx, 1)
    # no meta record
    rec.write_bytes(good_rec)
    idx.write_text("".join(line + "\n" for line in good_idx.splitlines()[1:]))
    assert "key 0" in _rec_error(rec, idx)


# ------------------------------------------------------------------------------ CASIA layouts


def _touch_images(folder: Path, names) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        (folder / name).write_bytes(_jpeg(len(paths)))
        paths.append(folder / name)
    return paths


def test_identity_folders_sorted(tmp_path):
    b = _touch_images(tmp_path / "0010", ["2.jpg", "1.jpg"])
    a = _touch_images(tmp_path / "0002", ["0.png"])
    (tmp_path / "0005").mkdir()  # empty: no class
    _touch_images(tmp_path / ".hidden", ["0.jpg"])
    (tmp_path / "0010" / "notes.txt").write_text("x")
    listed = casia.read_identity_folders(tmp_path)
    assert listed.class_names == ["0002", "0010"] and listed.num_classes == 2
    assert listed.items == [(a[0], 0), (b[1], 1), (b[0], 1)]
    with pytest.raises(DataFormatError, match="missing"):
        casia.read_identity_folders(tmp_path / "nope")


def test_train_list_round_trip_and_bad_lines(tmp_path):
    remote = "/data/someone/faces_webface_112x112/image"
    items = [
        (f"{remote}/000003/00000001.jpg", 0),
        (f"{remote}/000003/00000002.jpg", 0),
        (f"{remote}/000001/00000003.jpg", 1),
    ]
    path = casia.write_train_list(tmp_path / "train.list", items)
    assert path.read_text().splitlines()[0] == f"{remote}/000003/00000001.jpg  0"
    local = tmp_path / "image"
    listed = casia.read_train_list(path, local)
    assert listed.items == [(local / "000003/00000001.jpg", 0), (local / "000003/00000002.jpg", 0),
                            (local / "000001/00000003.jpg", 1)]  # fmt: skip
    assert listed.class_names == ["000003", "000001"] and listed.labels.tolist() == [0, 0, 1]
    lines = path.read_text().splitlines()
    lines.insert(2, f"{remote}/000003/00000009.jpg 0")  # one space
    (tmp_path / "bad.list").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as info:
        casia.read_train_list(tmp_path / "bad.list", local)
    assert f"{tmp_path / 'bad.list'}:3" in str(info.value) and "two spaces" in str(info.value)
    bad = BadSamples("skip")
    assert len(casia.read_train_list(tmp_path / "bad.list", local, bad=bad)) == 3 and len(bad) == 1
    (tmp_path / "escape.list").write_text(f"{remote}/../../../etc/passwd  0\n")
    with pytest.raises(UnsafeFileError):
        casia.read_train_list(tmp_path / "escape.list", local)
    (tmp_path / "other.list").write_text("/data/elsewhere/000001/1.jpg  0\n")
    with pytest.raises(DataFormatError, match="faces_webface_112x112/image/"):
        casia.read_train_list(tmp_path / "other.list", local)


def test_pairs_txt_reads_every_line(tmp_path):
    path = casia.write_pairs_txt(tmp_path / "lfw.txt", [True, False, True])
    assert path.read_text().splitlines() == [
        "00001.jpg 00002.jpg 1",
        "00003.jpg 00004.jpg -1",
        "00005.jpg 00006.jpg 1",
    ]
    pairs = casia.read_pairs_txt(path)
    assert pairs.num_pairs == 3  # the original LFW loader drops pair 0 (spec §7.7)
    assert (
        pairs.left[0] == tmp_path / "lfw" / "00001.jpg" and pairs.right[2] == tmp_path / "lfw" / "00006.jpg"
    )
    assert pairs.issame.tolist() == [True, False, True]
    path.write_text("00001.jpg 00002.jpg 1\n00003.jpg 00004.jpg 0\n")
    with pytest.raises(DataFormatError) as info:
        casia.read_pairs_txt(path)
    assert f"{path}:2" in str(info.value) and "1 = same, -1 = different" in str(info.value)


# ------------------------------------------------------------------------------ TinyFace


def test_tinyface_tree(tmp_path):
    probe = _touch_images(tmp_path / "Probe", ["12_a.jpg", "3_b.png"])
    match = _touch_images(tmp_path / "Gallery_Match" / "sub", ["3_c.jpg", "12_d.JPG"])
    distractors = _touch_images(tmp_path / "Gallery_Disctractor", ["x.jpg", "y_1.jpeg"])  # README spelling
    (tmp_path / "Probe" / "readme.txt").write_text("not an image")
    data = tinyface.read_tinyface(tmp_path)
    assert data.probe_paths == [probe[0], probe[1]] and data.probe_labels.tolist() == [12, 3]
    assert data.gallery_paths == [match[1], match[0], *distractors]
    assert data.gallery_labels.tolist() == [12, 3, -100, -100] and data.num_distractors == 2
    (tmp_path / "Gallery_Disctractor").rename(tmp_path / "Gallery_Distractor")
    assert tinyface.read_tinyface(tmp_path).num_distractors == 2
    _touch_images(tmp_path / "Probe", ["face.jpg"])
    with pytest.raises(DataFormatError) as info:
        tinyface.read_tinyface(tmp_path)
    assert "face.jpg" in str(info.value) and "integer before the first '_'" in str(info.value)
    (tmp_path / "Probe" / "face.jpg").unlink()
    (tmp_path / "Gallery_Distractor").rename(tmp_path / "elsewhere")
    with pytest.raises(DataFormatError, match="Gallery_Distractor or Gallery_Disctractor"):
        tinyface.read_tinyface(tmp_path)


# ------------------------------------------------------------------------------ SynthFaces pairs


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    config = sf.SynthFacesConfig.tiny(w300_train=0, w300_common=0, w300_challenging=0)
    return sf.generate(tmp_path_factory.mktemp("synthrec") / "sf", config, workers=1)


def test_synthfaces_verification_bin_uses_held_out_identities(synth_root):
    config = sf.SynthFacesConfig.tiny(w300_train=0, w300_common=0, w300_challenging=0)
    pairs = read_bin(synth_root / sf.VERIFICATION_BIN)
    assert pairs.num_pairs == config.verification_pairs == 20
    with open(synth_root / "metadata.csv", newline="") as f:
        meta = {row["path"]: row for row in csv.DictReader(f)}
    with open(synth_root / sf.VERIFICATION_PAIRS_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    held_out = set(sf.held_out_folder_identities(config))
    train_ids, _ = sf.identity_split(config)
    assert len(held_out) >= 2 and not held_out & set(train_ids)
    for i, row in enumerate(rows):
        for side, k in (("left", 2 * i), ("right", 2 * i + 1)):
            m = meta[row[side]]
            assert (
                m["split"] == "test"
                and m["tree"] == "identities"
                and row[side].startswith("identities_test/")
            )
            assert int(m["identity"]) in held_out and int(m["identity"]) == int(row[f"{side}_identity"])
            assert pairs.images[k] == (synth_root / row[side]).read_bytes()
        same = meta[row["left"]]["identity"] == meta[row["right"]]["identity"]
        assert bool(pairs.issame[i]) == same == bool(int(row["issame"]))
        assert row["left"] != row["right"]
    # 10 contiguous folds of equal size, each half same, half different
    per_fold = pairs.num_pairs // 10
    folds = [int(r["fold"]) for r in rows]
    assert folds == [i // per_fold for i in range(pairs.num_pairs)]
    for fold in range(10):
        assert pairs.issame[fold * per_fold : (fold + 1) * per_fold].sum() == per_fold // 2
    # identities/ holds train identities only: a CASIA folder reader sees no held-out identity
    listed = casia.read_identity_folders(synth_root / "identities")
    assert {int(name) for name in listed.class_names} <= set(train_ids)
    assert {
        int(n) for n in casia.read_identity_folders(synth_root / "identities_test").class_names
    } == held_out


def test_verification_pairs_config_checks():
    with pytest.raises(ConfigError, match="multiple of 20"):
        sf.SynthFacesConfig.tiny(verification_pairs=30).validate()
    with pytest.raises(ConfigError, match="held-out identities"):
        sf.SynthFacesConfig.tiny(images_per_identity=1).validate()
    sf.SynthFacesConfig.tiny(verification_pairs=0, images_per_identity=1).validate()
    assert sf.plan_verification_pairs(sf.SynthFacesConfig.tiny(verification_pairs=0)) == []
    faceid = sf.SynthFacesConfig.preset("faceid")
    faceid.validate()
    train_ids, _ = sf.identity_split(faceid)
    assert len(train_ids) == 400 and len(sf.held_out_folder_identities(faceid)) == 100
    pairs = sf.plan_verification_pairs(faceid)
    assert len(pairs) == 600 and len({(p.left, p.right) for p in pairs}) == 600
    assert pairs == sf.plan_verification_pairs(sf.SynthFacesConfig.preset("faceid"))  # deterministic
