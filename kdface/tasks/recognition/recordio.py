"""InsightFace RecordIO training sets (``train.rec`` + ``train.idx``), read without mxnet (spec §5.1).

InsightFace ships its training sets (``faces_webface_112x112`` = CASIA-WebFace, ``faces_emore``,
...) as an mxnet indexed RecordIO pair:

* ``train.idx``: text, one ``key<TAB>byte offset`` line per record (written by mxnet's
  ``MXIndexedRecordIO``).
* ``train.rec``: chunks ``[uint32 magic 0xced7230a][uint32 lrec][payload][zero pad to 4 bytes]``,
  little-endian, each starting 4-byte aligned. The low 29 bits of ``lrec`` are the chunk length, the
  top 3 bits a continuation flag: 0 = a whole record; 1 / 2 / 3 = first / middle / last part.
  dmlc's writer splits a record wherever its payload holds the magic word at a 4-byte aligned
  offset (it drops the word and its reader puts it back between the parts). Multi-part records are
  **joined** here the same way (a JPEG can contain those four bytes), so every record dmlc writes
  reads back.
* payload: a 24-byte header ``<IfQQ`` = (flag, label, id, id2). ``flag > 0``: ``flag`` float32
  labels follow the header and the header's label is ignored. The rest is the encoded image.
* record 0 is the meta record: ``flag > 0`` with labels ``[first_non_image, end]``. Image records
  are keys ``1 .. first_non_image - 1`` with the class as their (first) label; keys
  ``first_non_image .. end - 1`` are the identity records (labels ``[first key, end key)`` of one
  class's images), not needed for training.

Images are returned encoded (not decoded here). Every structural problem is a
:class:`~kdface.errors.DataFormatError` naming the file, the ``.idx`` line or the record key with
its byte offset, and the expected value: a bad magic, a truncated record, an ``.idx`` line that is
not ``key<TAB>offset``, an offset beyond the end of ``train.rec``, a header or label that does not
fit, a label that is not a class index.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import threading
from pathlib import Path

import numpy as np

from kdface.errors import DataFormatError
from kdface.io.atomic import atomic_path

MAGIC = 0xCED7230A
HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2: 24 bytes, as mxnet's native 'IfQQ' on x86
_CHUNK = struct.Struct("<II")  # magic, lrec
_LENGTH_MASK = (1 << 29) - 1
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IDX_LINE = re.compile(r"([0-9]{1,19})\t([0-9]{1,19})")
IDX_LINE = "'<key>\\t<byte offset>' (two tab-separated non-negative integers)"
MAX_LABELS = 1 << 20  # a flag beyond this is damage, not a label vector


@dataclasses.dataclass(frozen=True)
class Record:
    """One unpacked record: the header fields, its labels (``flag`` of them, or the header's one) and
    the rest of the payload (the encoded image for image records)."""

    flag: int
    label: np.ndarray  # float32, (max(flag, 1),)
    id: int
    id2: int
    payload: bytes


def _hex(value: int) -> str:
    return f"0x{value:08x}"


def _parse_idx(path: Path) -> tuple[dict[int, int], dict[int, int]]:
    """``({key: byte offset}, {key: line number})``; see :func:`read_idx`."""
    if not path.is_file():
        raise DataFormatError(path, "a RecordIO index file (.idx)", got="no such file")
    text = path.read_bytes().decode("utf-8", errors="replace")
    index: dict[int, int] = {}
    lines: dict[int, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        match = _IDX_LINE.fullmatch(line.strip(" "))
        if match is None:
            raise DataFormatError(path, IDX_LINE, line=number, got=line[:80])
        key, offset = int(match.group(1)), int(match.group(2))
        if key in index:
            raise DataFormatError(path, f"each key once (key {key} is repeated)", line=number, got=line[:80])
        index[key] = offset
        lines[key] = number
    return index, lines


def read_idx(path) -> dict[int, int]:
    """``{key: byte offset}`` from a ``.idx`` file (blank lines and CRLF tolerated); a malformed or
    repeated line is a :class:`DataFormatError` naming ``path:line``."""
    return _parse_idx(Path(path))[0]


class RecordIOReader:
    """Random access to an InsightFace ``train.rec`` through its ``train.idx``.

    ``len(reader)`` is the number of images; ``reader.image_keys`` their keys (``1 ..
    first_non_image - 1``); ``reader.read(key)`` -> ``(class, encoded image bytes)``; iteration yields
    those pairs in key order. ``meta`` is record 0's ``(first_non_image, end)`` and
    ``num_identities`` the count of identity records (``end - first_non_image``). Thread-safe; can be
    pickled (the file is reopened lazily).
    """

    def __init__(self, path_rec, path_idx):
        self.path_rec = Path(path_rec)
        self.path_idx = Path(path_idx)
        if not self.path_rec.is_file():
            raise DataFormatError(self.path_rec, "a RecordIO data file (.rec)", got="no such file")
        self._size = self.path_rec.stat().st_size
        self._index, self._lines = _parse_idx(self.path_idx)
        for key, offset in self._index.items():
            if offset % 4 or offset + _CHUNK.size > self._size:
                raise DataFormatError(
                    self.path_idx,
                    f"key {key}'s offset to be 4-byte aligned and leave room for a record header in "
                    f"{self.path_rec.name} ({self._size} bytes)",
                    line=self._line(key),
                    got=str(offset),
                )
        self._handle = None
        self._lock = threading.Lock()
        self.meta = self._read_meta()

    # ------------------------------------------------------------------ pickling / closing
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ structure
    def _line(self, key: int) -> int | None:
        return self._lines.get(key)

    def _read_meta(self) -> tuple[int, int]:
        if 0 not in self._index:
            raise DataFormatError(self.path_idx, "a line for key 0 (the meta record)", got="none")
        meta = self.read_record(0)
        expected = "record key 0 (meta) to hold flag >= 2 labels [first_non_image, end] with 1 <= first_non_image <= end"
        if meta.flag < 2:
            raise DataFormatError(self.path_rec, expected, got=f"flag {meta.flag}")
        first, end = (float(v) for v in meta.label[:2])
        if not (np.isfinite(first) and np.isfinite(end) and first == int(first) and end == int(end)):
            raise DataFormatError(self.path_rec, expected, got=f"[{first}, {end}]")
        first, end = int(first), int(end)
        if not 1 <= first <= end:
            raise DataFormatError(self.path_rec, expected, got=f"[{first}, {end}]")
        if first - 1 > len(self._index):
            raise DataFormatError(
                self.path_idx,
                f"a line for every image key 1..{first - 1} (record 0 says first_non_image = {first})",
                got=f"{len(self._index)} lines",
            )
        missing = next((k for k in range(1, first) if k not in self._index), None)
        if missing is not None:
            raise DataFormatError(
                self.path_idx,
                f"a line for every image key 1..{first - 1} (record 0 says first_non_image = {first})",
                got=f"no line for key {missing}",
            )
        return first, end

    @property
    def image_keys(self) -> range:
        return range(1, self.meta[0])

    @property
    def num_identities(self) -> int:
        return self.meta[1] - self.meta[0]

    def __len__(self) -> int:
        return self.meta[0] - 1

    def keys(self) -> list[int]:
        """Every key the ``.idx`` lists, in file order."""
        return list(self._index)

    # ------------------------------------------------------------------ reading
    def _read_at(self, offset: int, size: int) -> bytes:
        with self._lock:
            if self._handle is None:
                self._handle = open(self.path_rec, "rb")
            self._handle.seek(offset)
            return self._handle.read(size)

    def _raw(self, key: int) -> bytes:
        if key not in self._index:
            raise KeyError(f"{self.path_idx} has no record key {key}")
        offset = self._index[key]
        parts: list[bytes] = []
        position = offset
        while True:
            where = f"record key {key} (starting at byte {offset}, idx line {self._line(key)})"
            if position + _CHUNK.size > self._size:
                raise DataFormatError(
                    self.path_rec,
                    f"{where}: a chunk header at byte {position}",
                    got=f"end of file at byte {self._size} (truncated)",
                )
            magic, lrec = _CHUNK.unpack(self._read_at(position, _CHUNK.size))
            if magic != MAGIC:
                raise DataFormatError(
                    self.path_rec,
                    f"{where}: the RecordIO magic {_hex(MAGIC)} at byte {position}",
                    got=_hex(magic),
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            first = not parts
            if (first and cflag not in (0, 1)) or (not first and cflag not in (2, 3)):
                wanted = "0 (whole) or 1 (first part)" if first else "2 (middle) or 3 (last part)"
                raise DataFormatError(
                    self.path_rec, f"{where}: continuation flag {wanted} at byte {position}", got=str(cflag)
                )
            start = position + _CHUNK.size
            if start + length > self._size:
                raise DataFormatError(
                    self.path_rec,
                    f"{where}: {length} payload bytes from byte {start}",
                    got=f"end of file at byte {self._size} (truncated)",
                )
            parts.append(self._read_at(start, length))
            position = start + ((length + 3) & ~3)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)

    def read_record(self, key: int) -> Record:
        """Record ``key`` unpacked (header, labels, payload); see :class:`Record`."""
        data = self._raw(key)
        where = f"record key {key} (idx line {self._line(key)})"
        if len(data) < HEADER.size:
            raise DataFormatError(
                self.path_rec,
                f"{where}: a {HEADER.size}-byte header (flag, label, id, id2)",
                got=f"{len(data)} bytes",
            )
        flag, label, id_, id2 = HEADER.unpack_from(data)
        rest = data[HEADER.size :]
        if flag > 0:
            if flag > MAX_LABELS or 4 * flag > len(rest):
                raise DataFormatError(
                    self.path_rec, f"{where}: {flag} float32 labels after the header (flag = {flag})",
                    got=f"{len(rest)} bytes",
                )  # fmt: skip
            labels = np.frombuffer(rest, np.float32, flag).copy()
            rest = rest[4 * flag :]
        else:
            labels = np.array([label], np.float32)
        return Record(flag=int(flag), label=labels, id=int(id_), id2=int(id2), payload=bytes(rest))

    def read(self, key: int) -> tuple[int, bytes]:
        """``(class, encoded image)`` of image record ``key``: the class is its (first) label, which
        must be a non-negative integer."""
        record = self.read_record(key)
        value = float(record.label[0])
        if not (np.isfinite(value) and value >= 0 and value == int(value) and value < 2**31):
            raise DataFormatError(
                self.path_rec,
                f"record key {key} (idx line {self._line(key)}): a class label (a non-negative integer float)",
                got=repr(value),
            )
        if not record.payload:
            raise DataFormatError(
                self.path_rec,
                f"record key {key} (idx line {self._line(key)}): encoded image bytes",
                got="0 bytes",
            )
        return int(value), record.payload

    def __iter__(self):
        for key in self.image_keys:
            yield self.read(key)

    def __del__(self):
        handle = self.__dict__.get("_handle")
        if handle is not None:
            handle.close()


# ---------------------------------------------------------------------------------- writing


def pack_record(flag: int, label, id_: int, id2: int, payload: bytes) -> bytes:
    """A record's payload as mxnet's ``recordio.pack``: the header, then ``flag`` float32 labels (for a
    list label; the header label is then 0), then ``payload``."""
    if isinstance(label, (list, tuple, np.ndarray)):
        labels = np.asarray(label, np.float32).reshape(-1)
        return HEADER.pack(labels.size, 0.0, id_, id2) + labels.tobytes() + payload
    return HEADER.pack(flag, float(label), id_, id2) + payload


def chunk_record(data: bytes) -> bytes:
    """The bytes dmlc's ``RecordIOWriter`` writes for one record: split wherever the magic word sits
    4-byte aligned in ``data`` (the word itself is dropped), each chunk with magic + lrec and zero
    padding to 4 bytes."""
    out = bytearray()
    start = 0
    for i in range(0, len(data) - len(data) % 4, 4):
        if data[i : i + 4] == _MAGIC_BYTES:
            out += _CHUNK.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (i - start)) + data[start:i]
            start = i + 4
    length = len(data) - start
    out += _CHUNK.pack(MAGIC, ((3 if start else 0) << 29) | length) + data[start:]
    out += b"\x00" * (-length % 4)
    return bytes(out)


def write_recordio(path_rec, path_idx, items) -> tuple[Path, Path]:
    """Write ``items`` (``(class, encoded image bytes)``, grouped by class) as an InsightFace
    ``train.rec`` / ``train.idx`` pair, the layout InsightFace's ``face2rec`` produces:

    record 0 meta ``[first_non_image, end]``; image keys ``1..n`` (flag 0, float label = class,
    id = key); then one identity record per class, in order of appearance, labels ``[first key, end
    key)``. Both files are written atomically. A class that appears in two separate runs is a
    ``ValueError`` (identity records need contiguous keys).
    """
    items = [(int(label), bytes(data)) for label, data in items]
    runs: list[tuple[int, int, int]] = []  # (class, first key, end key)
    for key, (label, _) in enumerate(items, start=1):
        if label < 0:
            raise ValueError(f"class labels must be non-negative, got {label}")
        if runs and runs[-1][0] == label:
            runs[-1] = (label, runs[-1][1], key + 1)
        else:
            if any(run[0] == label for run in runs):
                raise ValueError(f"items must be grouped by class; class {label} appears in two runs")
            runs.append((label, key, key + 1))
    first_non_image = len(items) + 1
    end = first_non_image + len(runs)
    records = [pack_record(0, [first_non_image, end], 0, 0, b"")]
    records += [
        pack_record(0, float(label), key, 0, data) for key, (label, data) in enumerate(items, start=1)
    ]
    records += [pack_record(0, [lo, hi], first_non_image + j, 0, b"") for j, (_, lo, hi) in enumerate(runs)]
    body = bytearray()
    lines = []
    for key, record in enumerate(records):
        lines.append(f"{key}\t{len(body)}\n")
        body += chunk_record(record)
    with atomic_path(path_rec) as tmp:
        Path(tmp).write_bytes(bytes(body))
    with atomic_path(path_idx) as tmp:
        Path(tmp).write_text("".join(lines), encoding="ascii")
    return Path(path_rec), Path(path_idx)


__all__ = ["HEADER", "MAGIC", "Record", "RecordIOReader", "chunk_record", "pack_record", "read_idx",
           "write_recordio"]  # fmt: skip
