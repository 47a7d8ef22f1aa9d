"""Property-based fuzzing of every reader: damaged and random input raises only kdface's documented
errors (:class:`~kdface.errors.DataFormatError`, :class:`~kdface.errors.UnsafeFileError`) or is read
successfully. Any other exception (``IndexError``, ``OSError``, a library's own error type...) fails.
The bugs this fuzzing found in kdface are fixed and pinned by regression tests (section "found by fuzzing").

Inputs are valid files in the real formats with random mutations (byte flips and overwrites with
boundary integers, insertions, deletions, duplicated chunks, truncation; for text formats also token
replacement with ``nan``, ``1e999``, ``²``, huge integers, hostile paths..., and line duplication,
removal and swapping), plus random bytes, some behind a valid magic header.

Case counts: the ``ci`` profile (default; tests/conftest.py) runs 200 derandomized cases per test
(150 for each of the two image tests, where TensorFlow decodes every case): per reader, .pts 400,
WFLW 600 (400 lines, 200 annotation files), COFW .mat v5 400 (200 mutated, 200 random), v7.3 200,
COFW folder 200, images 300, verification .bin 600, RecordIO 600 (.rec 200, .idx 200, random 200),
train.list 200, annotation paths 200, CK+ 600 (emotion files 200, landmark files 200, sequence folders
with damaged emotion files and stray or misnamed files 200). The long run, with fresh random cases
every time::

    KDFACE_FUZZ_PROFILE=long KDFACE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz.py

Native crashes: scipy 1.17.1's C reader of MATLAB v5 files can be crashed (SIGSEGV/SIGBUS) by a changed
tag inside a miMATRIX or its array-flags word, or by inserted/deleted bytes, and made to allocate
gigabytes by a changed cell-array dimension. kdface therefore reads v5 files in a child process with
capped memory (``kdface.tasks.landmarks.cofw._loadmat_isolated``); :func:`test_fuzz_cofw_v5_hostile` throws
exactly those mutations at it. COFW v7.3 (HDF5 via h5py): mutations anywhere in the file, metadata
included, did not crash the HDF5 library in thousands of cases.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import tempfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from fer_fixtures import write_ckplus
from fixtures import pts_text, random_image, wflw_line, write_cofw_v5, write_cofw_v73
from hypothesis import event, given, settings
from hypothesis import strategies as st

from kdface.data import validation
from kdface.errors import DataFormatError, UnsafeFileError
from kdface.tasks.expressions import ckplus
from kdface.tasks.landmarks import cofw, w300, wflw
from kdface.tasks.recognition import casia, recordio, verification_bin

DOCUMENTED = (DataFormatError, UnsafeFileError)


def _documented_or_result(fn):
    """``fn()`` (a generator is consumed); ``None`` when it raised a documented error. Anything
    else propagates and fails the test."""
    try:
        result = fn()
        result = list(result) if hasattr(result, "__next__") else result
    except DOCUMENTED as exc:
        event(f"outcome: {type(exc).__name__}")  # shown by --hypothesis-show-statistics
        return None
    event("outcome: read")
    return result


def _scaled(fraction: float, floor: int = 100) -> int:
    """A share of the profile's ``max_examples`` (150 of the ci profile's 200), at least ``floor``."""
    return max(floor, int(settings.default.max_examples * fraction))


# ------------------------------------------------------------------------------------ mutations

BYTE_OPS = ("flip", "byte", "word", "insert", "delete", "duplicate", "truncate")
BOUNDARY_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF)
BOUNDARY_INTS += (2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1)  # word-size limits
IN_PLACE_OPS = ("flip", "byte", "word")  # keep every offset; the others shift or cut the rest


@st.composite
def mutated_bytes(draw, seed: bytes, *, regions=None, ops=BYTE_OPS, max_ops=6):
    """``seed`` with 1..``max_ops`` byte-level mutations drawn from ``ops``. ``regions`` (a list of
    ``(start, stop)``, default the whole file) confines the in-place ops; the others act anywhere."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(ops))
        lo, hi = draw(st.sampled_from(regions)) if regions and op in IN_PLACE_OPS else (0, len(data))
        hi = min(hi, len(data))
        if lo > hi or (lo == hi and op != "insert"):  # the region was cut off by a truncation
            continue
        pos = draw(st.integers(lo, hi if op == "insert" else hi - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.one_of(st.sampled_from((0, 1, 0x7F, 0x80, 0xFF)), st.integers(0, 255)))
        elif op == "word":
            size = draw(st.sampled_from((2, 4, 8)))
            value = draw(st.sampled_from(BOUNDARY_INTS)) % (1 << (8 * size))
            word = value.to_bytes(size, draw(st.sampled_from(("little", "big"))))
            size = min(size, hi - pos)  # in place: the file keeps its length
            data[pos : pos + size] = word[:size]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "duplicate":
            start = draw(st.integers(0, len(data) - 1))
            data[pos:pos] = data[start : start + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


LONG_NAME = "a" * 300 + ".jpg"  # one path component longer than any file system allows
WEIRD_TOKENS = (
    *("nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e-999", "1e308", "3.4e38"),
    *("", "-", "+", ".", "e", "1e", "0x10", "1_0", "1,5", "-0", "²", "٣", "１", "½", "\x00", "\t", " "),
    *("99999999999999999999", "9" * 400, "-" + "9" * 30, "1" * 7, "68", "29", "98", "207", "0", "2"),
    *("{", "}", ":", "n_points:", "version: 1", "\x85", "\u2028", "\x0c", "\r", "\ufeff"),
    *("../x.jpg", "/etc/passwd", "C:\\x.jpg", "a/../../b.jpg", "\\\\srv\\share\\x.jpg", "~/x.jpg", LONG_NAME),
)
TOKENS = st.one_of(
    st.sampled_from(WEIRD_TOKENS),
    st.text(max_size=8),
    st.integers().map(str),
    st.floats().map(str),
)
TEXT_OPS = ("token", "token", "append", "dup", "drop", "swap", "insert", "cut_line", "cut_text")


@st.composite
def mutated_text(draw, seed: str, *, max_ops=4):
    """``seed`` with token and line mutations, as UTF-8 bytes, half the time byte-mutated too."""
    lines = seed.split("\n")
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(TEXT_OPS))
        if not lines:
            lines = [draw(TOKENS)]
            continue
        i = draw(st.integers(0, len(lines) - 1))
        if op == "token":
            parts = re.split(r"(\s+)", lines[i])  # fields at even indices, separators kept
            j = 2 * draw(st.integers(0, len(parts) // 2))
            parts[j] = draw(TOKENS)
            lines[i] = "".join(parts)
        elif op == "append":
            lines[i] += draw(st.sampled_from((" ", "\t", ""))) + draw(TOKENS)
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "drop":
            del lines[i]
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, " ".join(draw(st.lists(TOKENS, max_size=4))))
        elif op == "cut_line":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif op == "cut_text":
            lines = lines[:i]
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(mutated_bytes(data, max_ops=2))
    return data


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------------------------ 300W .pts

PTS_SEED = pts_text(np.random.default_rng(0).uniform(1, 100, (68, 2)).round(3))
NUMBERISH = st.one_of(st.sampled_from(WEIRD_TOKENS), st.floats().map(str), st.integers().map(str))


@st.composite
def pts_like(draw):
    """Header-shaped text: right or wrong ``n_points``, number-ish coordinate lines."""
    good = st.tuples(st.floats(0, 500), st.floats(0, 500)).map(lambda p: f"{p[0]} {p[1]}")
    weird = st.lists(NUMBERISH, max_size=3).map(" ".join)
    body = draw(st.lists(st.one_of(good, good, weird), max_size=72))
    n = draw(st.one_of(st.just(str(len(body))), NUMBERISH))
    closing = draw(st.sampled_from(("}", "}\n", "}\n\n  \n", "", "} }")))
    return f"version: 1\nn_points: {n}\n{{\n" + "".join(f"{line}\n" for line in body) + closing


def _check_pts(result):
    if result is not None:
        assert result.dtype == np.float32 and result.ndim == 2 and result.shape[1] == 2
        assert np.all(np.isfinite(result))


@given(data=mutated_text(PTS_SEED))
def test_fuzz_pts_mutations(workdir, data):
    path = _write(workdir / "face.pts", data)
    _check_pts(_documented_or_result(lambda: w300.read_pts(path)))


@given(
    data=st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode), pts_like().map(str.encode))
)
def test_fuzz_pts_random(workdir, data):
    path = _write(workdir / "random.pts", data)
    _check_pts(_documented_or_result(lambda: w300.read_pts(path)))


