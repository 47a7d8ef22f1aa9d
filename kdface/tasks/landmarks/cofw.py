"""COFW (Caltech Occluded Faces in the Wild): 29 points, images embedded in MATLAB ``.mat`` files.

Original release (as used by RCPR, HRNet, ...)::

    <root>/COFW_train_color.mat   IsTr (cell of images), phisTr (N x 87), bboxesTr (N x 4)
    <root>/COFW_test_color.mat    IsT,                   phisT,           bboxesT

``phis`` rows are 29 x, then 29 y, then 29 occlusion flags (1 = occluded); ``bboxes`` rows are
``(x, y, w, h)``. Everything is MATLAB 1-based pixel centres, so ``x_kdface = x_file - 0.5``.

The colour files are MATLAB v7.3, i.e. HDF5: h5py shows every array transposed relative to MATLAB
(an ``N x 87`` matrix reads as ``(87, N)``, an ``H x W x 3`` image as ``(3, W, H)``) and a cell array
is a dataset of object references into ``#refs#``. Older v5 files are read with ``scipy.io.loadmat``.
Both are handled here; images come out as RGB ``uint8`` ``H x W x 3`` (grayscale is replicated).

Pre-extracted folder form (what the KD-Loss authors' code reads)::

    <root>/<name>.png  <root>/an_<name>.txt (29 x then 29 y)  <root>/bb_<name>.txt (x y w h)

with the same 1-based convention as the ``.mat`` it was extracted from.
"""

from __future__ import annotations

import atexit
from pathlib import Path

import numpy as np

from kdface.data.validation import as_policy
from kdface.tasks.landmarks.points import DataFormatError, LandmarkSample

NUM_POINTS = 29
PHIS_COLUMNS = 3 * NUM_POINTS  # 29 x, 29 y, 29 occlusion flags
# No image is this large; beyond it a number is garbage (and would overflow float32).
COORDINATE_LIMIT = 1e6
# .mat coordinates are MATLAB-style 1-based pixel centres; kdface pixels have the origin at the corner.
MAT_OFFSET = 0.5

SPLIT_FILES = {
    "train": ("COFW_train_color.mat", "COFW_train.mat"),
    "test": ("COFW_test_color.mat", "COFW_test.mat"),
}
SPLIT_VARIABLES = {  # images, landmarks, boxes
    "train": ("IsTr", "phisTr", "bboxesTr"),
    "test": ("IsT", "phisT", "bboxesT"),
}
FOLDER_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def find_mat(root, split: str) -> Path:
    """The ``.mat`` file holding ``split`` (``train`` or ``test``) in ``root``."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown COFW split {split!r}; expected one of {sorted(SPLIT_FILES)}")
    root = Path(root)
    for name in SPLIT_FILES[split]:
        if (root / name).is_file():
            return root / name
    raise DataFormatError(root, f"a COFW file named one of {SPLIT_FILES[split]} for split {split!r}")


# --------------------------------------------------------------------------- .mat access


# Address-space cap of the child that reads v5 files: far above any real COFW file (< 1 GiB).
V5_READER_MEMORY_LIMIT = 6 * 2**30
_v5_pool = None


def _limit_memory(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _loadmat(path: str) -> dict:
    import scipy.io

    return scipy.io.loadmat(path)


def _shutdown_v5_pool() -> None:
    if _v5_pool is not None:
        _v5_pool.shutdown(wait=True)


def _loadmat_isolated(path: Path) -> dict:
    """``scipy.io.loadmat`` in a child process with capped memory: a hostile v5 file can crash scipy's
    C reader or make it allocate gigabytes (both found by tests/test_fuzz.py); the child dies, not the
    training process. The child is kept for the next file and replaced after a crash."""
    import concurrent.futures
    import multiprocessing

    global _v5_pool
    if _v5_pool is None:
        atexit.register(_shutdown_v5_pool)
        context = multiprocessing.get_context("spawn")  # no fork: TensorFlow's threads make it unsafe
        _v5_pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_limit_memory, initargs=(V5_READER_MEMORY_LIMIT,)
        )
    try:
        return _v5_pool.submit(_loadmat, str(path)).result()
    except concurrent.futures.process.BrokenProcessPool:
        _v5_pool.shutdown(wait=False)
        _v5_pool = None
        raise DataFormatError(path, "a MATLAB v5 .mat file", got="the MATLAB reader crashed on it") from None
    except MemoryError:
        raise DataFormatError(
            path, "a MATLAB v5 .mat file of sane sizes",
            got=f"reading it needs more than {V5_READER_MEMORY_LIMIT / 2**30:.0f} GiB",
        ) from None  # fmt: skip


class _MatV5:
    """MATLAB v5 (and older) files via scipy (in a child process); arrays come in MATLAB orientation."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._data = _loadmat_isolated(path)
        except DataFormatError:
            raise
        except Exception as exc:  # scipy raises assorted errors (MatReadError, IndexError, ...) on junk
            raise DataFormatError(path, "a MATLAB .mat file (v5 or v7.3)", got=str(exc)[:120]) from None

    def __contains__(self, name):
        return name in self._data

    def matrix(self, name) -> np.ndarray:
        return np.asarray(self._data[name])

    def cell(self, name) -> list:
        cell = self._data[name]
        if cell.dtype != object:
            raise DataFormatError(
                self.path, f"variable {name!r} to be a cell array of images", got=str(cell.dtype)
            )
        return list(cell.reshape(-1, order="F"))

    def image(self, item) -> np.ndarray:
        return np.asarray(item)

    def close(self):
        pass


