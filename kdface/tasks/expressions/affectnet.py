"""AffectNet: in-the-wild faces with 11 expression codes, of which 8 are emotions (spec C2).

Two releases, detected from what is on disk (``layout=`` forces one):

``"csv"``: the original release::

    <root>/Manually_Annotated_file_lists/training.csv
    <root>/Manually_Annotated_file_lists/validation.csv
    <root>/Manually_Annotated_Images/<subDirectory_filePath>

  with the header ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,
  expression,valence,arousal`` (a file without the header line is read in this column order). The
  face box is ``(face_x, face_y, face_x + face_width, face_y + face_height)`` pixels; the
  ``;``-separated landmarks are not read. Keys are ``subDirectory_filePath``.

``"npy"``: the newer release of face crops (no box)::

    <root>/train_set/images/N.jpg + <root>/train_set/annotations/N_exp.npy
    <root>/val_set/images/N.jpg   + <root>/val_set/annotations/N_exp.npy

  ``N_exp.npy`` holds the expression code (a 0-d or 1-element array of a string or an integer; read
  without pickle). Keys are the image file names (``N.jpg``).

Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt, mapped
to kdface's class order (:data:`~kdface.tasks.expressions.labels.AFFECTNET_TO_KDFACE`). 8 None, 9 Uncertain
and 10 Non-face are left out by protocol, as is 7 Contempt with ``num_classes=7`` (counted in
``stats``, not bad samples). Splits: ``train`` and ``val`` (balanced, 500 per class).

The Occlusion-AffectNet list (:func:`read_occlusion_list`, RAN, Wang et al. TIP 2020) picks 683
occluded validation images.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path, PurePosixPath

import numpy as np

from kdface.data.validation import as_policy, safe_relative_path
from kdface.errors import DataFormatError
from kdface.tasks.expressions.labels import (
    AFFECTNET_TO_KDFACE,
    NUM_BASIC,
    ExpressionSample,
    class_names,
    count,
    csv_fields,
    excerpt,
    image_file_exists,
    text_lines,
)

SPLITS = ("train", "val")
LAYOUTS = ("csv", "npy")
CSV_DIR = "Manually_Annotated_file_lists"
CSV_FILES = {"train": "training.csv", "val": "validation.csv"}
IMAGE_DIR = "Manually_Annotated_Images"
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")  # fmt: skip
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
SET_DIRS = {"train": "train_set", "val": "val_set"}
NPY_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
NPY_SUFFIX = "_exp.npy"
MAX_NPY_BYTES = 1 << 16  # an expression file is ~130 bytes
EMOTION_NAMES = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
DROPPED_CODES = {8: "None", 9: "Uncertain", 10: "Non-face"}
CONTEMPT = 7
OCCLUSION_LIST = "occlusion_affectnet_list.txt"
OCCLUSION_FORMAT = "'val/<AffectNet label 0-7>/<image id>/'"
# No AffectNet image is this large; beyond it a box number is garbage.
COORDINATE_LIMIT = 1e6

_INT = re.compile(r"\s*[+-]?[0-9]{1,9}\s*")


def _check_code(code: int, path, line: int | None) -> int:
    if not 0 <= code <= max(DROPPED_CODES):
        raise DataFormatError(path, f"an expression code 0..{max(DROPPED_CODES)}", line=line, got=str(code))
    return code


def dropped(code: int, num_classes: int) -> str | None:
    """Why an expression code is left out by protocol (``None``: kept)."""
    if code in DROPPED_CODES:
        return DROPPED_CODES[code]
    if code == CONTEMPT and num_classes == NUM_BASIC:
        return "Contempt"
    return None


# --------------------------------------------------------------------------- layouts


def detect_layout(root, layout: str | None = None) -> str:
    """``"csv"`` or ``"npy"`` (module doc); raises if neither layout is under ``root``."""
    root = Path(root)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown AffectNet layout {layout!r}; expected one of {list(LAYOUTS)}")
    if layout in (None, "csv") and (root / CSV_DIR).is_dir():
        return "csv"
    if layout in (None, "npy") and any((root / d).is_dir() for d in SET_DIRS.values()):
        return "npy"
    raise DataFormatError(
        root,
        f"an AffectNet tree: {CSV_DIR}/ + {IMAGE_DIR}/, or train_set/ and val_set/ with images/ and annotations/"
        + ("" if layout is None else f" ({layout!r} layout asked for)"),
    )


@dataclasses.dataclass
class _Row:
    """One annotation before the protocol's filter: its code, image and (csv) unparsed box fields."""

    key: str
    code: int
    image_path: Path
    path: Path  # the annotation (csv file or .npy file)
    line: int | None
    box_fields: tuple[str, ...] | None = None
    attributes: dict = dataclasses.field(default_factory=dict)

    @property
    def origin(self) -> str:
        return str(self.path) if self.line is None else f"{self.path}:{self.line}"

    @property
    def stem(self) -> str:
        return PurePosixPath(self.key.replace("\\", "/")).stem


