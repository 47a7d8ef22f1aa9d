"""Fixture writers shared by the reader tests: files in the real on-disk formats (300W ``.pts``,
WFLW annotation lines, COFW MATLAB v5 and v7.3 ``.mat``)."""

from __future__ import annotations

import h5py
import numpy as np
import scipy.io


def random_image(h, w, seed, channels=3):
    """A random ``uint8`` image, ``H x W x channels`` (``H x W`` when ``channels`` is 0)."""
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def pts_text(points_file_convention, n_points=None):
    """A 300W ``.pts`` file's text for points already in the file's (1-based) convention."""
    n = len(points_file_convention) if n_points is None else n_points
    body = "".join(f"{x} {y}\n" for x, y in points_file_convention)
    return f"version: 1\nn_points: {n}\n{{\n{body}}}\n"


def write_cofw_v5(path, images, phis, boxes, names=("IsTr", "phisTr", "bboxesTr")):
    """A MATLAB v5 COFW file (scipy): an N x 1 cell of images, ``phis`` N x 87, ``boxes`` N x 4."""
    cell = np.empty((len(images), 1), dtype=object)
    for i, image in enumerate(images):
        cell[i, 0] = image
    scipy.io.savemat(str(path), {names[0]: cell, names[1]: phis, names[2]: boxes})


def write_cofw_v73(path, images, phis, boxes, names=("IsTr", "phisTr", "bboxesTr")):
    """What MATLAB ``save -v7.3`` produces: HDF5 with a 512-byte user block, arrays transposed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs_group = f.create_group("#refs#")
        refs = []
        for i, image in enumerate(images):
            dset = refs_group.create_dataset(f"r{i}", data=image.T)  # (3, W, H) or (W, H)
            dset.attrs["MATLAB_class"] = np.bytes_("uint8")
            refs.append(dset.ref)
        cell = f.create_dataset(names[0], (1, len(images)), dtype=h5py.ref_dtype)  # N x 1 cell
        cell[0, :] = refs
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        f.create_dataset(names[1], data=phis.T)  # (87, N)
        f.create_dataset(names[2], data=boxes.T)  # (4, N)
    with open(path, "r+b") as handle:
        handle.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        )


def wflw_line(coords, box, attrs, rel):
    """One WFLW annotation line: 196 coordinates, 4 box values, 6 flags, the image path."""
    return " ".join([*(f"{v:.6f}" for v in coords.reshape(-1)), *map(str, box), *map(str, attrs), rel])
