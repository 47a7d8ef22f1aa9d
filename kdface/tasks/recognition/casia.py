"""CASIA-WebFace extracted layouts and the extracted verification pair lists (spec §5.3).

The F-SKD / A-SKD code does not train from ``train.rec`` directly: ``utility/load_images_from_bin.py``
extracts it first. Two training layouts come out of that, and both are read here:

* identity folders ``<root>/<identity>/<n>.jpg`` (:func:`read_identity_folders`). Class ``k`` is the
  ``k``-th folder in **sorted** name order. Departure from the original, which numbers the folders in
  ``os.listdir`` order (unsorted, so another machine can give another mapping, spec §7.6) and also
  gives a number to an empty folder: folders without images are skipped here, so the classes are
  ``0..C-1`` with at least one image each.
* ``train.list`` (:func:`read_train_list`): one line per image, ``<absolute path>`` + **two spaces** +
  ``<class>``. The path was written on the machine that extracted the data; as in the original
  loader it is cut after ``faces_webface_112x112/image/`` and the rest is joined to the local image
  folder (``data_dir``). The classes are used as written (the original ``os.listdir`` numbering, so
  that a teacher's margin head trained from the same file lines up).

Evaluation sets extracted from the ``.bin`` files: ``<Face>/evaluation/<name>/00001.jpg ...`` and
``<Face>/evaluation/<name>.txt`` with lines ``00001.jpg 00002.jpg 1`` (1 same, -1 different; pair
``k`` uses images ``2k+1`` and ``2k+2``), read by :func:`read_pairs_txt`. Departure from the original
LFW loader, which skips the first line as if it were a header (there is none: pair 0 is lost and
every fold boundary shifts by one, spec §7.7): every line is read here.

Paths read from a file are joined to their root with
:func:`~kdface.data.validation.safe_relative_path` (a path leaving the root is an
:class:`~kdface.errors.UnsafeFileError`). A malformed line is a :class:`~kdface.errors.DataFormatError`
naming ``file:line``, handed to the ``bad`` policy (``error`` raises, ``skip`` counts it). Images are
neither opened nor checked here; the pipeline decodes and checks each one.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from kdface.data.validation import as_policy, safe_relative_path
from kdface.errors import DataFormatError
from kdface.io.atomic import write_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
TRAIN_LIST_MARKER = "faces_webface_112x112/image/"  # the original skips 28 = len(this) characters
TRAIN_LIST_LINE = "'<path>  <class>' (the image path, two spaces, a class 0..4194303)"
PAIRS_LINE = "'<image> <image> <1|-1>' (two image names and 1 = same, -1 = different)"
_INT = re.compile(r"[0-9]{1,9}")  # ASCII digits only (int() would take '٣' and '1_0')
MAX_CLASSES = 1 << 22  # 4.2M: beyond the largest public face set (WebFace42M, 2.06M ids); more is damage


@dataclasses.dataclass
class IdentityList:
    """Images and their classes: ``items[i] = (path, class)``; ``class_names[k]`` names class ``k``
    (its folder; ``""`` for a class number no line uses)."""

    items: list[tuple[Path, int]]
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def paths(self) -> list[Path]:
        return [path for path, _ in self.items]

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.items], np.int64)

    def __len__(self) -> int:
        return len(self.items)


@dataclasses.dataclass
class PairList:
    """Verification pairs of an extracted evaluation set: pair ``i`` is ``(left[i], right[i])``."""

    left: list[Path]
    right: list[Path]
    issame: np.ndarray  # (P,) bool
    path: str

    @property
    def num_pairs(self) -> int:
        return len(self.issame)


def _text_lines(path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines; BOM, CRLF and bad UTF-8 tolerated (replaced
    bytes are refused by the line parsers)."""
    text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    return [(i, line.rstrip("\r")) for i, line in enumerate(lines, start=1) if line.strip()]


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def read_identity_folders(root) -> IdentityList:
    """``<root>/<identity>/<image>`` folders -> images with class = index of the folder in sorted name
    order (hidden entries and folders without images skipped; images sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "a folder of identity folders (<root>/<identity>/<n>.jpg)", got="missing")
    items: list[tuple[Path, int]] = []
    names: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _image_files(folder)
        if not files:
            continue
        items += [(path, len(names)) for path in files]
        names.append(folder.name)
    if not items:
        raise DataFormatError(root, f"at least one identity folder holding images ({', '.join(IMAGE_SUFFIXES)})",
                              got="none")  # fmt: skip
    return IdentityList(items, names)


def _train_list_line(text: str, path, line: int, data_dir: Path, marker: str) -> tuple[Path, int]:
    image, sep, label = text.rstrip(" \t").rpartition("  ")
    if not sep or not _INT.fullmatch(label) or int(label) >= MAX_CLASSES:
        raise DataFormatError(path, TRAIN_LIST_LINE, line=line, got=text[:120])
    normal = image.replace("\\", "/")
    at = normal.find(marker)
    if at < 0:
        raise DataFormatError(path, f"an image path containing {marker!r} ({TRAIN_LIST_LINE})", line=line,
                              got=image[:120])  # fmt: skip
    return safe_relative_path(data_dir, normal[at + len(marker) :], path, line), int(label)


def read_train_list(path, data_dir, *, marker: str = TRAIN_LIST_MARKER, bad=None) -> IdentityList:
    """``train.list`` lines -> ``(data_dir / <path after marker>, class)``.

    ``data_dir`` is the local ``image/`` folder (the part of each path after ``marker`` is joined to
    it). ``num_classes`` is the largest class + 1 (the margin head's width); ``class_names[k]`` is the
    folder of class ``k``'s first image. ``bad``: ``None``/"error" raises on a malformed line,
    "skip" (or a :class:`~kdface.data.validation.BadSamples`) leaves it out and counts it.
    """
    path = Path(path)
    bad = as_policy(bad)
    if not path.is_file():
        raise DataFormatError(path, f"a train.list file ({TRAIN_LIST_LINE})", got="missing")
    items: list[tuple[Path, int]] = []
    folders: dict[int, str] = {}
    for line, text in _text_lines(path):
        try:
            image, label = _train_list_line(text, path, line, Path(data_dir), marker)
        except DataFormatError as err:
            bad.handle(err)
            continue
        items.append((image, label))
        folders.setdefault(label, image.parent.name)
    if not items:
        raise DataFormatError(path, f"at least one valid line ({TRAIN_LIST_LINE})", got="none")
    names = [folders.get(k, "") for k in range(max(folders) + 1)]
    return IdentityList(items, names)


def write_train_list(path, items) -> Path:
    """Write ``items`` (``(absolute image path, class)``) as ``train.list`` lines, ``<path>  <class>``,
    as ``load_images_from_bin.py`` writes them (atomically)."""
    lines = []
    for image, label in items:
        image = str(image)
        if "\n" in image or "  " in image or int(label) < 0:
            raise ValueError(f"cannot write {image!r} with class {label} as a train.list line")
        lines.append(f"{image}  {int(label)}\n")
    return write_text(path, "".join(lines))


def _pair_line(text: str, path, line: int, image_dir: Path) -> tuple[Path, Path, bool]:
    fields = text.split()
    if len(fields) != 3 or fields[2] not in ("1", "-1"):
        raise DataFormatError(path, PAIRS_LINE, line=line, got=text[:120])
    left = safe_relative_path(image_dir, fields[0], path, line)
    right = safe_relative_path(image_dir, fields[1], path, line)
    return left, right, fields[2] == "1"


def read_pairs_txt(path, image_dir=None) -> PairList:
    """The pair list ``<name>.txt`` of an extracted evaluation set; images resolve in ``image_dir``
    (default: the folder ``<name>/`` beside the file). Every line is a pair (no header; see the
    module doc). A malformed line raises :class:`DataFormatError` naming ``file:line``: a pair list
    with a hole would shift the folds."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, f"a verification pair list ({PAIRS_LINE})", got="missing")
    image_dir = path.with_suffix("") if image_dir is None else Path(image_dir)
    left, right, issame = [], [], []
    for line, text in _text_lines(path):
        a, b, same = _pair_line(text, path, line, image_dir)
        left.append(a)
        right.append(b)
        issame.append(same)
    if not issame:
        raise DataFormatError(path, f"at least one pair ({PAIRS_LINE})", got="none")
    return PairList(left, right, np.array(issame, bool), str(path))


def write_pairs_txt(path, issame) -> Path:
    """The ``<name>.txt`` that ``load_images_from_bin.py`` writes for ``issame``: pair ``k`` is
    ``{2k+1:05d}.jpg {2k+2:05d}.jpg 1|-1``."""
    lines = [
        f"{2 * k + 1:05d}.jpg {2 * k + 2:05d}.jpg {1 if same else -1}\n" for k, same in enumerate(issame)
    ]
    return write_text(path, "".join(lines))


__all__ = [
    "IdentityList",
    "PairList",
    "read_identity_folders",
    "read_pairs_txt",
    "read_train_list",
    "write_pairs_txt",
    "write_train_list",
]