def _float_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _csv_rows(root: Path, split: str, bad):
    path = root / CSV_DIR / CSV_FILES[split]
    if not path.is_file():
        raise DataFormatError(
            path, f"the AffectNet annotation file of split {split!r} ({CSV_DIR}/{CSV_FILES[split]})"
        )
    image_root = root / IMAGE_DIR
    cols, n_fields = None, len(COLUMNS)
    for line_number, text in text_lines(path):
        if not text.strip():
            continue
        try:
            fields = csv_fields(text, path, line_number)
        except DataFormatError as err:
            bad.handle(err)
            continue
        if cols is None:
            if fields and fields[0].strip() == COLUMNS[0]:  # the header line
                names = [f.strip() for f in fields]
                missing = [c for c in COLUMNS if c not in names]
                if missing:  # a whole-file problem, not a bad sample
                    raise DataFormatError(path, f"a header line with the columns {', '.join(COLUMNS)}",
                                          line=line_number, got=f"missing {', '.join(missing)}")  # fmt: skip
                cols, n_fields = {c: names.index(c) for c in COLUMNS}, len(names)
                continue
            cols = {c: i for i, c in enumerate(COLUMNS)}  # no header: the documented order
        try:
            if len(fields) != n_fields:
                raise DataFormatError(path, f"{n_fields} comma-separated fields ({', '.join(COLUMNS)})",
                                      line=line_number, got=f"{len(fields)} fields: {excerpt(text)}")  # fmt: skip
            expression = fields[cols["expression"]]
            if not _INT.fullmatch(expression):
                raise DataFormatError(path, "an integer expression code", line=line_number,
                                      got=excerpt(expression, 20))  # fmt: skip
            code = _check_code(int(expression), path, line_number)
            rel = fields[cols["subDirectory_filePath"]].strip()
            image_path = safe_relative_path(image_root, rel, path, line_number)
        except DataFormatError as err:
            bad.handle(err)
            continue
        attributes = {
            "valence": _float_or_none(fields[cols["valence"]]),
            "arousal": _float_or_none(fields[cols["arousal"]]),
        }
        box_fields = tuple(fields[cols[c]] for c in BOX_COLUMNS)
        yield _Row(rel, code, image_path, path, line_number, box_fields, attributes)


def _parse_box(row: _Row) -> tuple[float, float, float, float]:
    values = []
    for name, field in zip(BOX_COLUMNS, row.box_fields, strict=True):
        try:
            value = float(field)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or abs(value) > COORDINATE_LIMIT:
            raise DataFormatError(row.path, f"a number for {name} (finite, within +-{COORDINATE_LIMIT:.0e})",
                                  line=row.line, got=excerpt(field, 20))  # fmt: skip
        values.append(value)
    x, y, width, height = values
    if width <= 0 or height <= 0:
        raise DataFormatError(row.path, "a face box of positive face_width and face_height", line=row.line,
                              got=f"{width:g} x {height:g}")  # fmt: skip
    return (x, y, x + width, y + height)