# ------------------------------------------------------------------------------------ WFLW

WFLW_REL = "0--Parade/a.jpg"
_wflw_rng = np.random.default_rng(1)
WFLW_SEED_LINES = [
    wflw_line(_wflw_rng.uniform(0, 19, (98, 2)), (1, 2, 15, 18), (1, 0, 0, 0, 1, 0), WFLW_REL),
    wflw_line(_wflw_rng.uniform(0, 19, (98, 2)), (0, 0, 19, 19), (0, 1, 0, 0, 0, 1), WFLW_REL),
]


def _check_wflw_line(result):
    if result is not None:
        landmarks, box, attributes, rel = result
        assert landmarks.shape == (98, 2) and landmarks.dtype == np.float32
        assert len(box) == 4 and all(np.isfinite(box))
        assert set(attributes) == set(wflw.ATTRIBUTES) and isinstance(rel, str)


@given(data=mutated_text(WFLW_SEED_LINES[0]))
def test_fuzz_wflw_parse_line_mutations(data):
    text = data.decode("utf-8", "replace")
    _check_wflw_line(_documented_or_result(lambda: wflw.parse_line(text, "ann.txt", 7)))


@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(WEIRD_TOKENS), min_size=wflw.NUM_FIELDS, max_size=wflw.NUM_FIELDS).map(
            " ".join
        ),
        st.lists(NUMBERISH, min_size=200, max_size=200).map(lambda f: " ".join(f + ["0"] * 6 + ["a.jpg"])),
    )
)
def test_fuzz_wflw_parse_line_random(text):
    _check_wflw_line(_documented_or_result(lambda: wflw.parse_line(text, "ann.txt", 7)))


