"""RAF-DB basic (7 expressions), in the two layouts the FER code bases use, and the RAN
Occlusion-RAF-DB list.

SCN layout (the official release; Self-Cure-Network, spec B4)::

    <root>/EmoLabel/list_patition_label.txt      ("patition" sic) lines "train_00001.jpg 5", labels 1..7
    <root>/Image/aligned/train_00001_aligned.jpg, test_0001_aligned.jpg, ...

The split is the name's prefix (``train_`` / ``test_``); kdface label = raw - 1.

IGKD layout (spec A5)::

    <root>/Annotated/train_labels.txt            (the README's typo "tarin_labels.txt" is accepted too)
    <root>/Annotated/val_labels.txt              lines "3/test_0003_aligned.jpg" = <class>/<file>
    <root>/train/<class>/<file>   <root>/val/<class>/<file>

The label is the integer before the first ``/``, in RAF code 0..6 (raw - 1), which is the kdface
index; the whole line is the image path relative to ``train/`` or ``val/``. IGKD's ``val`` is
RAF-DB's test set, so the kdface splits are ``train`` and ``test`` in both layouts.

The layout is detected from the root (:func:`detect_layout`; SCN wins when both are present). Both
give the same keys (the RAF name without extension and ``_aligned``, e.g. ``test_0003``), so the
same images read from either layout carry the same keys and labels.

Occlusion-RAF-DB (RAN, Wang et al. TIP 2020; spec A2): ``<root>/rafdb_occlusion_list.txt`` with
CRLF lines ``test_0003_aligned 3 4`` = image name, RAF label 0..6, occlusion code (undocumented,
kept as ``attributes["occlusion_code"]``). Every entry must be a test image of the label file with
the same label; a disagreement is a :class:`~kdface.errors.DataFormatError` naming both files.

All text files may have CRLF line ends, a UTF-8 byte-order mark and blank lines. A malformed line
(wrong field count, a label that is not an integer or out of range, a name without the ``train_`` /
``test_`` prefix, a duplicate image) or a missing image is a per-sample
:class:`~kdface.errors.DataFormatError` naming ``file:line``, handed to the ``bad`` policy; a
missing label file or a split without samples always raises; an image path leaving the root always
raises :class:`~kdface.errors.UnsafeFileError`.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from kdface.data.validation import BadSamples, as_policy, safe_relative_path
from kdface.errors import DataFormatError
from kdface.tasks.expressions.labels import (
    NUM_BASIC,
    RAFDB_TO_KDFACE,
    ExpressionSample,
    excerpt,
    image_file_exists,
)

SPLITS = ("train", "test")
NUM_CLASSES = NUM_BASIC

SCN_LABEL_FILE = "EmoLabel/list_patition_label.txt"
SCN_IMAGE_DIR = "Image/aligned"
IGKD_ANNOTATION_DIR = "Annotated"
IGKD_LABEL_FILES = {"train": ("train_labels.txt", "tarin_labels.txt"), "test": ("val_labels.txt",)}
IGKD_IMAGE_DIRS = {"train": "train", "test": "val"}
OCCLUSION_LIST = "rafdb_occlusion_list.txt"

SCN_LINE = "'<train_|test_>NAME.jpg <label 1..7>' (two space-separated fields)"
IGKD_LINE = "'<label 0..6>/<file>' (one field: the image path relative to the split folder)"
OCCLUSION_LINE = "'<name>_aligned <RAF label 0..6> <occlusion code>' (three space-separated fields)"

_INT = re.compile(r"[0-9]{1,9}")  # ASCII digits only (int() would take '٣' and '1_0')
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_lines(path) -> list[tuple[int, str]]:
    """``(line number, text)`` of a text annotation file's non-blank lines.

    Tolerates a UTF-8 BOM, CRLF (and lone CR) line ends, blank lines and undecodable bytes (replaced,
    then refused by the line parser).
    """
    text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    return [(i, line.rstrip("\r")) for i, line in enumerate(lines, start=1) if line.strip()]


def _strip_suffix(name: str) -> str:
    return name.rsplit(".", 1)[0] if name.lower().endswith(_IMAGE_SUFFIXES) else name


def raf_key(name: str) -> str:
    """The key of a RAF-DB image from any of its spellings: ``test_0003.jpg``,
    ``3/test_0003_aligned.jpg``, ``test_0003_aligned`` -> ``test_0003``."""
    stem = _strip_suffix(PurePosixPath(name.replace("\\", "/")).name)
    return stem[: -len("_aligned")] if stem.endswith("_aligned") else stem


def detect_layout(root) -> str:
    """``"emolabel"`` (``EmoLabel/list_patition_label.txt``, the SCN code's layout) or ``"annotated"``
    (``Annotated/``, the IGKD code's)."""
    root = Path(root)
    if (root / SCN_LABEL_FILE).is_file():
        return "emolabel"
    if (root / IGKD_ANNOTATION_DIR).is_dir():
        return "annotated"
    raise DataFormatError(
        root,
        f"a RAF-DB folder: {SCN_LABEL_FILE} (SCN layout) or {IGKD_ANNOTATION_DIR}/train_labels.txt and "
        f"{IGKD_ANNOTATION_DIR}/val_labels.txt (IGKD layout)",
    )


def label_file(root, split: str) -> Path:
    """The annotation file that ``split`` reads in the layout ``root`` has."""
    if split not in SPLITS:
        raise ValueError(f"unknown RAF-DB split {split!r}; expected one of {list(SPLITS)}")
    root = Path(root)
    if detect_layout(root) == "emolabel":
        return root / SCN_LABEL_FILE
    candidates = [root / IGKD_ANNOTATION_DIR / name for name in IGKD_LABEL_FILES[split]]
    for path in candidates:
        if path.is_file():
            return path
    raise DataFormatError(candidates[0], f"the IGKD RAF-DB label file for split {split!r}", got="missing")


def _parse_int(field: str, low: int, high: int, path, line: int, expected: str) -> int:
    if not _INT.fullmatch(field) or not low <= int(field) <= high:
        raise DataFormatError(path, expected, line=line, got=excerpt(field, 20))
    return int(field)


def parse_scn_line(text: str, path, line: int) -> tuple[str, str, int]:
    """``(split, name, kdface label)`` of a ``list_patition_label.txt`` line."""
    fields = text.split()
    if len(fields) != 2:
        raise DataFormatError(path, SCN_LINE, line=line, got=f"{len(fields)} fields: {excerpt(text)}")
    name, raw = fields
    split = name.split("_", 1)[0]
    if split not in SPLITS or not name.startswith(f"{split}_") or len(name) <= len(split) + 1:
        raise DataFormatError(path, f"an image name starting with 'train_' or 'test_' ({SCN_LINE})", line=line,
                              got=excerpt(name))  # fmt: skip
    label = _parse_int(raw, 1, 7, path, line, "a RAF-DB label 1..7 (1 Surprise ... 7 Neutral)")
    return split, name, RAFDB_TO_KDFACE[label]


def parse_igkd_line(text: str, path, line: int) -> tuple[str, int]:
    """``(relative image path, kdface label)`` of an IGKD ``<class>/<file>`` line."""
    fields = text.split()
    if len(fields) != 1:
        raise DataFormatError(path, IGKD_LINE, line=line, got=f"{len(fields)} fields: {excerpt(text)}")
    rel = fields[0]
    head, slash, rest = rel.partition("/")
    if not slash or not rest:
        raise DataFormatError(path, IGKD_LINE, line=line, got=excerpt(rel))
    label = _parse_int(
        head, 0, NUM_CLASSES - 1, path, line, f"a class folder 0..6 (RAF raw label - 1) in {IGKD_LINE}"
    )
    return rel, label


def _image_exists(image_path: Path, path, line: int, rel: str, bad: BadSamples) -> bool:
    try:
        exists = image_file_exists(image_path, path, line, rel)
    except DataFormatError as err:
        bad.handle(err)
        return False
    if not exists:
        bad.handle(DataFormatError(path, f"an image at {image_path}", line=line, got=rel))
    return exists


def _read(root, split: str, bad: BadSamples, check_images: bool = True):
    root = Path(root)
    path = label_file(root, split)
    layout = detect_layout(root)
    seen: dict[str, int] = {}
    found = 0
    other = f"{SPLITS[1 - SPLITS.index(split)]}_"
    for line, text in read_lines(path):
        try:
            if layout == "emolabel":
                if text.split()[0].startswith(other):
                    continue  # the other split's line: checked when that split is read
                _, name, label = parse_scn_line(text, path, line)
                rel = f"{_strip_suffix(name)}_aligned.jpg"
                image_root = root / SCN_IMAGE_DIR
                image_path = safe_relative_path(image_root, rel, path, line)
            else:
                image_root = root / IGKD_IMAGE_DIRS[split]
                if len(text.split()) == 1:  # a hostile path is refused before its label is looked at
                    safe_relative_path(image_root, text.split()[0], path, line)
                rel, label = parse_igkd_line(text, path, line)
                image_path = safe_relative_path(image_root, rel, path, line)
            key = raf_key(rel)
            if key in seen:
                raise DataFormatError(path, "each image once", line=line,
                                      got=f"{key} again (first on line {seen[key]})")  # fmt: skip
        except DataFormatError as err:
            bad.handle(err)
            continue
        seen[key] = line
        if check_images and not _image_exists(image_path, path, line, rel, bad):
            continue
        found += 1
        yield ExpressionSample(key=key, label=label, image_path=str(image_path), origin=f"{path}:{line}")
    if not found:
        raise DataFormatError(path, f"at least one readable RAF-DB {split!r} sample", got="none")


def read_split(root, split: str, bad=None):
    """Yield :class:`~kdface.tasks.expressions.labels.ExpressionSample` for ``train`` or ``test`` (either layout).

    Labels are kdface indices (RAF raw - 1); ``origin`` is ``file:line``; ``bad`` is the
    :class:`~kdface.data.validation.BadSamples` policy for malformed lines and missing images.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown RAF-DB split {split!r}; expected one of {list(SPLITS)}")
    yield from _read(root, split, as_policy(bad))


def occlusion_list_path(root, list_path=None) -> Path:
    return Path(list_path) if list_path is not None else Path(root) / OCCLUSION_LIST


def has_occlusion_list(root, list_path=None) -> bool:
    return occlusion_list_path(root, list_path).is_file()


def parse_occlusion_line(text: str, path, line: int) -> tuple[str, int, int]:
    """``(name, kdface label, occlusion code)`` of a ``rafdb_occlusion_list.txt`` line."""
    fields = text.split()
    if len(fields) != 3:
        raise DataFormatError(path, OCCLUSION_LINE, line=line, got=f"{len(fields)} fields: {excerpt(text)}")
    name = fields[0]
    label = _parse_int(fields[1], 0, NUM_CLASSES - 1, path, line, "a RAF label 0..6 (raw - 1) in field 2")
    code = _parse_int(fields[2], 0, 10**6, path, line, "a non-negative integer occlusion code in field 3")
    return name, label, code


def read_occlusion_list(root, list_path=None, bad=None):
    """Yield the Occlusion-RAF-DB test images (RAN list, module doc) as
    :class:`~kdface.tasks.expressions.labels.ExpressionSample` with ``attributes["occlusion_code"]``.

    ``list_path`` defaults to ``<root>/rafdb_occlusion_list.txt``. Images are resolved in the
    layout ``root`` has (SCN: ``Image/aligned/<name>.jpg``; IGKD: ``val/<label>/<name>.jpg``) and each
    entry's label is checked against the label file's.
    """
    bad = as_policy(bad)
    root = Path(root)
    path = occlusion_list_path(root, list_path)
    if not path.is_file():
        raise DataFormatError(
            path, "the Occlusion-RAF-DB list (RAN's rafdb_occlusion_list.txt)", got="missing"
        )
    # The label file's own problems are reported when its test split is read, not again here.
    labels_path = label_file(root, "test")
    truth = {s.key: s for s in _read(root, "test", BadSamples("skip"), check_images=False)}
    seen: dict[str, int] = {}
    found = 0
    for line, text in read_lines(path):
        try:
            name, label, code = parse_occlusion_line(text, path, line)
            safe_relative_path(root, name, path, line)  # a hostile name is refused outright
            key = raf_key(name)
            if key in seen:
                raise DataFormatError(path, "each image once", line=line,
                                      got=f"{key} again (first on line {seen[key]})")  # fmt: skip
            if key not in truth:
                raise DataFormatError(path, f"a test image listed in {labels_path}", line=line, got=name)
            if truth[key].label != label:
                raise DataFormatError(
                    path, f"the label of {key} in {truth[key].origin} ({truth[key].label}, RAF code 0..6)",
                    line=line, got=f"{label}",
                )  # fmt: skip
        except DataFormatError as err:
            bad.handle(err)
            continue
        seen[key] = line
        image_path = Path(truth[key].image_path)  # where the layout puts it (SCN or IGKD, module doc)
        rel = str(image_path.relative_to(root))
        if not _image_exists(image_path, path, line, rel, bad):
            continue
        found += 1
        yield ExpressionSample(
            key=key,
            label=label,
            image_path=str(image_path),
            attributes={"occlusion_code": code},
            origin=f"{path}:{line}",
        )
    if not found:
        raise DataFormatError(path, "at least one readable Occlusion-RAF-DB sample", got="none")
