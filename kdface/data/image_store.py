"""A file-backed store of encoded images with random access by index, read inside ``tf.data`` by
native ops: what lets a training split be sampled by index without holding it in memory.

Layout of a store folder (written once, then only read)::

    images-000000.bin ...   encoded images concatenated, up to PACK_BYTES a file (an image larger
                            than that gets a file of its own)
    index.npy               int64 (N, 3): pack number, byte offset in the pack, byte length;
                            written last, so a folder with an index is a complete store

Image ``i`` is ``tf.strings.substr(tf.io.read_file(pack), offset, length)``: two native ops, no
``py_function``, any order, any thread. Why packs and not one file or one file per image: TF has no
native op that reads a byte range of a file (``FixedLengthRecordDataset`` with ``header_bytes`` set
to the offset reads through the header, ~200 reads/s in a 170 MB file), so each read takes a whole
file; packs of 64 KiB keep that read small (~10 µs from the page cache) while 100,000 images of 2 KB
make ~3,000 files instead of 100,000 (each a 4 KiB block at least, and an inode).

A store is keyed by the content it holds (:class:`StoreKey`: the images in order), so a cache folder
of stores serves any split whose images are byte-identical and never a stale one. Every file is
written atomically (:mod:`kdface.io.atomic`), the index last after the packs are on disk; opening
checks every pack's size, so a folder left by a killed writer is simply written again (its one
unfinished pack stays behind as a hidden ``.images-*.tmp-*`` file, never read). Two processes
writing the same store at once write the same bytes, file by file. A cache folder of stores can be
deleted at any time; the next run writes what it needs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from kdface.io.atomic import atomic_path, write_bytes

PACK_BYTES = 64 * 2**10
LOAD_BATCH = 256  # examples read at once while loading (their images too: a bound, whatever the split size)
INDEX_FILE = "index.npy"
_FORMAT = b"kdface image store v1\0"


def pack_name(number: int) -> str:
    return f"images-{number:06d}.bin"


class StoreKey:
    """The content key of a sequence of encoded images: SHA-256 of their lengths and bytes in order."""

    def __init__(self):
        self._hash = hashlib.sha256(_FORMAT)
        self.count = 0

    def update(self, image: bytes) -> None:
        self._hash.update(len(image).to_bytes(8, "little"))
        self._hash.update(image)
        self.count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class ImageStore:
    """An opened store: ``reader()`` gives the TF function ``index -> encoded image``."""

    def __init__(self, folder, index: np.ndarray):
        self.folder = Path(folder).resolve()
        self.index = index  # (N, 3) int64: pack, offset, length

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> np.ndarray:
        return self.index[:, 2]

    @property
    def num_packs(self) -> int:
        return int(self.index[:, 0].max()) + 1 if len(self.index) else 0

    def pack_paths(self) -> list[Path]:
        return [self.folder / pack_name(p) for p in range(self.num_packs)]

    def reader(self) -> Callable:
        """``read(index)``: the encoded image at ``index`` (an int tensor) as a scalar string tensor.

        Only the pack paths and the index are held (as tensors); the bytes are read on each call.
        """
        import tensorflow as tf

        paths = tf.constant([str(p) for p in self.pack_paths()], tf.string)
        index = tf.constant(self.index, tf.int64)

        def read(i):
            entry = tf.gather(index, i)
            return tf.strings.substr(tf.io.read_file(tf.gather(paths, entry[0])), entry[1], entry[2])

        return read

    def read_numpy(self, i: int) -> bytes:
        """Image ``i`` read in Python (for checks and tools)."""
        pack, offset, length = (int(v) for v in self.index[i])
        with open(self.folder / pack_name(pack), "rb") as f:
            f.seek(offset)
            return f.read(length)

    @classmethod
    def open(cls, folder, lengths: np.ndarray | None = None) -> ImageStore | None:
        """The complete store in ``folder``, or None if there is none (or it is incomplete, or its image
        lengths differ from ``lengths``)."""
        folder = Path(folder)
        try:
            index = np.load(folder / INDEX_FILE, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if index.ndim != 2 or index.shape[1] != 3 or index.dtype != np.int64:
            return None
        if lengths is not None and not np.array_equal(index[:, 2], np.asarray(lengths, np.int64)):
            return None
        store = cls(folder, index)
        sizes = np.zeros(store.num_packs, np.int64)
        np.maximum.at(sizes, index[:, 0], index[:, 1] + index[:, 2])
        for path, size in zip(store.pack_paths(), sizes, strict=True):
            try:
                if path.stat().st_size != size:
                    return None
            except OSError:
                return None
        return store

    @classmethod
    def write(cls, folder, images: Iterable[bytes], expected_key: str | None = None) -> ImageStore:
        """Write ``images`` as a store in ``folder`` and return it. With ``expected_key``, raise
        ``ValueError`` (and write no index) if the images written do not have that content key."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        key, entries, pack, buffer, written = StoreKey(), [], 0, bytearray(), []

        def flush():
            # fsync once for all packs below: one per pack as it is written is far slower
            written.append(write_bytes(folder / pack_name(pack), bytes(buffer), fsync=False))

        for image in images:
            image = bytes(image)
            key.update(image)
            if buffer and len(buffer) + len(image) > PACK_BYTES:
                flush()
                pack, buffer = pack + 1, bytearray()
            entries.append((pack, len(buffer), len(image)))
            buffer += image
        if buffer:
            flush()
        if expected_key is not None and key.hexdigest() != expected_key:
            raise ValueError(
                f"the images written to {folder} are not the ones keyed {expected_key[:12]} (a source that "
                "yields different bytes on each pass?)"
            )
        for path in written:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        index = np.array(entries, np.int64).reshape(-1, 3)
        with atomic_path(folder / INDEX_FILE) as tmp:
            np.save(tmp, index, allow_pickle=False)
        return cls(folder, index)


def cached_store(
    cache_dir, key: str, lengths, images: Callable[[], Iterable[bytes]]
) -> tuple[ImageStore, bool]:
    """The store of content ``key`` in ``cache_dir`` (``<cache_dir>/<key[:24]>``), written from
    ``images()`` if it is not there yet; returns ``(store, written)``."""
    folder = Path(cache_dir) / key[:24]
    store = ImageStore.open(folder, lengths)
    if store is not None:
        return store, False
    return ImageStore.write(folder, images(), expected_key=key), True


def store_source(source, cache_dir, on_batch: Callable[[dict], None]) -> tuple[ImageStore, bool] | None:
    """The store of a ``tf.data`` source's encoded images (``example["image"]``) in ``cache_dir``.

    A first pass reads ``source`` in batches of :data:`LOAD_BATCH` examples (numpy; far fewer Python
    objects than one by one): each batch's images go into the content key (:class:`StoreKey`), then the
    batch to ``on_batch``, which keeps the caller's other fields (and may raise to stop). The store is
    opened, or written from a second pass if it is not there yet, so the images are never held.
    Returns ``(store, written)`` as :func:`cached_store`, or None if ``source`` is empty (nothing
    written).
    """
    key, lengths = StoreKey(), []
    for batch in source.batch(LOAD_BATCH).as_numpy_iterator():
        for image in batch["image"]:
            key.update(image)
        lengths.append(np.fromiter(map(len, batch["image"]), np.int64, len(batch["image"])))
        on_batch(batch)
    if not lengths:
        return None

    def images():
        for batch in source.map(lambda example: example["image"]).batch(LOAD_BATCH).as_numpy_iterator():
            yield from batch

    return cached_store(cache_dir, key.hexdigest(), np.concatenate(lengths), images)