@pytest.fixture(scope="module")
def wflw_root(workdir):
    root = workdir / "wflw"
    (root / wflw.ANNOTATION_DIR).mkdir(parents=True)
    image = root / wflw.IMAGE_DIR / WFLW_REL
    image.parent.mkdir(parents=True)
    cv2.imwrite(str(image), random_image(20, 20, 1))
    return root


@given(
    data=mutated_text("\n".join(WFLW_SEED_LINES) + "\n"),
    split=st.sampled_from(("test", "pose", "blur")),
    bad=st.sampled_from((None, "skip")),
)
def test_fuzz_wflw_read_split(wflw_root, data, split, bad):
    _write(wflw_root / wflw.ANNOTATION_DIR / wflw.ANNOTATION_FILES["test"], data)
    samples = _documented_or_result(lambda: wflw.read_split(wflw_root, split, bad=bad))
    image_root = os.path.normpath(wflw_root / wflw.IMAGE_DIR)
    for sample in samples or []:
        assert os.path.normpath(sample.image_path).startswith(image_root + os.sep)
        assert sample.landmarks.shape == (98, 2)


def test_wflw_overlong_image_name(wflw_root):
    """Found by fuzzing: Path.is_file raised OSError(ENAMETOOLONG) out of the reader."""
    line = WFLW_SEED_LINES[0].rsplit(" ", 1)[0] + " " + LONG_NAME
    _write(wflw_root / wflw.ANNOTATION_DIR / wflw.ANNOTATION_FILES["test"], line.encode())
    with pytest.raises(DataFormatError, match="an image path the file system accepts"):
        list(wflw.read_split(wflw_root, "test"))


# ------------------------------------------------------------------------------------ COFW .mat