class _MatV73:
    """MATLAB v7.3 (HDF5) files via h5py; arrays are transposed back to MATLAB orientation."""

    def __init__(self, path: Path):
        import h5py

        self.path = path
        self._file = h5py.File(path, "r")
        self._h5py = h5py

    def __contains__(self, name):
        return name in self._file

    def matrix(self, name) -> np.ndarray:
        node = self._file[name]
        if not isinstance(node, self._h5py.Dataset):
            raise DataFormatError(self.path, f"variable {name!r} to be a numeric matrix", got="an HDF5 group")
        return np.asarray(node[()]).T

    def cell(self, name) -> list:
        node = self._file[name]
        if not isinstance(node, self._h5py.Dataset) or node.dtype != self._h5py.ref_dtype:
            got = "an HDF5 group" if not isinstance(node, self._h5py.Dataset) else str(node.dtype)
            raise DataFormatError(
                self.path, f"variable {name!r} to be a cell array (dataset of object references)", got=got
            )
        # Stored transposed: MATLAB's column-major linear order is HDF5's row-major order.
        return list(np.asarray(node[()]).reshape(-1))

    def image(self, ref) -> np.ndarray:
        if not ref:
            return np.zeros((0,), np.uint8)
        return np.asarray(self._file[ref][()]).T

    def close(self):
        self._file.close()


def _open_mat(path: Path):
    import h5py

    try:
        return _MatV73(path) if h5py.is_hdf5(path) else _MatV5(path)
    except _LIBRARY_ERRORS as exc:
        raise DataFormatError(path, "a readable MATLAB .mat file (v5 or v7.3)", got=str(exc)[:120]) from None


# What h5py/scipy raise on damaged files (beyond our own DataFormatError).
_LIBRARY_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError)


def _matrix(mat, name: str, columns: int, what: str) -> np.ndarray:
    """A numeric ``N x columns`` variable (either orientation accepted), as float64."""
    if name not in mat:
        raise DataFormatError(mat.path, f"a variable {name!r} ({what})")
    arr = mat.matrix(name)
    expected = f"variable {name!r} of shape N x {columns} ({what})"
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataFormatError(mat.path, expected, got=f"shape {arr.shape}, dtype {arr.dtype}")
    if arr.shape[1] != columns:
        if arr.shape[0] != columns:
            raise DataFormatError(mat.path, expected, got=f"shape {arr.shape}")
        arr = arr.T
    return arr.astype(np.float64)


def _to_rgb(image: np.ndarray, mat, name: str, index: int) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape) == 0 or image.dtype != np.uint8:
        raise DataFormatError(
            mat.path,
            f"element {index} of {name!r} to be a uint8 H x W x 3 or H x W image "
            "(the line number is the 0-based sample index)",
            line=index,
            got=f"shape {image.shape}, dtype {image.dtype}",
        )
    return np.ascontiguousarray(image)


def read_mat(path, images_var: str, phis_var: str, boxes_var: str, key_prefix: str, bad=None):
    """Yield :class:`LandmarkSample` for every face of one COFW ``.mat`` file.

    The file is validated (shapes, counts, finite values, 0/1 occlusion flags) before the first
    sample is yielded; images are decoded one at a time.
    """
    path = Path(path)
    mat = _open_mat(path)
    try:
        yield from _read_mat_samples(mat, path, images_var, phis_var, boxes_var, key_prefix, as_policy(bad))
    except DataFormatError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise DataFormatError(path, "a readable MATLAB .mat file (v5 or v7.3)", got=str(exc)[:120]) from None
    finally:
        mat.close()


