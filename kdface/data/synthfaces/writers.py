"""``generate``: render the job plan and write the 300W / RAF-DB / identity-folder trees and tables.

The file layout is described in the package doc (:mod:`kdface.data.synthfaces`).
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from kdface.data.synthfaces import ckplus
from kdface.data.synthfaces.config import CKPLUS_FIELDS, SynthFacesConfig, identity_split
from kdface.data.synthfaces.occluders import landmark_occlusion
from kdface.data.synthfaces.params import EXPRESSION_NAMES, OCCLUDER_TYPES
from kdface.data.synthfaces.plan import _Job, _job_params, _plan, plan_verification_pairs
from kdface.data.synthfaces.render import render_face
from kdface.errors import ForeignFolderError
from kdface.io.atomic import write_bytes, write_text
from kdface.tasks.landmarks.w300 import write_pts

GENERATOR_VERSION = "1.2.0"
# 1.1.0: rafdb_occlusion_list.txt, rafdb_test_occlusion_fraction. 1.2.0: held-out identities move from
# identities/ to identities_test/ (same images), verification/synthface.bin + synthface_pairs.csv.
# The CK+ tree (ckplus/) came without a new version: the other trees' bytes did not change, and a tree
# of this version without ckplus/ gets it added by generate() (only it) when its config asks for one.
OCCLUSION_LIST = "rafdb_occlusion_list.txt"  # under rafdb/; codes are OCCLUDER_TYPES indices (1..5)
METADATA_COLUMNS = (
    "path",
    "tree",
    "split",
    "subset",
    "identity",
    "expression",
    "expression_name",
    "intensity",
    "occluder",
    "mask_path",
    "num_occluded_landmarks",
    "occluded_landmarks",
    "pair_id",
    "pair_role",
    "roll",
    "yaw",
    "scale",
    "shift_x",
    "shift_y",
    "light_azimuth",
    "width",
    "height",
    "generator_version",
)
# everything generate writes under root: what _clear_previous may remove before a new run
_OUTPUTS = (
    *("300w", "rafdb", "identities", "identities_test", "verification", "masks", ckplus.CKPLUS_DIR),
    *("metadata.csv", "landmarks.npz", "synthfaces.json"),
)
_MARKER = "synthfaces.json"
_IN_PROGRESS = ".synthfaces-in-progress"


def _atomic_write(path: Path, data: bytes) -> None:
    # No fsync per file: thousands of images; the synthfaces.json marker (written last) is what counts.
    write_bytes(path, data, fsync=False)


def _encode(rgb_or_gray: np.ndarray, ext: str, jpeg_quality: int) -> bytes:
    img = rgb_or_gray
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if ext == ".png":
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def _run_job(args: tuple[_Job, int, str]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Render one job and write its image (+ .pts, mask); returns its metadata row, landmarks and flags."""
    job, seed, root_str = args
    root = Path(root_str)
    params, rng = _job_params(job, seed)
    img, lm, mask = render_face(params, rng)
    occluded = landmark_occlusion(lm, mask) if params.occluder != "none" else np.zeros(68, bool)
    image_path = root / job.image_rel
    _atomic_write(image_path, _encode(img, image_path.suffix.lower(), job.jpeg_quality))
    if job.pts_rel:
        (root / job.pts_rel).parent.mkdir(parents=True, exist_ok=True)
        write_pts(root / job.pts_rel, lm)
    mask_rel = ""
    if params.occluder != "none":
        mask_rel = job.mask_rel
        _atomic_write(root / mask_rel, _encode(mask, ".png", 100))
    p = params.pose
    row = {
        "path": job.image_rel,
        "tree": job.tree,
        "split": job.split,
        "subset": job.subset,
        "identity": job.identity,
        "expression": job.expression,
        "expression_name": EXPRESSION_NAMES[job.expression],
        "intensity": f"{params.expression.intensity:.3f}",
        "occluder": params.occluder,
        "mask_path": mask_rel,
        "num_occluded_landmarks": int(occluded.sum()),
        "occluded_landmarks": ";".join(str(i) for i in np.flatnonzero(occluded)),
        "pair_id": job.pair_id,
        "pair_role": job.pair_role,
        "roll": f"{p.roll:.3f}",
        "yaw": f"{p.yaw:.3f}",
        "scale": f"{p.scale:.4f}",
        "shift_x": f"{p.shift_x:.4f}",
        "shift_y": f"{p.shift_y:.4f}",
        "light_azimuth": f"{params.light_azimuth:.2f}",
        "width": params.width,
        "height": params.height,
        "generator_version": GENERATOR_VERSION,
    }
    return row, lm, occluded