def _cofw_data(n=2):
    rng = np.random.default_rng(2)
    images = [random_image(10, 12, 1), random_image(9, 11, 2, channels=0)][:n]
    xs_ys = rng.uniform(1, 9, (n, 58)).round(2)
    phis = np.concatenate([xs_ys, rng.integers(0, 2, (n, 29)).astype(np.float64)], axis=1)
    boxes = np.array([[1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 6.0, 6.0]])[:n]
    return images, phis, boxes


def _seed_file(writer) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "seed.mat"
        writer(path, *_cofw_data())
        return path.read_bytes()


V5_SEED = _seed_file(write_cofw_v5)
V73_SEED = _seed_file(write_cofw_v73)


def _v73_regions():
    """Byte ranges of the v7.3 seed: HDF5 metadata and each dataset's raw data."""
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder) / "seed.mat", V73_SEED)
        raw = []

        def visit(_name, node):
            if isinstance(node, h5py.Dataset) and node.id.get_offset() is not None:
                raw.append((node.id.get_offset(), node.id.get_offset() + node.id.get_storage_size()))

        with h5py.File(path, "r") as f:
            f.visititems(visit)
    return [(0, 512), (512, len(V73_SEED)), *raw]  # user block, the whole HDF5 part, raw data


_V73_REGIONS = _v73_regions()


def _v5_safe_regions(seed: bytes):
    """Byte ranges of the v5 seed where in-place changes neither crash nor exhaust the machine.

    scipy 1.17.1's C reader (``scipy.io.matlab._mio5_utils``) dies with SIGSEGV/SIGBUS, taking pytest
    with it, on a miMATRIX whose array flags claim a complex array without an imaginary part, or whose
    sub-element tag has an unknown type or the small-element bit (found by this fuzzer and mapped by
    changing every byte of the seed in a child process). Shifting bytes (insert, delete, duplicate)
    misaligns tags and crashes it too. And a cell array's dimensions are allocated (as an object array,
    filled) before any element is read: one changed byte made a 2 KB file take 8 GB. So v5 files only
    get in-place changes outside those fields, and truncation. Left out: every tag inside a miMATRIX,
    each array-flags word and the dimensions of cell arrays.
    """
    fragile = []

    def walk(start, stop, inside_matrix):
        offset, cell = start, False
        while offset + 8 <= stop:
            kind, size = struct.unpack_from("<II", seed, offset)
            if inside_matrix:
                fragile.append((offset, offset + 8))  # the tag (type, byte count or small element)
            if kind >> 16:  # small data element: tag and data in 8 bytes
                offset += 8
                continue
            if kind == 6 and inside_matrix:  # miUINT32 array flags: class and complex/global/logical bits
                fragile.append((offset + 8, offset + 16))
                cell = seed[offset + 8] == 1  # mxCELL_CLASS
            elif kind == 5 and cell:  # miINT32 dimensions of a cell array
                fragile.append((offset + 8, offset + 8 + size))
                cell = False
            if kind == 14:  # miMATRIX: flags, dims, name, then the data elements (or nested matrices)
                walk(offset + 8, offset + 8 + size, True)
            offset += 8 + size + (-size % 8 if kind != 14 else 0)

    walk(128, len(seed), False)
    safe, position = [], 0
    for lo, hi in sorted(fragile):
        if lo > position:
            safe.append((position, lo))
        position = max(position, hi)
    return safe + [(position, len(seed))] if position < len(seed) else safe


_V5_REGIONS = _v5_safe_regions(V5_SEED)


def _read_cofw(path, bad):
    samples = _documented_or_result(
        lambda: cofw.read_mat(path, "IsTr", "phisTr", "bboxesTr", "train", bad=bad)
    )
    for sample in samples or []:
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3 and sample.image.shape[2] == 3
        assert sample.landmarks.shape == (29, 2) and sample.attributes["occluded"].shape == (29,)


