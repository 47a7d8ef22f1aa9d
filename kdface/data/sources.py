"""From a dataset's raw folder to its prepared TFDS builder, once: the source layer every task's
loaders (``kdface.tasks.<task>.sources``) stand on.

Prepared TFRecords live under ``tfds_dir/<folder name>-<hash of the raw folder's path>`` with a
fingerprint of the raw files (names, sizes, mtimes); if the raw tree changes, the prepared copy is
rebuilt instead of silently serving stale data. The bad-sample policy is not part of the hash:
``error`` and ``skip`` share one prepared copy. Preparation always leaves bad samples out and lists
them (file, line, reason, split) in ``kdface_skipped.json`` beside the records; :func:`split_records`
then returns a split's list under ``skip``, and under ``error`` raises the
:class:`~kdface.errors.DataFormatError` of the split's first bad sample. So under ``error`` a bad
sample is reported after the whole preparation pass, not at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import tensorflow_datasets as tfds

from kdface.data.builders import SynthFacesBuilder
from kdface.data.validation import POLICIES, recorded_error
from kdface.io.atomic import write_json

DEFAULT_TFDS_DIR = Path("datasets/tfds")
DEFAULT_SYNTHFACES_DIR = Path("datasets/synthfaces")
_RAW_SUFFIXES = {".pts", ".txt", ".mat", ".json", ".jpg", ".jpeg", ".png", ".bmp"}


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in _RAW_SUFFIXES:
                stat = os.stat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def check_raw_dir(builder_cls, name: str, data_dir, tfds_dir=None) -> None:
    """The checks :func:`prepare_builder` makes of the raw folder (and ``tfds_dir``), reading only:
    a manual-download dataset needs ``--data-dir`` naming an existing folder; SynthFaces generates
    its folder, which must not be a file. Each failure is one line that says what the folder should
    hold (the builder's ``MANUAL_DOWNLOAD_INSTRUCTIONS``)."""
    from kdface.errors import ConfigError, MissingFileError
    from kdface.io.paths import check_can_create, require_folder

    if issubclass(builder_cls, SynthFacesBuilder):
        if data_dir:
            check_can_create(data_dir, "--data-dir")  # generated there if missing
    elif data_dir is None:
        raise ConfigError(
            f"--data-dir is required for {name!r}, which cannot be downloaded here: "
            f"{_one_line(builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS)} (README.md, 'Real datasets')"
        )
    else:
        expects = f"{name} expects: {_one_line(builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS)}"
        if not any(require_folder(data_dir, "--data-dir", hint=expects).iterdir()):
            raise MissingFileError(f"--data-dir {data_dir} is empty; {expects}")
    if tfds_dir is not None:
        check_can_create(tfds_dir, "--tfds-dir")


def prepare_builder(
    builder_cls,
    folder_name: str,
    data_dir,
    tfds_dir=DEFAULT_TFDS_DIR,
    synthfaces_preset="demo",
    on_bad_sample="error",
    builder_kwargs: dict | None = None,
    after_prepare: Callable | None = None,
):
    """Build (once) and return ``(builder, raw folder, skipped-sample records)``.

    ``folder_name`` names the prepared folder; ``builder_kwargs`` go to the builder and into the
    prepared folder's hash (AffectNet's ``num_classes`` changes what is prepared);
    ``after_prepare(builder)`` runs once after preparing (e.g. to index labels).

    The builder always records bad samples (as ``skip`` does) and the copy is shared by both
    policies; ``on_bad_sample`` only matters when preparing fails (a dataset-wide error, e.g. a split
    left empty): under ``error`` the first recorded bad sample is raised, as it stopped the
    preparation before. The loaders raise a split's bad samples under ``error`` (:func:`split_records`).
    """
    if on_bad_sample not in POLICIES:
        raise ValueError(f"on_bad_sample must be one of {POLICIES}, got {on_bad_sample!r}")
    check_raw_dir(builder_cls, folder_name, data_dir)
    kwargs, download_config = {"on_bad_sample": "skip", **(builder_kwargs or {})}, {}
    if issubclass(builder_cls, SynthFacesBuilder):
        raw_dir = Path(data_dir) if data_dir else DEFAULT_SYNTHFACES_DIR / synthfaces_preset
        raw_dir.mkdir(parents=True, exist_ok=True)
        kwargs.update(root=raw_dir.resolve(), preset=synthfaces_preset)
    else:
        raw_dir = Path(data_dir)
        download_config = {"manual_dir": str(raw_dir.resolve())}
    raw_dir = raw_dir.resolve()
    # The marker keeps kdface's copies from before bad samples were checked (hashed by the path alone)
    # from matching; copies hashed with the policy are simply not found: both are prepared again.
    identity = f"{raw_dir}\0bad samples recorded"
    if builder_kwargs:
        identity += "\0" + json.dumps(builder_kwargs, sort_keys=True)
    tag = hashlib.sha256(identity.encode()).hexdigest()[:10]
    prepared_dir = Path(tfds_dir).resolve() / f"{folder_name}-{tag}"
    stamp = prepared_dir / "kdface_fingerprint.json"
    skipped_file = prepared_dir / "kdface_skipped.json"
    if prepared_dir.exists():
        recorded = json.loads(stamp.read_text()) if stamp.exists() else {}
        if recorded.get("fingerprint") != _fingerprint(raw_dir):
            shutil.rmtree(prepared_dir)  # raw files changed (or an interrupted prepare): rebuild
    builder = builder_cls(data_dir=str(prepared_dir), **kwargs)
    if not stamp.exists():
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False, **download_config)
            )
        except Exception:
            if on_bad_sample == "error" and builder.bad_samples.skipped:
                # under "error" the first bad sample stopped the preparation before this error was reached
                raise recorded_error(builder.bad_samples.as_records()[0]) from None
            raise
        builder.bad_samples.write(skipped_file)
        if after_prepare is not None:
            after_prepare(builder)
        # Fingerprint after preparing: a generated dataset (SynthFaces) only exists now. Written
        # last, so an interrupted preparation is redone rather than half-used.
        write_json(stamp, {"fingerprint": _fingerprint(raw_dir), "raw_dir": str(raw_dir)})
    skipped = json.loads(skipped_file.read_text())["skipped"] if skipped_file.exists() else []
    return builder, raw_dir, skipped


def split_records(skipped: list[dict], parts, on_bad_sample: str) -> list[dict]:
    """The bad-sample records of the TFDS splits ``parts`` and those of the whole dataset (recorded
    outside any split, e.g. a stray folder in CK+'s tree); under ``error`` the first one is raised."""
    records = [
        record for record in skipped if record.get("split") in set(parts) or record.get("split") is None
    ]
    if on_bad_sample == "error" and records:
        raise recorded_error(records[0])
    return records


def encoded_images(builder) -> dict:
    """TFDS decoders that leave every image feature of ``builder`` encoded (``image``; a pair's two)."""
    features = builder.info.features
    return {
        name: tfds.decode.SkipDecoding()
        for name in features
        if isinstance(features[name], tfds.features.Image)
    }


def read_split(builder, tfds_split: str):
    """A prepared split with images left encoded (decoded later, after shuffling), in stored order."""
    return builder.as_dataset(
        split=tfds_split,
        decoders=encoded_images(builder),
        shuffle_files=False,  # a fixed order: cached teacher predictions are zipped with it
    )