def load_expression(path) -> int:
    """The expression code in an ``N_exp.npy`` file (a 0-d or 1-element array of a string or int)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataFormatError(path, "a readable .npy file", got=exc.strerror) from None
    if size > MAX_NPY_BYTES:
        raise DataFormatError(path, f"a small .npy file (an expression code; at most {MAX_NPY_BYTES} bytes)",
                              got=f"{size} bytes")  # fmt: skip
    try:
        with open(path, "rb") as handle:
            value = np.load(handle, allow_pickle=False)
    except (ValueError, TypeError, OSError, EOFError, SyntaxError, KeyError, IndexError, OverflowError,
            MemoryError) as exc:  # fmt: skip
        raise DataFormatError(path, "a .npy array (no pickle) holding the expression code",
                              got=f"{type(exc).__name__}: {excerpt(str(exc), 80)}") from None  # fmt: skip
    expected = "a 0-d or 1-element array holding an integer expression code (string or int)"
    if not isinstance(value, np.ndarray) or value.size != 1 or value.ndim > 1:
        shape = getattr(value, "shape", type(value).__name__)
        raise DataFormatError(path, expected, got=f"shape {shape}")
    item = value.reshape(()).item()
    if isinstance(item, bytes):
        item = item.decode("ascii", errors="replace")
    if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
        code = int(item)
    elif isinstance(item, float) and item.is_integer():
        code = int(item)
    elif isinstance(item, str) and _INT.fullmatch(item):
        code = int(item)
    else:
        raise DataFormatError(path, expected, got=f"{value.dtype}: {excerpt(repr(item), 40)}")
    return _check_code(code, path, None)


def _sort_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() and len(stem) < 18 else (1, 0, stem)


def _npy_rows(root: Path, split: str, bad):
    folder = root / SET_DIRS[split]
    images_dir, annotations_dir = folder / "images", folder / "annotations"
    for d in (images_dir, annotations_dir):
        if not d.is_dir():
            raise DataFormatError(
                d, f"the AffectNet folder of split {split!r} ({SET_DIRS[split]}/images, annotations)"
            )
    images = {}
    for p in images_dir.iterdir():
        if p.suffix.lower() in NPY_IMAGE_EXTENSIONS:
            images.setdefault(p.stem, p)
    annotations = {
        p.name[: -len(NPY_SUFFIX)]: p for p in annotations_dir.iterdir() if p.name.endswith(NPY_SUFFIX)
    }
    for stem in sorted(images.keys() | annotations.keys(), key=_sort_key):
        try:
            if stem not in annotations:
                raise DataFormatError(images[stem], f"an expression file {annotations_dir / (stem + NPY_SUFFIX)}",
                                      got="missing")  # fmt: skip
            code = load_expression(annotations[stem])
        except DataFormatError as err:
            bad.handle(err)
            continue
        image_path = images.get(stem, images_dir / f"{stem}.jpg")
        yield _Row(image_path.name, code, image_path, annotations[stem], None)


def _rows(root, split: str, bad, layout: str | None):
    layout = detect_layout(root, layout)
    if layout == "csv":
        return _csv_rows(Path(root), split, bad), Path(root) / CSV_DIR / CSV_FILES[split], layout
    return _npy_rows(Path(root), split, bad), Path(root) / SET_DIRS[split], layout


def _sample(row: _Row) -> ExpressionSample:
    """The sample of a kept row; a bad box or a missing image raise :class:`DataFormatError`."""
    box = None if row.box_fields is None else _parse_box(row)
    if not image_file_exists(row.image_path, row.path, row.line, row.key):
        raise DataFormatError(row.path, f"an image at {row.image_path}", line=row.line, got=row.key)
    return ExpressionSample(
        key=row.key,
        label=AFFECTNET_TO_KDFACE[row.code],
        image_path=str(row.image_path),
        box=box,
        attributes={"affectnet_label": row.code, **row.attributes},
        origin=row.origin,
    )


# --------------------------------------------------------------------------- readers


def read_split(root, split: str, num_classes: int = 8, bad=None, *, layout: str | None = None,
               stats: dict | None = None):  # fmt: skip
    """Yield the :class:`~kdface.tasks.expressions.labels.ExpressionSample` s of ``train`` or ``val``.

    ``num_classes`` 8 keeps Contempt, 7 drops it. ``bad`` is the
    :class:`~kdface.data.validation.BadSamples` policy for malformed lines, unreadable ``.npy`` files and
    missing images (default: raise). ``stats``, when given, is a dict the reader counts into: ``rows``,
    ``kept`` and ``dropped_<reason>`` (``dropped_None``, ``dropped_Uncertain``, ``dropped_Non-face``,
    ``dropped_Contempt``). A missing annotation file or folder, missing header columns or a split
    without samples always raise.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown AffectNet split {split!r}; expected one of {list(SPLITS)}")
    class_names(num_classes)  # 7 or 8
    bad = as_policy(bad)
    rows, where, _ = _rows(root, split, bad, layout)
    kept = 0
    for row in rows:
        count(stats, "rows")
        reason = dropped(row.code, num_classes)
        if reason is not None:
            count(stats, f"dropped_{reason}")
            continue
        try:
            sample = _sample(row)
        except DataFormatError as err:
            bad.handle(err)
            continue
        kept += 1
        count(stats, "kept")
        yield sample
    if kept == 0:
        raise DataFormatError(where, f"at least one AffectNet sample of {num_classes} classes in split {split!r}",
                              got="none")  # fmt: skip