@given(
    data=mutated_bytes(V5_SEED, regions=_V5_REGIONS, ops=(*IN_PLACE_OPS, "truncate")),
    bad=st.sampled_from((None, "skip")),
)
def test_fuzz_cofw_v5_mutations(workdir, data, bad):
    _read_cofw(_write(workdir / "v5.mat", data), bad)


@settings(max_examples=max(50, settings().max_examples // 4))
@given(data=mutated_bytes(V5_SEED), bad=st.sampled_from((None, "skip")))
def test_fuzz_cofw_v5_hostile(workdir, data, bad):
    """Every mutation kind anywhere, including those that crash scipy's C reader or make it allocate
    gigabytes: the isolated child dies, the reader raises DataFormatError."""
    _read_cofw(_write(workdir / "v5.mat", data), bad)


@given(data=st.one_of(st.binary(max_size=2048), st.binary(max_size=1024).map(lambda b: V5_SEED[:128] + b)))
def test_fuzz_cofw_mat_random_bytes(workdir, data):
    _read_cofw(_write(workdir / "random.mat", data), None)


@given(data=mutated_bytes(V73_SEED, regions=_V73_REGIONS), bad=st.sampled_from((None, "skip")))
def test_fuzz_cofw_v73_mutations(workdir, data, bad):
    _read_cofw(_write(workdir / "v73.mat", data), bad)


# ------------------------------------------------------------------------------------ COFW folder

_folder_rng = np.random.default_rng(3)
AN_SEED = "\n".join("\t".join(f"{v:.3f}" for v in _folder_rng.uniform(1, 15, 29)) for _ in range(2)) + "\n"
BB_SEED = "2 3 10 11\n"


@pytest.fixture(scope="module")
def cofw_folder(workdir):
    root = workdir / "cofw_folder"
    root.mkdir()
    cv2.imwrite(str(root / "img1.png"), random_image(16, 16, 7))
    return root


@given(
    an=st.one_of(st.just(AN_SEED.encode()), mutated_text(AN_SEED)),
    bb=st.one_of(st.none(), st.just(BB_SEED.encode()), mutated_text(BB_SEED)),
    bad=st.sampled_from((None, "skip")),
)
def test_fuzz_cofw_folder_mutations(cofw_folder, an, bb, bad):
    _write(cofw_folder / "an_img1.txt", an)
    (cofw_folder / "bb_img1.txt").unlink(missing_ok=True)
    if bb is not None:
        _write(cofw_folder / "bb_img1.txt", bb)
    for sample in _documented_or_result(lambda: cofw.read_folder(cofw_folder, bad=bad)) or []:
        assert sample.landmarks.shape == (29, 2)
        assert sample.box is None or len(sample.box) == 4


# ------------------------------------------------------------------------------------ images


def _encode(ext, image):
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


IMAGE_SEEDS = (
    _encode(".png", random_image(16, 16, 4)),
    _encode(".png", random_image(12, 10, 5, channels=0)),
    _encode(".jpg", random_image(16, 16, 6)),
    _encode(".bmp", random_image(12, 16, 7)),
)
MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ")


def _check_image(data):
    result = _documented_or_result(lambda: validation.check_image_bytes(data, "x.png"))
    if result is not None:
        height, width = result
        assert (
            validation.MIN_IMAGE_SIDE <= min(height, width) <= max(height, width) <= validation.MAX_IMAGE_SIDE
        )


@settings(max_examples=_scaled(0.75))
@given(data=st.sampled_from(IMAGE_SEEDS).flatmap(mutated_bytes))
def test_fuzz_image_mutations(data):
    _check_image(data)


@settings(max_examples=_scaled(0.75))
@given(
    data=st.one_of(
        st.binary(max_size=512),
        st.tuples(st.sampled_from(MAGIC), st.binary(max_size=512)).map(b"".join),
        st.tuples(st.sampled_from(IMAGE_SEEDS), st.integers(0, 200), st.binary(max_size=64)).map(
            lambda t: t[0][: t[1]] + t[2]  # a real header, then junk
        ),
    )
)
def test_fuzz_image_random_bytes(data):
    _check_image(data)


# ------------------------------------------------------------------------------------ verification .bin


def _bin_seeds():
    images = [_encode(".png", random_image(8, 8, i)) for i in range(4)]
    with tempfile.TemporaryDirectory() as folder:
        written = verification_bin.write_bin(Path(folder) / "seed.bin", images, [True, False]).read_bytes()
    arrays = [np.frombuffer(image, np.uint8) for image in images]
    # Python-2-era layout: protocol 2, _codecs.encode for bytes, NumPy arrays and NumPy bools.
    legacy = pickle.dumps((arrays[:2] + images[2:], [np.bool_(True), np.bool_(False)]), protocol=2)
    return written, legacy, pickle.dumps((images, np.array([1, 0])), protocol=2)


BIN_SEEDS = _bin_seeds()


def _read_bin(path):
    pairs = _documented_or_result(lambda: verification_bin.read_bin(path))
    if pairs is not None:
        assert pairs.num_pairs >= 1 and len(pairs.images) == 2 * pairs.num_pairs
        assert pairs.issame.dtype == bool and all(type(image) is bytes for image in pairs.images)


@given(data=st.sampled_from(BIN_SEEDS).flatmap(mutated_bytes))
def test_fuzz_bin_mutations(workdir, data):
    _read_bin(_write(workdir / "mutated.bin", data))


@given(
    data=st.one_of(
        st.binary(max_size=512),
        st.tuples(st.sampled_from((b"\x80\x02", b"\x80\x04", b"\x80\x05")), st.binary(max_size=256)).map(
            b"".join
        ),
    )
)
def test_fuzz_bin_random_bytes(workdir, data):
    _read_bin(_write(workdir / "random.bin", data))


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(),
    st.binary(max_size=8),
    st.text(max_size=4),
    st.sampled_from(
        (np.bool_(True), np.int64(1), np.zeros(3, np.uint8), np.zeros((2, 2), np.uint8), np.ones(2))
    ),
)
_OBJECTS = st.recursive(
    _LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=3), children, max_size=3),
    ),
    max_leaves=12,
)


