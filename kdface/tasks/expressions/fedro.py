"""FED-RO (Facial Expression Dataset with Real Occlusions; Li et al., ACNN / PG-CNN): 400 in-the-wild
test images with real occlusions, 7 basic expressions. Test only.

The distributed archive's label coding is not documented (spec C2), so kdface reads one of two
layouts it defines:

1. **Class folders** (default)::

       <root>/<class>/*.jpg|jpeg|png|bmp

   Folder names are matched case-insensitively to kdface's class names, with the usual synonyms:
   ``surprise``/``surprised``, ``fear``/``fearful``, ``disgust``/``disgusted``,
   ``happiness``/``happy``, ``sadness``/``sad``, ``anger``/``angry``, ``neutral``. Hidden folders
   (``.*``, ``__MACOSX``) are ignored; any other folder is an error naming it and the accepted names.

2. **A list file** ``<root>/fedro_list.txt`` (used instead of the folders when present): one image
   per line, ``<path relative to root> <label>``, the label a class name or synonym as above, or a
   kdface class index 0..6 (0 surprise, 1 fear, 2 disgust, 3 happiness, 4 sadness, 5 anger,
   6 neutral). The path is everything before the last space, so it may contain spaces. CRLF, a
   UTF-8 BOM and blank lines are fine.

Malformed list lines and missing images are per-sample :class:`~kdface.errors.DataFormatError` s for
the ``bad`` policy; an unknown class folder, a folder without images and an empty list always raise;
a path leaving the root raises :class:`~kdface.errors.UnsafeFileError`.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdface.data.validation import as_policy, safe_relative_path
from kdface.errors import DataFormatError
from kdface.tasks.expressions.labels import CLASS_NAMES, NUM_BASIC, ExpressionSample, image_file_exists
from kdface.tasks.expressions.rafdb import read_lines

SPLITS = ("test",)
NUM_CLASSES = NUM_BASIC
LIST_FILE = "fedro_list.txt"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

SYNONYMS = {
    "surprised": "surprise",
    "fearful": "fear",
    "disgusted": "disgust",
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
}
# folder / label name (lower case) -> kdface index
CLASS_INDEX = {name: i for i, name in enumerate(CLASS_NAMES[:NUM_CLASSES])}
CLASS_INDEX.update({alias: CLASS_INDEX[name] for alias, name in SYNONYMS.items()})
ACCEPTED = ", ".join(sorted(CLASS_INDEX))
LIST_LINE = f"'<relative image path> <label>' with the label one of {ACCEPTED} or 0..6 (kdface index)"


def class_index(name: str) -> int | None:
    """The kdface index for a FED-RO class name or synonym (case-insensitive), else ``None``."""
    return CLASS_INDEX.get(name.strip().lower())


def _label(field: str, path, line: int) -> int:
    if re.fullmatch(r"[0-9]{1,9}", field):
        if int(field) < NUM_CLASSES:
            return int(field)
    elif (index := class_index(field)) is not None:
        return index
    raise DataFormatError(path, f"a label: one of {ACCEPTED}, or 0..6", line=line, got=field[:40])


def _read_list(root: Path, path: Path, bad):
    found = 0
    seen: dict[str, int] = {}
    for line, text in read_lines(path):
        try:
            fields = text.strip().rsplit(None, 1)
            if len(fields) != 2:
                raise DataFormatError(path, LIST_LINE, line=line, got=text.strip()[:60])
            rel, label = fields[0].strip(), _label(fields[1], path, line)
            if rel in seen:
                raise DataFormatError(path, "each image once", line=line,
                                      got=f"{rel[:60]} again (first on line {seen[rel]})")  # fmt: skip
        except DataFormatError as err:
            bad.handle(err)
            continue
        seen[rel] = line
        image_path = safe_relative_path(root, rel, path, line)
        try:
            exists = image_file_exists(image_path, path, line, rel)
        except DataFormatError as err:
            bad.handle(err)
            continue
        if not exists:
            bad.handle(DataFormatError(path, f"an image at {image_path}", line=line, got=rel))
            continue
        found += 1
        yield ExpressionSample(key=rel, label=label, image_path=str(image_path), origin=f"{path}:{line}")
    if not found:
        raise DataFormatError(path, "at least one readable FED-RO sample", got="none")


def _read_folders(root: Path):
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
    if not folders:
        raise DataFormatError(
            root, f"FED-RO class folders <class>/*.jpg (class one of {ACCEPTED}) or a {LIST_FILE}"
        )
    for folder in folders:
        label = class_index(folder.name)
        if label is None:
            raise DataFormatError(folder, f"a FED-RO class folder named one of {ACCEPTED}", got=folder.name)
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not images:
            raise DataFormatError(folder, f"images ({', '.join(IMAGE_EXTENSIONS)}) in the class folder")
        for image in images:
            key = f"{folder.name}/{image.name}"
            yield ExpressionSample(key=key, label=label, image_path=str(image), origin=str(image))


def read_split(root, split: str = "test", bad=None):
    """Yield FED-RO's test images as :class:`~kdface.tasks.expressions.labels.ExpressionSample` (module doc)."""
    if split not in SPLITS:
        raise ValueError(f"unknown FED-RO split {split!r}; FED-RO has only {list(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "a FED-RO folder", got="missing")
    if (root / LIST_FILE).is_file():
        yield from _read_list(root, root / LIST_FILE, as_policy(bad))
    else:
        yield from _read_folders(root)
