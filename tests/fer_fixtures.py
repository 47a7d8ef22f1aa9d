"""Fixture writers for the expression readers: RAF-DB (SCN and IGKD layouts), the RAN
Occlusion-RAF-DB list, and FED-RO (class folders or a list), in the real on-disk formats."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIDE = 24  # small aligned faces: fast to write and to decode


def write_image(path, seed: int, side: int = SIDE) -> Path:
    """A random ``side`` x ``side`` colour image, encoded by its suffix (.jpg or .png)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(path.suffix.lower(), image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def rafdb_samples(n_train: int = 9, n_test: int = 7) -> list[tuple[str, int]]:
    """``(name, raw label 1..7)`` in RAF-DB's naming, every class present in each split."""
    train = [(f"train_{i + 1:05d}", i % 7 + 1) for i in range(n_train)]
    test = [(f"test_{i + 1:04d}", (i * 3) % 7 + 1) for i in range(n_test)]
    return train + test


def _text(lines, crlf=False, bom=False, trailing_blank=0) -> bytes:
    end = "\r\n" if crlf else "\n"
    text = "".join(line + end for line in lines) + end * trailing_blank
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def write_rafdb_scn(
    root, samples=None, *, crlf=False, bom=False, trailing_blank=0, extra_lines=(), images=True
):
    """The official layout: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/<name>_aligned.jpg``.

    ``extra_lines`` are appended to the label file verbatim (malformed-line tests)."""
    root = Path(root)
    samples = rafdb_samples() if samples is None else samples
    lines = [f"{name}.jpg {raw}" for name, raw in samples] + list(extra_lines)
    label_file = root / "EmoLabel/list_patition_label.txt"
    label_file.parent.mkdir(parents=True, exist_ok=True)
    label_file.write_bytes(_text(lines, crlf, bom, trailing_blank))
    if images:
        for i, (name, _) in enumerate(samples):
            write_image(root / f"Image/aligned/{name}_aligned.jpg", seed=i)
    return label_file


def write_rafdb_igkd(root, samples=None, *, crlf=False, typo=False, extra_lines=None, images=True):
    """IGKD's layout: ``Annotated/{train,val}_labels.txt`` lines ``<raw-1>/<name>_aligned.jpg`` and the
    images under ``train/<class>/`` and ``val/<class>/``. ``typo`` writes ``tarin_labels.txt``.
    ``extra_lines`` maps ``"train"``/``"test"`` to lines appended to that file."""
    root = Path(root)
    samples = rafdb_samples() if samples is None else samples
    extra_lines = extra_lines or {}
    files = {}
    for split, folder, file_name in (
        ("train", "train", "tarin_labels.txt" if typo else "train_labels.txt"),
        ("test", "val", "val_labels.txt"),
    ):
        lines = []
        for i, (name, raw) in enumerate(samples):
            if not name.startswith(f"{split}_"):
                continue
            rel = f"{raw - 1}/{name}_aligned.jpg"
            lines.append(rel)
            if images:
                write_image(root / folder / rel, seed=i)
        path = root / "Annotated" / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_text(lines + list(extra_lines.get(split, ())), crlf))
        files[split] = path
    return files


def write_occlusion_list(path, entries) -> Path:
    """RAN's ``rafdb_occlusion_list.txt``: CRLF lines ``<name>_aligned <RAF label 0..6> <code>``.
    ``entries`` holds ``(name, raw label 1..7, code)`` or ready-made line strings."""
    lines = [e if isinstance(e, str) else f"{e[0]}_aligned {e[1] - 1} {e[2]}" for e in entries]
    path = Path(path)
    path.write_bytes(_text(lines, crlf=True))
    return path


def write_fedro_folders(root, counts: dict[str, int], suffix: str = ".jpg") -> Path:
    """FED-RO as class folders: ``<root>/<folder>/<i>.jpg``."""
    root = Path(root)
    for f, (folder, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / folder / f"{folder.lower()}_{i:03d}{suffix}", seed=100 * f + i)
    return root


def write_fedro_list(root, entries, crlf=True) -> Path:
    """FED-RO as ``fedro_list.txt`` lines ``<relative path> <label>``; ``entries`` holds
    ``(relative path, label text, write_the_image)``."""
    root = Path(root)
    lines = []
    for i, (rel, label, make) in enumerate(entries):
        lines.append(f"{rel} {label}")
        if make:
            write_image(root / rel, seed=500 + i)
    path = root / "fedro_list.txt"
    path.write_bytes(_text(lines, crlf))
    return path


# ------------------------------------------------------------------------------------------ CK+

CK_SIZE = (40, 56)  # (height, width) of a fixture frame: small, not square, like CK+'s 490 x 640


def ck_landmarks(seed: int) -> np.ndarray:
    """68 points inside a fixture frame (kdface pixels): x in 14..42, y in 10..34."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(14, 42, 68), rng.uniform(10, 34, 68)], axis=1)


def write_ck_frame(path, seed: int) -> Path:
    """A random grey CK+-style frame (PNG, one channel like CK+'s)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, CK_SIZE, dtype=np.uint8)
    ok, buf = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def write_ck_text(path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_ckplus(root, subjects: dict, *, landmarks: bool = True, seed_of=None) -> Path:
    """A CK+ tree in the real layout. ``subjects`` maps ``"S005"`` to a list of sequences, each
    ``(frames, code)`` (``code``: the CK+ emotion code, ``None`` unlabelled, the emotion file naming the
    last frame) or ``(frames, code, peak)`` (naming frame ``peak``). Frame pixels come from
    ``seed_of(subject, sequence, frame)`` (default: unique per frame); ``landmarks`` writes every frame's
    68 points (CK+'s 1-based pixel centres) and an empty Emotion folder for unlabelled sequences."""
    root = Path(root)
    seed_of = seed_of or (lambda subject, sequence, frame: int(subject[1:]) * 10_000 + sequence * 100 + frame)
    for subject, sequences in subjects.items():
        for s, spec in enumerate(sequences, start=1):
            frames, code = spec[0], spec[1]
            peak = spec[2] if len(spec) > 2 else frames
            folder = f"{subject}/{s:03d}"
            for f in range(1, frames + 1):
                name = f"{subject}_{s:03d}_{f:08d}"
                write_ck_frame(root / "cohn-kanade-images" / folder / f"{name}.png", seed_of(subject, s, f))
                if landmarks:
                    points = ck_landmarks(seed_of(subject, s, f)) + 0.5
                    text = "".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points)
                    write_ck_text(root / "Landmarks" / folder / f"{name}_landmarks.txt", text)
            (root / "Emotion" / folder).mkdir(parents=True, exist_ok=True)
            if code is not None:
                name = f"{subject}_{s:03d}_{peak:08d}_emotion.txt"
                write_ck_text(root / "Emotion" / folder / name, f"   {float(code):.7e}\n")
    return root