@given(obj=_OBJECTS, protocol=st.sampled_from((2, 4)))
def test_fuzz_bin_random_structures(workdir, obj, protocol):
    _read_bin(_write(workdir / "structure.bin", pickle.dumps(obj, protocol=protocol)))


# ------------------------------------------------------------------------------------ RecordIO .rec/.idx


def _recordio_seed() -> tuple[bytes, str]:
    """An InsightFace-style pair: meta, 3 images (one split in 2 parts by an aligned magic word), 2
    identity records."""
    items = [
        (0, _encode(".jpg", random_image(8, 8, 0))),
        (0, b"\xff\xd8xx" + struct.pack("<I", recordio.MAGIC) + b"tail"),
        (2, _encode(".png", random_image(8, 8, 1))),
    ]
    with tempfile.TemporaryDirectory() as folder:
        rec, idx = recordio.write_recordio(Path(folder) / "t.rec", Path(folder) / "t.idx", items)
        return rec.read_bytes(), idx.read_text()


REC_SEED, IDX_SEED = _recordio_seed()


def _read_recordio(rec: Path, idx: Path):
    def read():
        with recordio.RecordIOReader(rec, idx) as reader:
            images = list(reader)
            assert len(images) == len(reader) == reader.meta[0] - 1
            return images

    images = _documented_or_result(read)
    for label, data in images or []:
        assert type(label) is int and label >= 0 and type(data) is bytes and data


@given(data=mutated_bytes(REC_SEED))
def test_fuzz_recordio_rec_mutations(workdir, data):
    _read_recordio(_write(workdir / "m.rec", data), _write(workdir / "m.idx", IDX_SEED.encode()))


@given(data=mutated_text(IDX_SEED))
def test_fuzz_recordio_idx_mutations(workdir, data):
    _read_recordio(_write(workdir / "i.rec", REC_SEED), _write(workdir / "i.idx", data))