def _csv_bytes(rows: list[dict], columns: Sequence[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _marker(root: Path) -> dict | None:
    try:
        info = json.loads((root / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("generator_version") == GENERATOR_VERSION else None


def _marker_matches(root: Path, config: SynthFacesConfig) -> bool:
    info = _marker(root)
    return info is not None and info.get("config") == config.to_dict()


def _only_ckplus_differs(root: Path, config: SynthFacesConfig) -> bool:
    """Whether ``root`` is a complete tree of this version whose config differs from ``config`` in the
    CK+ fields alone (e.g. written before the CK+ tree existed): then only ``ckplus/`` is (re)written."""
    info = _marker(root)
    if info is None or not isinstance(info.get("config"), dict) or (root / _IN_PROGRESS).exists():
        return False
    recorded = {k: v for k, v in info["config"].items() if k not in CKPLUS_FIELDS}
    return recorded == config.without_ckplus()


def _clear_previous(root: Path) -> None:
    present = [name for name in _OUTPUTS if (root / name).exists()]
    if not present:
        return
    if not ((root / _MARKER).exists() or (root / _IN_PROGRESS).exists()):
        raise ForeignFolderError(
            f"{root} already holds {present} but no {_MARKER} or {_IN_PROGRESS}: it does not look like "
            "a SynthFaces output; refusing to overwrite it (choose another --out)"
        )
    # the completion marker goes first, so that a killed run never looks complete
    (root / _MARKER).unlink(missing_ok=True)
    for name in present:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _default_workers(num_jobs: int) -> int:
    if num_jobs < 300:
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def generate(
    root: str | os.PathLike = "datasets/synthfaces",
    config: SynthFacesConfig | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Write the SynthFaces trees under ``root`` (see the module doc) and return ``root``.

    Skipped (a no-op) when ``root/synthfaces.json`` records the same config and generator version,
    unless ``force``.  Otherwise earlier SynthFaces outputs in ``root`` are removed first.
    ``workers`` processes render in parallel (default: 2 for big runs, 1 for small ones); the output
    is byte-identical whatever the number.
    """
    config = config if config is not None else SynthFacesConfig()
    config.validate()
    root = Path(root)
    if not force and _marker_matches(root, config):
        return root
    if not force and _only_ckplus_differs(root, config):
        _replace_ckplus(root, config, workers, progress)
        return root
    root.mkdir(parents=True, exist_ok=True)
    _clear_previous(root)
    write_text(root / _IN_PROGRESS, "generation started; incomplete until synthfaces.json exists\n")
    start = time.time()
    jobs, label_lines = _plan(config)
    workers = _default_workers(len(jobs)) if workers is None else max(1, int(workers))
    rows, lms, occ = _render_jobs(jobs, int(config.seed), root, workers, progress, start)
    _write_rafdb_lists(root, rows, label_lines)
    _write_verification(root, config)
    _atomic_write(root / "metadata.csv", _csv_bytes(rows, METADATA_COLUMNS))
    buf = io.BytesIO()
    np.savez_compressed(buf, paths=np.array([r["path"] for r in rows]), landmarks=lms, occluded=occ)
    _atomic_write(root / "landmarks.npz", buf.getvalue())
    info = _summary(config, rows, workers, start)
    ckplus_info = _write_ckplus(root, config, workers, progress)
    if ckplus_info:
        info["ckplus"] = ckplus_info
    info["seconds"] = round(time.time() - start, 2)
    (root / _IN_PROGRESS).unlink(missing_ok=True)
    _atomic_write(root / _MARKER, (json.dumps(info, indent=2) + "\n").encode())
    return root


def _replace_ckplus(root: Path, config: SynthFacesConfig, workers: int | None, progress: bool) -> None:
    """(Re)write ``ckplus/`` alone in a complete tree whose other trees ``config`` leaves as they are;
    the marker goes first and comes back last, as in a full run."""
    info = _marker(root)
    (root / _MARKER).unlink()
    write_text(root / _IN_PROGRESS, "CK+ tree being written; incomplete until synthfaces.json exists\n")
    if (root / ckplus.CKPLUS_DIR).exists():
        shutil.rmtree(root / ckplus.CKPLUS_DIR)
    info.pop("ckplus", None)
    ckplus_info = _write_ckplus(root, config, workers, progress)
    if ckplus_info:
        info["ckplus"] = ckplus_info
    info["config"] = config.to_dict()
    (root / _IN_PROGRESS).unlink(missing_ok=True)
    _atomic_write(root / _MARKER, (json.dumps(info, indent=2) + "\n").encode())


def _map_jobs(run, tasks: list, workers: int):
    """``run`` over ``tasks`` in order, in ``workers`` processes (OpenCV single-threaded in each)."""
    if workers == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the images are tiny: threading costs more than it saves
        try:
            yield from map(run, tasks)
        finally:
            cv2.setNumThreads(threads)
    else:
        # "spawn", not "fork": forking a process whose OpenCV (or TensorFlow) thread pools have run
        # can deadlock the children.  Workers only import numpy, OpenCV and kdface.data.
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            yield from pool.imap(run, tasks, chunksize=16)


def _render_jobs(
    jobs: list[_Job], seed: int, root: Path, workers: int, progress: bool, start: float
) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Render and write every job's files; returns the metadata rows, landmarks and occlusion flags
    in job order."""
    tasks = [(job, seed, str(root)) for job in jobs]
    rows: list[dict] = []
    lms = np.zeros((len(jobs), 68, 2), np.float32)
    occ = np.zeros((len(jobs), 68), bool)

    def consume(results):
        for i, (row, lm, flags) in enumerate(results):
            rows.append(row)
            lms[i], occ[i] = lm, flags
            if progress and (i + 1) % 500 == 0:
                print(f"  {i + 1}/{len(jobs)} images ({time.time() - start:.1f} s)", file=sys.stderr)

    consume(_map_jobs(_run_job, tasks, workers))
    return rows, lms, occ


def _write_rafdb_lists(root: Path, rows: list[dict], label_lines: list[str]) -> None:
    """RAF-DB's label file, its metadata.csv and the Occlusion-RAF-DB list of occluded test images."""
    _atomic_write(root / "rafdb/EmoLabel/list_patition_label.txt", ("\n".join(label_lines) + "\n").encode())
    raf_rows = []
    for row in rows:
        if row["tree"] == "rafdb":
            name = Path(row["path"]).name.replace("_aligned.jpg", ".jpg")
            raf_rows.append({**row, "image": name, "label": row["expression"], "aligned_path": row["path"][6:],
                             "mask_path": row["mask_path"][6:] if row["mask_path"] else ""})  # fmt: skip
    raf_cols = ("image", "aligned_path", "split", "label", "expression_name", "identity", "occluder", "mask_path",
                "pair_id", "pair_role", "generator_version")  # fmt: skip
    _atomic_write(root / "rafdb/metadata.csv", _csv_bytes(raf_rows, raf_cols))
    # RAN's Occlusion-RAF-DB list format (CRLF like the real file): name, RAF label 0..6, occluder code
    occlusion_lines = [
        f"{Path(row['image']).stem}_aligned {int(row['label']) - 1} {OCCLUDER_TYPES.index(row['occluder'])}\r\n"
        for row in raf_rows
        if row["split"] == "test" and row["occluder"] != "none"
    ]
    _atomic_write(root / "rafdb" / OCCLUSION_LIST, "".join(occlusion_lines).encode())


CKPLUS_METADATA_COLUMNS = ("path", "subject", "sequence", "frame", "frames", "identity", "ckplus_code",
                           "expression", "expression_name", "intensity", "roll", "yaw", "scale", "width",
                           "height", "generator_version")  # fmt: skip


def _run_sequence(args: tuple[ckplus.SequenceJob, SynthFacesConfig, str]) -> list[dict]:
    """Render one CK+ sequence and write its frames, their landmarks and its emotion file (CK+'s
    formats: ``%15.7e`` numbers); returns one metadata row a frame."""
    job, config, root_str = args
    tree = Path(root_str) / ckplus.CKPLUS_DIR
    rows = []
    for number, (grey, landmarks, params) in enumerate(ckplus.render_sequence(job, config), start=1):
        name = job.frame_name(number)
        image_rel = f"cohn-kanade-images/{job.folder}/{name}.png"
        _atomic_write(tree / image_rel, _encode(grey, ".png", 100))
        points = landmarks.astype(np.float64) + 0.5  # CK+'s AAM points: 1-based pixel centres
        text = "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points)
        _atomic_write(tree / f"Landmarks/{job.folder}/{name}_landmarks.txt", text.encode())
        rows.append({
            "path": f"{ckplus.CKPLUS_DIR}/{image_rel}", "subject": job.subject_name, "sequence": f"{job.sequence:03d}",
            "frame": number, "frames": job.frames, "identity": params.identity.identity_id,
            "ckplus_code": "" if job.code is None else job.code, "expression": job.expression,
            "expression_name": EXPRESSION_NAMES[job.expression], "intensity": f"{params.expression.intensity:.3f}",
            "roll": f"{params.pose.roll:.3f}", "yaw": f"{params.pose.yaw:.3f}", "scale": f"{params.pose.scale:.4f}",
            "width": params.width, "height": params.height, "generator_version": GENERATOR_VERSION,
        })  # fmt: skip
    emotion_dir = tree / "Emotion" / job.folder
    emotion_dir.mkdir(parents=True, exist_ok=True)  # CK+ keeps the folders of unlabelled sequences, empty
    if job.code is not None:
        _atomic_write(
            emotion_dir / f"{job.frame_name(job.frames)}_emotion.txt", f"   {float(job.code):.7e}\n".encode()
        )
    return rows


def _write_ckplus(root: Path, config: SynthFacesConfig, workers: int | None, progress: bool) -> dict:
    """The CK+ tree under ``root/ckplus`` (:mod:`.ckplus`) and its summary; ``{}`` without CK+ subjects."""
    jobs = ckplus.plan_ckplus(config)
    if not jobs:
        return {}
    start = time.time()
    num_frames = sum(job.frames for job in jobs)
    workers = _default_workers(num_frames) if workers is None else max(1, int(workers))
    rows: list[dict] = []
    for k, sequence_rows in enumerate(
        _map_jobs(_run_sequence, [(job, config, str(root)) for job in jobs], workers)
    ):
        rows += sequence_rows
        if progress and (k + 1) % 50 == 0:
            print(f"  CK+: {k + 1}/{len(jobs)} sequences ({time.time() - start:.1f} s)", file=sys.stderr)
    _atomic_write(root / ckplus.CKPLUS_DIR / "metadata.csv", _csv_bytes(rows, CKPLUS_METADATA_COLUMNS))
    return {
        "subjects": config.ckplus_subjects,
        "sequences": len(jobs),
        "labelled_sequences": sum(job.code is not None for job in jobs),
        "frames": num_frames,
        "seconds": round(time.time() - start, 2),
        "workers": workers,
    }


VERIFICATION_BIN = "verification/synthface.bin"
VERIFICATION_PAIRS_CSV = "verification/synthface_pairs.csv"
VERIFICATION_COLUMNS = ("pair", "fold", "left", "right", "issame", "left_identity", "right_identity")


def _write_verification(root: Path, config: SynthFacesConfig) -> None:
    """``verification/synthface.bin`` (InsightFace format: a pickle of (2P encoded JPEGs, P bools),
    the very bytes of the ``identities_test/`` files) and ``synthface_pairs.csv`` naming each pair's
    images, fold and identities. Nothing when ``config.verification_pairs`` is 0."""
    from kdface.tasks.recognition.verification_bin import write_bin

    pairs = plan_verification_pairs(config)
    if not pairs:
        return
    cache: dict[str, bytes] = {}

    def image(rel: str) -> bytes:
        if rel not in cache:
            cache[rel] = (root / rel).read_bytes()
        return cache[rel]

    images = [image(rel) for p in pairs for rel in (p.left, p.right)]
    write_bin(root / VERIFICATION_BIN, images, [p.issame for p in pairs])
    rows = [
        {"pair": i, "fold": p.fold, "left": p.left, "right": p.right, "issame": int(p.issame),
         "left_identity": p.left_identity, "right_identity": p.right_identity}
        for i, p in enumerate(pairs)
    ]  # fmt: skip
    _atomic_write(root / VERIFICATION_PAIRS_CSV, _csv_bytes(rows, VERIFICATION_COLUMNS))


def _summary(config: SynthFacesConfig, rows: list[dict], workers: int, start: float) -> dict:
    """The synthfaces.json record: config, generator version, counts and timing."""
    counts: dict[str, int] = {}
    for row in rows:
        key = f"{row['tree']}/{row['split']}"
        counts[key] = counts.get(key, 0) + 1
    return {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "counts": counts,
        "num_images": len(rows),
        "num_occluded": int(sum(1 for r in rows if r["occluder"] != "none")),
        "num_pairs": len({r["pair_id"] for r in rows if r["pair_id"]}),
        "verification_pairs": config.verification_pairs,
        "identity_split": dict(zip(("train", "test"), identity_split(config), strict=True)),
        "seconds": round(time.time() - start, 2),
        "workers": workers,
    }
