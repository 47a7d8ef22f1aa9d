"""Atomic writes: every file kdface writes appears whole or not at all.

A writer gets a temporary path in the destination folder (same file system, so ``os.replace`` is
atomic on POSIX and Windows), writes there, and the file is renamed over the destination only after
the writer returned without error. A kill at any moment leaves either the old file or the new one,
plus at worst a hidden ``.<name>.tmp*`` file that nothing reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

TMP_MARKER = ".tmp-"


def _fsync_file(path: Path) -> None:
    # Without fsync a power loss can leave the renamed file empty on some file systems.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, *, fsync: bool = True):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it.

    The temporary name keeps ``path``'s suffix (``.keras``, ``.png``, ``.npz``...) because several
    libraries choose the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-1:])
    tmp = path.with_name(f".{path.stem}{TMP_MARKER}{uuid.uuid4().hex[:12]}{suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer did not create {tmp} (destination {path})")
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path, data: bytes, *, fsync: bool = True) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path, obj, **kwargs) -> Path:
    kwargs.setdefault("indent", 2)
    kwargs.setdefault("default", str)
    return write_text(path, json.dumps(obj, **kwargs) + "\n")


def remove_stale_temporaries(folder) -> int:
    """Delete ``.*.tmp-*`` files a killed writer left in ``folder``; returns how many."""
    removed = 0
    for tmp in Path(folder).glob(f".*{TMP_MARKER}*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def write_image(path, rgb) -> Path:
    """Write an RGB ``uint8`` image (format from the suffix) atomically."""
    import cv2
    import numpy as np

    image = np.asarray(rgb)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(Path(path).suffix or ".png", image)
    if not ok:
        raise OSError(f"could not encode image {path}")
    return write_bytes(path, encoded.tobytes())
