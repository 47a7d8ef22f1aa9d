"""Recognition data by name: identity folders for training (prepared once as TFDS records, their images
then read from a file-backed store), and verification pair files for evaluation.

Training sets (:func:`identity_datasets`): ``synthface`` (SynthFaces' ``faceid`` identity folders,
generated on first use) and ``casia-webface`` (insightface's ``train.rec``/``train.idx``, or the
extracted ``image/`` + ``train.list`` layout, or plain ``<id>/<n>.jpg`` folders).

Verification sets (:data:`VERIFICATION_FILES`): insightface ``.bin`` pair files, looked up in
``--data-dir`` (``lfw``, ``agedb-30``, ``cfp-fp``) or written by the SynthFaces generator
(``synthface``: held-out identities only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kdface.data.image_store import store_source
from kdface.data.sources import (
    DEFAULT_SYNTHFACES_DIR,
    DEFAULT_TFDS_DIR,
    check_raw_dir,
    prepare_builder,
    read_split,
    split_records,
)
from kdface.errors import DataFormatError, MissingFileError, RunError, UnknownNameError
from kdface.registry import unknown_name_message
from kdface.tasks.recognition import builders

SYNTHFACES_PRESET = "faceid"  # enough identities and images per identity (kdface.data.synthfaces.config)
IDENTITY_BUILDERS = {
    "synthface": builders.KdfaceSynthfacesIdentities,
    "casia-webface": builders.KdfaceCasiaWebface,
}
# name -> (file name in --data-dir, pairs per fold: the originals' fold rule, spec §6.1)
VERIFICATION_FILES = {
    "lfw": ("lfw.bin", 600),
    "agedb-30": ("agedb_30.bin", 600),
    "cfp-fp": ("cfp_fp.bin", 700),
    "synthface": ("verification/synthface.bin", None),  # 10 equal folds
}


def identity_datasets() -> list[str]:
    return sorted(IDENTITY_BUILDERS)


def verification_datasets() -> list[str]:
    return sorted(VERIFICATION_FILES)


def synthfaces_dir(data_dir=None) -> Path:
    return Path(data_dir) if data_dir else DEFAULT_SYNTHFACES_DIR / SYNTHFACES_PRESET


def check_identity_inputs(name: str, data_dir=None, tfds_dir=None) -> None:
    """The dataset name and its raw folder (reading only, before a run directory is created)."""
    if name not in IDENTITY_BUILDERS:
        raise UnknownNameError(unknown_name_message("identity dataset", name, IDENTITY_BUILDERS))
    check_raw_dir(IDENTITY_BUILDERS[name], name, data_dir, tfds_dir)


@dataclasses.dataclass
class IdentitySplit:
    """The training identities: encoded images in a file-backed store (read by index), their labels
    ``0..num_classes-1`` and keys in memory, and the samples skipped while preparing."""

    store: object
    labels: np.ndarray
    keys: np.ndarray
    num_classes: int
    skipped: list

    def holdout(self, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """``(train indices, validation indices)``: ``fraction`` of each identity's images held out (at
        least one image stays in training), drawn from ``seed``."""
        n = len(self.labels)
        if not fraction:
            return np.arange(n), np.zeros(0, np.int64)
        rng = np.random.default_rng(seed)
        held = np.zeros(n, bool)
        for label in range(self.num_classes):
            members = np.flatnonzero(self.labels == label)
            take = min(int(round(fraction * len(members))), len(members) - 1)
            if take > 0:
                held[rng.choice(members, take, replace=False)] = True
        return np.flatnonzero(~held), np.flatnonzero(held)


def load_identity_split(name: str, data_dir=None, tfds_dir=DEFAULT_TFDS_DIR, on_bad_sample: str = "error",
                        synthfaces_preset: str = SYNTHFACES_PRESET) -> IdentitySplit:  # fmt: skip
    """The training identities of ``name`` (prepared on first use; images stored once for reading by
    index in ``tfds_dir/kdface-image-stores``)."""
    check_identity_inputs(name, data_dir, tfds_dir)
    builder, raw_dir, skipped = prepare_builder(IDENTITY_BUILDERS[name], f"identities-{name}", data_dir, tfds_dir,
                                                synthfaces_preset, on_bad_sample)  # fmt: skip
    skipped = split_records(skipped, ["train"], on_bad_sample)
    ds = read_split(builder, "train")
    labels, keys = [], []

    def keep(batch):
        labels.append(batch["label"].astype(np.int64))
        keys.append(batch["key"])

    loaded = store_source(ds, Path(tfds_dir) / "kdface-image-stores", keep)
    if loaded is None:
        raise RunError(f"{name}: the training split is empty")
    store, written = loaded
    if written:
        print(f"wrote the {name} training images ({len(store)}) to {store.folder} (once; read from there)")
    labels = np.concatenate(labels)
    num_classes = int(labels.max()) + 1
    present = np.unique(labels)
    if len(present) != num_classes:  # a class left empty (all its images bad): renumber densely
        labels = np.searchsorted(present, labels)
        num_classes = len(present)
    return IdentitySplit(
        store, labels.astype(np.int32), np.concatenate(keys).astype(object), num_classes, skipped
    )


@dataclasses.dataclass
class VerificationSet:
    """Pairs of decoded images: ``images`` ``(2P, S, S, 3)`` uint8, pair ``k`` = ``(2k, 2k+1)``,
    ``issame`` ``(P,)`` bool, ``folds`` ``(P,)`` int (the original's fold of each pair)."""

    name: str
    path: Path
    images: np.ndarray
    issame: np.ndarray
    folds: np.ndarray


def verification_path(name: str, data_dir=None) -> Path:
    if name not in VERIFICATION_FILES:
        raise UnknownNameError(unknown_name_message("verification set", name, VERIFICATION_FILES))
    file_name, _ = VERIFICATION_FILES[name]
    if name == "synthface":
        root = synthfaces_dir(data_dir)
        if not (root / file_name).is_file():
            from kdface.data.builders import ensure_synthfaces

            ensure_synthfaces(root, SYNTHFACES_PRESET)
        return root / file_name
    if data_dir is None:
        raise MissingFileError(f"--data-dir is required for {name!r}: the folder holding {file_name} (insightface's "
                               "faces_webface_112x112 / faces_emore archives ship it)")  # fmt: skip
    path = Path(data_dir)
    path = path if path.is_file() else path / file_name
    if not path.is_file():
        raise MissingFileError(f"{name}: {path} not found (expected insightface's {file_name})")
    return path


def load_verification(name: str, data_dir=None, image_size: int | None = None) -> VerificationSet:
    """A verification set's decoded pairs at ``image_size`` (area-resized when the file's differ)."""
    import cv2

    from kdface.metrics.verification import verification_folds
    from kdface.tasks.recognition.verification_bin import read_bin

    path = verification_path(name, data_dir)
    data = read_bin(path)
    images = []
    for i, encoded in enumerate(data.images):
        image = cv2.imdecode(np.frombuffer(bytes(encoded), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise DataFormatError(
                path, "encoded images (JPEG/PNG) in the pair list", got=f"undecodable image {i}"
            )
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image_size and image.shape[:2] != (image_size, image_size):
            image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
        images.append(image)
    issame = np.asarray(data.issame, bool)
    folds = verification_folds(len(issame), name)
    return VerificationSet(name, path, np.stack(images), issame, folds)