@given(
    rec=st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=256).map(lambda b: struct.pack("<I", recordio.MAGIC) + b),
    ),
    idx=st.one_of(st.just(IDX_SEED.encode()), st.binary(max_size=64)),
)
def test_fuzz_recordio_random_bytes(workdir, rec, idx):
    _read_recordio(_write(workdir / "r.rec", rec), _write(workdir / "r.idx", idx))


# ------------------------------------------------------------------------------------ train.list

TRAIN_LIST_SEED = "".join(
    f"/data/x/faces_webface_112x112/image/{label:06d}/{key:08d}.jpg  {label}\n"
    for key, label in enumerate((0, 0, 1, 2), start=1)
)


@given(data=mutated_text(TRAIN_LIST_SEED), bad=st.sampled_from((None, "skip")))
def test_fuzz_train_list(workdir, data, bad):
    root = os.path.normpath("/data/image")
    listed = _documented_or_result(
        lambda: casia.read_train_list(_write(workdir / "train.list", data), root, bad=bad)
    )
    if listed is not None:
        assert len(listed) >= 1 and listed.num_classes == int(listed.labels.max()) + 1
        for path, _ in listed.items:
            assert os.path.normpath(path).startswith(root + os.sep), path


# ------------------------------------------------------------------------------------ annotation paths

PATH_PARTS = st.one_of(
    st.sampled_from(("..", ".", "", "a", "b.jpg", "~", "C:", "c:", "\\", "/", "//", " ", "...", "..\\..")),
    st.text(max_size=4),
)
SEPARATORS = st.sampled_from(("/", "\\", "//", "/./"))


@given(
    text=st.one_of(
        st.text(max_size=40),
        st.tuples(st.lists(PATH_PARTS, max_size=8), SEPARATORS).map(lambda t: t[1].join(t[0])),
        st.tuples(
            st.sampled_from(("/", "\\", "C:\\", "C:", "\\\\srv\\s\\", "~/", " ")), st.text(max_size=8)
        ).map("".join),
    )
)
def test_fuzz_safe_relative_path(text):
    root = os.path.normpath("/data/WFLW_images")
    result = _documented_or_result(lambda: validation.safe_relative_path(root, text, "ann.txt", 1))
    if result is not None:
        normal = os.path.normpath(result)
        assert normal == root or normal.startswith(root + os.sep), (text, normal)
        assert "\x00" not in str(result)


# ------------------------------------------------------------------------------------ CK+

EMOTION_SEED = "   3.0000000e+00\n"
LANDMARK_SEED = "".join(
    f"   {x:.7e}   {y:.7e}\n" for x, y in np.random.default_rng(4).uniform(5, 35, (68, 2))
)


@given(data=st.one_of(mutated_text(EMOTION_SEED), st.binary(max_size=64)))
def test_fuzz_ckplus_emotion_file(workdir, data):
    path = _write(workdir / "S005_001_00000003_emotion.txt", data)
    code = _documented_or_result(lambda: ckplus.read_emotion_file(path))
    assert code is None or code in ckplus.CKPLUS_CODES


@given(data=st.one_of(mutated_text(LANDMARK_SEED), st.binary(max_size=600)))
def test_fuzz_ckplus_landmark_file(workdir, data):
    path = _write(workdir / "S005_001_00000001_landmarks.txt", data)
    points = _documented_or_result(lambda: ckplus.read_landmarks(path))
    if points is not None:
        assert points.shape == (68, 2) and points.dtype == np.float32 and np.all(np.isfinite(points))


@pytest.fixture(scope="module")
def ck_root(workdir):
    return write_ckplus(workdir / "ckplus", {"S005": [(4, 3), (3, None)]})


CK_NAME_PARTS = st.sampled_from(("S005", "S006", "001", "002", "00000001", "00000002", "00000009", "_", "-", "x",
                                 "emotion", "landmarks", ".txt", ".png", ".jpg", "S5", "0", " ", "."))  # fmt: skip
CK_NAMES = st.lists(CK_NAME_PARTS, min_size=1, max_size=6).map("".join).filter(lambda n: n not in (".", ".."))