def _read_mat_samples(mat, path, images_var, phis_var, boxes_var, key_prefix, bad):
    phis = _matrix(mat, phis_var, PHIS_COLUMNS, "29 x, 29 y, 29 occlusion flags per face")
    boxes = _matrix(mat, boxes_var, 4, "x, y, w, h per face")
    if images_var not in mat:
        raise DataFormatError(path, f"a variable {images_var!r} (cell array of images)")
    images = mat.cell(images_var)
    counts = {images_var: len(images), phis_var: len(phis), boxes_var: len(boxes)}
    if len(set(counts.values())) != 1:
        raise DataFormatError(
            path,
            f"as many images in {images_var!r} as rows in {phis_var!r} and {boxes_var!r}",
            got=", ".join(f"{k}: {v}" for k, v in counts.items()),
        )

    def reject(bad_rows, expected, values):
        for i in np.flatnonzero(bad_rows):
            rejected.add(int(i))
            bad.handle(DataFormatError(path, f"{expected} (the line number is the 0-based sample index)",
                                       line=int(i), got=np.array2string(values[i], threshold=8, edgeitems=3)))  # fmt: skip

    rejected = set()
    for name, arr in ((phis_var, phis), (boxes_var, boxes)):
        sane = np.isfinite(arr) & (np.abs(arr) <= COORDINATE_LIMIT)
        reject(
            ~np.all(sane, axis=1),
            f"finite values within +-{COORDINATE_LIMIT:.0e} in every row of {name!r}",
            arr,
        )
    flags = phis[:, 2 * NUM_POINTS :]
    reject(~np.all((flags == 0) | (flags == 1), axis=1), f"occlusion flags 0/1 in columns 59-87 of {phis_var!r}",
           flags)  # fmt: skip

    for i, (item, row, box) in enumerate(zip(images, phis, boxes, strict=True)):
        if i in rejected:
            continue
        try:
            image = _to_rgb(mat.image(item), mat, images_var, i)
        except DataFormatError as err:
            bad.handle(err)
            continue
        landmarks = np.stack([row[:NUM_POINTS], row[NUM_POINTS : 2 * NUM_POINTS]], axis=1) - MAT_OFFSET
        x, y, w, h = (float(v) for v in box)
        yield LandmarkSample(
            key=f"{key_prefix}_{i:04d}",
            landmarks=landmarks.astype(np.float32),
            image=image,
            box=(x - MAT_OFFSET, y - MAT_OFFSET, x - MAT_OFFSET + w, y - MAT_OFFSET + h),
            attributes={"occluded": flags[i].astype(bool)},
            origin=f"{path}:{i}",
        )


def read_split(root, split: str, bad=None):
    """Yield :class:`LandmarkSample` (``image`` set, no ``image_path``) for COFW ``train`` or ``test``.

    Keys are ``f"{split}_{i:04d}"``; ``attributes["occluded"]`` is a ``(29,)`` bool array. ``bad`` is
    the :class:`~kdface.data.validation.BadSamples` policy for bad rows and images (default: raise).
    """
    path = find_mat(root, split)
    yield from read_mat(path, *SPLIT_VARIABLES[split], key_prefix=split, bad=bad)


# --------------------------------------------------------------------------- folder form


def _read_numbers(path: Path, count: int, what: str) -> np.ndarray:
    """``count`` whitespace/tab-separated numbers from a small text file (any line layout)."""
    values = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, text in enumerate(lines, start=1):
        for field in text.replace(",", " ").split():
            try:
                value = float(field)
            except ValueError:
                raise DataFormatError(path, f"{count} numbers ({what})", line=number, got=text[:80]) from None
            if not np.isfinite(value) or abs(value) > COORDINATE_LIMIT:
                raise DataFormatError(path, f"finite numbers within +-{COORDINATE_LIMIT:.0e} ({what})", line=number,
                                      got=text[:80])  # fmt: skip
            values.append(value)
        if len(values) > count:
            raise DataFormatError(path, f"{count} numbers ({what})", line=number, got=f"{len(values)} so far")
    if len(values) != count:
        raise DataFormatError(
            path, f"{count} numbers ({what})", line=len(lines) or None, got=f"{len(values)}"
        )
    return np.asarray(values, np.float64)


def read_folder(root, bad=None):
    """Yield :class:`LandmarkSample` (``image_path`` set) for the pre-extracted folder form.

    Every ``an_<name>.txt`` needs ``<name>.png`` (or another image extension) beside it; the
    ``bb_<name>.txt`` box is optional. Keys are ``<name>``. ``bad``: the bad-sample policy.
    """
    root = Path(root)
    bad = as_policy(bad)
    annotations = sorted(root.glob("an_*.txt"))
    if not annotations:
        raise DataFormatError(root, "COFW folder files an_<name>.txt, bb_<name>.txt, <name>.png")
    for an_path in annotations:
        name = an_path.stem[len("an_") :]
        try:
            values = _read_numbers(an_path, 2 * NUM_POINTS, "29 x values then 29 y values")
            image_path = next(
                (
                    root / f"{name}{ext}"
                    for ext in FOLDER_IMAGE_EXTENSIONS
                    if (root / f"{name}{ext}").is_file()
                ),
                None,
            )
            if image_path is None:
                raise DataFormatError(an_path, f"an image {name}.png beside it")
            box = None
            bb_path = root / f"bb_{name}.txt"
            if bb_path.is_file():
                x, y, w, h = (float(v) for v in _read_numbers(bb_path, 4, "x y w h"))
                box = (x - MAT_OFFSET, y - MAT_OFFSET, x - MAT_OFFSET + w, y - MAT_OFFSET + h)
        except DataFormatError as err:
            bad.handle(err)
            continue
        landmarks = np.stack([values[:NUM_POINTS], values[NUM_POINTS:]], axis=1) - MAT_OFFSET
        yield LandmarkSample(
            key=name,
            landmarks=landmarks.astype(np.float32),
            image_path=str(image_path),
            box=box,
            origin=str(an_path),
        )