def occlusion_list_path(root, list_path=None) -> Path:
    """``list_path``, or the Occlusion-AffectNet list's default place ``<root>/{OCCLUSION_LIST}``."""
    return Path(root) / OCCLUSION_LIST if list_path is None else Path(list_path)


def has_occlusion_list(root, list_path=None) -> bool:
    """Whether the Occlusion-AffectNet list is there (the builders add an ``occlusion`` split if so)."""
    return occlusion_list_path(root, list_path).is_file()


def _parse_occlusion_line(text: str, path, line: int) -> tuple[int, str]:
    parts = text.strip().rstrip("/").split("/")
    if len(parts) != 3 or parts[0] != "val" or not re.fullmatch(r"[0-7]", parts[1]) or not parts[2].strip():
        raise DataFormatError(path, OCCLUSION_FORMAT, line=line, got=excerpt(text))
    return int(parts[1]), parts[2].strip()


def read_occlusion_list(root, list_path=None, num_classes: int = 8, bad=None, *, layout: str | None = None,
                        stats: dict | None = None):  # fmt: skip
    """Yield the Occlusion-AffectNet samples of ``occlusion_affectnet_list.txt`` (default ``<root>/``).

    Each line ``val/<label>/<id>/`` names an AffectNet label (0..7, AffectNet's coding) and the file
    stem of a validation image. The image's own expression code must equal the list label, otherwise
    the line is a bad sample. With ``num_classes=7`` the Contempt lines are left out (``stats``
    counts ``dropped_Contempt``). ``origin`` is the list line; ``attributes["label_origin"]`` the
    annotation the label came from. The ``npy`` release renames images to numbers, so the list resolves
    only in the ``csv`` layout.
    """
    class_names(num_classes)
    bad = as_policy(bad)
    list_path = occlusion_list_path(root, list_path)
    if not list_path.is_file():
        raise DataFormatError(list_path, f"the Occlusion-AffectNet list ({OCCLUSION_LIST})")
    entries = []
    for line_number, text in text_lines(list_path):
        if not text.strip():
            continue
        try:
            entries.append((line_number, *_parse_occlusion_line(text, list_path, line_number)))
        except DataFormatError as err:
            bad.handle(err)
    if not entries:
        raise DataFormatError(list_path, "at least one Occlusion-AffectNet entry", got="none")
    wanted = {stem for _, _, stem in entries}
    rows, _, layout = _rows(root, "val", bad, layout)
    found: dict[str, _Row] = {}
    for row in rows:
        if row.stem in wanted:
            found.setdefault(row.stem, row)
    hint = " (the npy release names images by number; use the csv release)" if layout == "npy" else ""
    for line_number, label, stem in entries:
        row = found.get(stem)
        try:
            if row is None:
                raise DataFormatError(list_path, f"an image of the AffectNet validation split{hint}",
                                      line=line_number, got=stem)  # fmt: skip
            if row.code != label:
                own = f"{row.code} ({EMOTION_NAMES[row.code] if row.code < 8 else DROPPED_CODES[row.code]})"
                raise DataFormatError(list_path, f"the label of {stem} in {row.origin}: {own}",
                                      line=line_number, got=f"{label} ({EMOTION_NAMES[label]})")  # fmt: skip
            reason = dropped(label, num_classes)
            if reason is not None:
                count(stats, f"dropped_{reason}")
                continue
            sample = _sample(row)
        except DataFormatError as err:
            bad.handle(err)
            continue
        sample.attributes["label_origin"] = row.origin
        sample.origin = f"{list_path}:{line_number}"
        yield sample