@given(
    emotion=st.one_of(st.just(EMOTION_SEED.encode()), mutated_text(EMOTION_SEED)),
    strays=st.lists(st.tuples(st.sampled_from(("cohn-kanade-images", "Emotion")), CK_NAMES), max_size=3),
    bad=st.sampled_from((None, "skip")),
)
def test_fuzz_ckplus_sequence_folder(ck_root, emotion, strays, bad):
    """A damaged emotion file, and stray or misnamed files (a frame's bytes under a random name) in the
    sequence's folders: pairs of S005 only, or documented errors."""
    _write(ck_root / "Emotion/S005/001/S005_001_00000004_emotion.txt", emotion)
    frame = (ck_root / "cohn-kanade-images/S005/001/S005_001_00000002.png").read_bytes()
    written = []
    try:
        for tree, name in strays:
            path = ck_root / tree / "S005/001" / name
            if not path.exists():
                written.append(_write(path, frame))

        def read():
            sequences = ckplus.read_subject(ck_root, "S005", bad)
            pairs = ckplus.subject_pairs(ck_root, sequences, fold=0, neutral_pairs=True, bad=bad)
            return [pair for pair, _, _ in ckplus.validated_pairs(pairs, bad)]

        for pair in _documented_or_result(read) or []:
            assert pair.subject == pair.neutral.subject == pair.target.subject == "S005"
            assert 0 <= pair.label < ckplus.NUM_CLASSES and pair.neutral.number == 1
    finally:
        for path in written:
            path.unlink()


# ------------------------------------------------------------------------------------ found by fuzzing


def _huge_coordinate(reader, folder: Path):
    """The first landmark's x is 1e300: finite as float64, ``inf`` once cast to float32."""
    if reader == "wflw":
        fields = WFLW_SEED_LINES[0].split()
        return wflw.parse_line(" ".join(["1e300", *fields[1:]]), "ann.txt", 1)[0]
    if reader == "cofw_folder":
        cv2.imwrite(str(folder / "x.png"), random_image(16, 16, 1))
        (folder / "an_x.txt").write_text(" ".join(["1e300"] + ["1"] * 57))
        return list(cofw.read_folder(folder))[0].landmarks
    images, phis, boxes = _cofw_data()
    phis[0, 0] = 1e300
    write_cofw_v5(folder / "huge.mat", images, phis, boxes)
    return list(cofw.read_mat(folder / "huge.mat", "IsTr", "phisTr", "bboxesTr", "train"))[0].landmarks


@pytest.mark.parametrize("reader", ["wflw", "cofw_folder", "cofw_mat"])
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_coordinate_beyond_float32_is_rejected(tmp_path, reader):
    """Found by fuzzing: 1e300 passed the float64 finite check and became inf as float32."""
    with pytest.raises(DataFormatError, match=r"1e\+06|1e\+300"):
        _huge_coordinate(reader, tmp_path)


def test_ckplus_emotion_code_beyond_float_range_is_rejected(tmp_path):
    """Found by fuzzing: '1e999' parsed as inf, and int(inf) raised OverflowError out of the reader."""
    path = _write(tmp_path / "S005_001_00000003_emotion.txt", b"1e999")
    with pytest.raises(DataFormatError, match="a CK\\+ emotion code 1..7"):
        ckplus.read_emotion_file(path)


def test_mutators_change_their_input():
    """Guard against an inert mutator (the fuzz tests would then pass on valid files only)."""
    changed = []

    @settings(max_examples=50, derandomize=True, database=None)
    @given(
        v5=mutated_bytes(V5_SEED, regions=_V5_REGIONS, ops=IN_PLACE_OPS),
        v73=mutated_bytes(V73_SEED, regions=_V73_REGIONS[2:]),
        pts=mutated_text(PTS_SEED),
    )
    def mutate(v5, v73, pts):
        changed.append((v5 != V5_SEED, v73 != V73_SEED, pts != PTS_SEED.encode()))

    mutate()
    assert np.mean(changed, axis=0).min() > 0.8, np.mean(changed, axis=0)
