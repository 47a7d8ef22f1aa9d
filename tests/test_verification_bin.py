"""InsightFace verification ``.bin`` reader: round trip, the layouts older files use, structural
errors, and refusal of pickles that would run code."""

from __future__ import annotations

import builtins
import os
import pickle
import subprocess

import cv2
import numpy as np
import pytest
from fixtures import random_image

from kdface.data.validation import check_image_bytes
from kdface.errors import DataFormatError, UnsafeFileError
from kdface.tasks.recognition.verification_bin import VerificationPairs, read_bin, write_bin


def _encoded(ext, seed, size=16):
    ok, data = cv2.imencode(ext, random_image(size, size, seed))
    assert ok
    return data.tobytes()


def _images(pairs):
    return [_encoded(".png" if i % 2 else ".jpg", i) for i in range(2 * pairs)]


def _raises(path, *, contains, line=None):
    with pytest.raises(DataFormatError) as info:
        read_bin(path)
    assert str(path) in str(info.value)
    for text in contains:
        assert text in str(info.value), str(info.value)
    assert info.value.line == line
    return info.value


def test_round_trip(tmp_path):
    images, issame = _images(3), [True, False, True]
    path = write_bin(tmp_path / "lfw.bin", images, issame)
    pairs = read_bin(path)
    assert isinstance(pairs, VerificationPairs)
    assert pairs.num_pairs == 3 and pairs.path == str(path)
    assert pairs.images == images and all(type(b) is bytes for b in pairs.images)
    assert pairs.issame.dtype == bool and pairs.issame.tolist() == issame
    for data in pairs.images:  # still encoded: the pipeline decodes and checks them
        assert check_image_bytes(data, path) == (16, 16)
    # The written file is exactly what the InsightFace tools write: a pickle of (list, list).
    raw = pickle.loads(path.read_bytes())
    assert isinstance(raw, tuple) and raw[0] == images and raw[1] == issame
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary behind


def test_numpy_layouts_accepted(tmp_path):
    """Re-exports with uint8-array images and NumPy-bool / 0-1 flags, as Python 2 pickles (protocol 2)."""
    images = _images(2)
    arrays = [np.frombuffer(b, np.uint8) for b in images]
    for issame in ([np.bool_(True), np.bool_(False)], np.array([True, False]), [1, 0], np.array([1, 0])):
        path = tmp_path / "agedb_30.bin"
        path.write_bytes(pickle.dumps((arrays, issame), protocol=2))
        pairs = read_bin(path)
        assert pairs.images == images and pairs.issame.tolist() == [True, False]
    # write_bin accepts the same layouts.
    pairs = read_bin(write_bin(tmp_path / "w.bin", arrays, np.array([np.bool_(True), np.bool_(False)])))
    assert pairs.images == images and pairs.issame.tolist() == [True, False]


def test_python2_str_images(tmp_path):
    """Python 2 wrote image bytes as ``str``; protocol-2 pickles of bytes use ``_codecs.encode``."""
    images = _images(1)
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(pickle.dumps((images, (True,)), protocol=2))
    assert b"_codecs" in path.read_bytes()
    assert read_bin(path).images == images


GOOD = _images(1)


@pytest.mark.parametrize(
    "payload, contains, line",
    [
        ([GOOD, [True], "extra"], ["(images, issame)", "list of length 3"], None),
        ({"images": GOOD}, ["(images, issame)", "dict"], None),
        (None, ["(images, issame)", "NoneType"], None),
        ((b"".join(GOOD), [True]), ["images (first item)", "bytes"], None),
        ((GOOD, "yes"), ["issame", "str"], None),
        ((GOOD, np.ones((1, 1), bool)), ["1-D array of bools", "shape (1, 1)"], None),
        ((GOOD, np.array([0.5])), ["1-D array of bools", "float64"], None),
        ((GOOD, [True, "no"]), ["issame item 1", "0-based item index", "str"], 1),
        ((GOOD, [2]), ["issame item 0", "'2'"], 0),
        ((GOOD, [0.0]), ["issame item 0", "float"], 0),
        ((GOOD + GOOD, [True]), ["two images per issame entry", "4 images, 1 issame"], None),
        ((GOOD[:1], [True]), ["two images per issame entry", "1 images, 1 issame"], None),
        (([], []), ["at least one pair", "0 pairs"], None),
        (([GOOD[0], "text"], [True]), ["image 1", "encoded image bytes", "0-based item index", "str"], 1),
        (([GOOD[0], np.zeros((2, 2), np.uint8)], [True]), ["image 1", "shape (2, 2)"], 1),
        (([np.zeros(4, np.float32), GOOD[1]], [True]), ["image 0", "float32"], 0),
    ],
)
def test_structure_errors(tmp_path, payload, contains, line):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    _raises(path, contains=["expected", *contains], line=line)


@pytest.mark.parametrize(
    "data, got",
    [
        (b"", "EOFError"),
        (b"not a pickle at all", "UnpicklingError"),
        (pickle.dumps((GOOD, [True]), protocol=4)[:-40], "truncated"),
        (b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f", "UnpicklingError"),  # frame longer than the file
    ],
)
def test_not_a_pickle(tmp_path, data, got):
    path = tmp_path / "garbage.bin"
    path.write_bytes(data)
    _raises(path, contains=["InsightFace verification .bin", "pickle of (images, issame)", got])


def test_missing_file(tmp_path):
    _raises(tmp_path / "nowhere.bin", contains=["no such file"])
    _raises(tmp_path, contains=["no such file"])  # a folder is not a .bin either


def test_write_bin_rejects_bad_pairs(tmp_path):
    with pytest.raises(ValueError, match="two images per issame entry"):
        write_bin(tmp_path / "x.bin", _images(1), [True, False])
    assert not (tmp_path / "x.bin").exists()


class _Payload:
    """Unpickling this calls ``function(*args)``: the classic pickle code-execution exploit."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize(
    "make_call, global_name",
    [
        (lambda marker: (os.system, (f"echo pwned > {marker}",)), "system"),
        (lambda marker: (builtins.eval, (f"open({str(marker)!r}, 'w').write('pwned')",)), "builtins.eval"),
        (lambda marker: (subprocess.Popen, (["touch", str(marker)],)), "subprocess.Popen"),
    ],
    ids=["os.system", "builtins.eval", "subprocess.Popen"],
)
@pytest.mark.parametrize("where", ["whole file", "inside an image list"])
def test_code_running_pickle_refused(tmp_path, make_call, global_name, where):
    marker = tmp_path / "pwned"
    function, args = make_call(marker)
    payload = _Payload(function, *args)
    obj = payload if where == "whole file" else ([GOOD[0], payload], [True])
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(UnsafeFileError) as info:
        read_bin(path)
    message = str(info.value)
    assert global_name in message and str(path) in message and "refused" in message
    assert not marker.exists(), "the pickle's payload ran"
