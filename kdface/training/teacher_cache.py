"""Frozen teachers' outputs on a training split, computed once and kept on disk (``--cache-teachers``).

A method whose teachers are frozen (KD-Loss; F-SKD next) can distil from their stored outputs instead
of running them at every step. That is only right when the student sees exactly the view the
teachers saw: **no augmentation** (the methods refuse caching with it; distilling from a view the
student does not see hurts, big_vision's finding). Caching stays opt-in.

The cache is a file ``teachers-<key>.npz`` in a folder (the run directory's ``teacher_cache/``, or
``--teacher-cache-dir`` to share it between runs) holding one array per teacher, in the split's
order, and the full key. The key is the SHA-256 of

* each teacher's **model file** (its SHA-256: a retrained or replaced teacher gets a new key),
* the **data**: every element of the split as read (encoded image bytes, annotations, keys), in order,
  so a changed, re-prepared or differently filtered (``--on-bad-sample``) split gets a new key,
* the **preprocessing** the caller names (image size, crop, ``augment: False``, ...),
* the cache format version.

A file is reused only when its stored key equals the computed one, else the outputs are computed
again and the file written (atomically); nothing is ever served for another key.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from kdface.io.atomic import atomic_path

CACHE_VERSION = 1
FOLDER = "teacher_cache"  # inside the run directory, unless --teacher-cache-dir names another


def file_sha256(path, chunk: int = 2**20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(dataset: tf.data.Dataset) -> str:
    """SHA-256 of every element of ``dataset`` (each leaf's dtype, shape and bytes), in order."""
    digest = hashlib.sha256()
    for element in dataset.as_numpy_iterator():
        for leaf in tf.nest.flatten(element):
            array = np.asarray(leaf)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(teacher_files: dict, data_fingerprint: str, preprocessing: dict) -> tuple[str, dict]:
    """``(key, description)``: the key is the SHA-256 of the description (see the module doc)."""
    description = {
        "version": CACHE_VERSION,
        "teachers": {name: file_sha256(path) for name, path in sorted(teacher_files.items())},
        "data": data_fingerprint,
        "preprocessing": preprocessing,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), description


def cached_teacher_outputs(
    teachers: dict,
    views: Callable[[object], tf.data.Dataset],
    *,
    key: str,
    description: dict,
    folder,
    write: bool = True,
) -> dict[str, np.ndarray]:
    """Every teacher's outputs on the split, read from ``folder`` if cached under ``key``, else computed
    (``teacher.predict(views(teacher))``: the batched views that teacher sees) and, if ``write``,
    stored there. Returns ``{name: array}`` in the split's order."""
    if {"key", "description"} & set(teachers):
        raise ValueError("teacher names 'key' and 'description' are reserved by the cache file")
    path = Path(folder) / f"teachers-{key[:24]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) == key and all(name in stored.files for name in teachers):
                print(f"teacher outputs: reusing {path}")
                return {name: stored[name] for name in teachers}
    outputs = {
        name: np.asarray(teacher.predict(views(teacher), verbose=0)) for name, teacher in teachers.items()
    }
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, key=np.array(key), description=np.array(json.dumps(description, sort_keys=True)),
                 **outputs)  # fmt: skip
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        print(f"teacher outputs: computed and cached in {path}")
    return outputs
