"""FERPlus: FER2013's 35,887 grey 48 x 48 faces, relabelled by 10 taggers each (microsoft/FERPlus).

Two layouts, detected from what is on disk (``layout=`` forces one):

``"folders"``: Microsoft's generated layout (``generate_training_data.py``; the repository's own
``<root>/data/FER2013Train/...`` is accepted too)::

    <root>/FER2013Train/label.csv  + fer0000000.png ...
    <root>/FER2013Valid/label.csv  + ...
    <root>/FER2013Test/label.csv   + ...

  ``label.csv`` has no header; each row is ``fer0000000.png,"(0, 0, 48, 48)",v0,...,v9`` (image name,
  face box, the 10 vote counts of :data:`VOTE_COLUMNS`). The images lie beside it.

``"kaggle"``: the raw Kaggle files, images in memory::

    <root>/fer2013.csv      emotion,pixels,Usage      pixels: 2304 space-separated ints, 48 x 48 grey
    <root>/fer2013new.csv   Usage,Image name,neutral,happiness,...,unknown,NF

  ``fer2013new.csv`` holds one row per ``fer2013.csv`` row, in the same order (line ``n`` of one file is
  line ``n`` of the other); its ``Image name`` is empty for the images FERPlus dropped (not a bad
  sample). ``Usage``: ``Training`` -> ``train``, ``PublicTest`` -> ``valid``, ``PrivateTest`` -> ``test``.
  Samples carry ``image`` (``48 x 48 x 3`` uint8, the grey replicated) instead of ``image_path``.

Labels follow the official **majority vote** (spec C2, :func:`majority_label`); images without a
majority are left out by protocol and counted in ``stats`` (not bad samples). Samples are labelled in
kdface's class order (:data:`~kdface.tasks.expressions.labels.FERPLUS_TO_KDFACE`); keys are the image names
(``fer0000000.png``) in both layouts.

Splits: ``train`` (FER2013Train, 25,045 images after the vote), ``valid`` (FER2013Valid, 3,191) and
``test`` (FER2013Test, 3,137). The RAN/IGKD protocol trains on train + valid (28,236); combining splits
is the sources layer's job.

The Occlusion-FERPlus list (:func:`read_occlusion_list`, RAN, Wang et al. TIP 2020) picks 605 occluded
test images.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import numpy as np

from kdface.data.validation import as_policy, safe_relative_path
from kdface.errors import DataFormatError
from kdface.tasks.expressions.labels import (
    FERPLUS_TO_KDFACE,
    ExpressionSample,
    count,
    csv_fields,
    excerpt,
    image_file_exists,
    text_lines,
)

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                "unknown", "NF")  # fmt: skip
NUM_EMOTIONS = 8  # the vote columns before unknown and NF; FERPlus labels 0..7 index them
SPLITS = ("train", "valid", "test")
LAYOUTS = ("folders", "kaggle")
FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
LABEL_FILE = "label.csv"
LABEL_FIELDS = 2 + len(VOTE_COLUMNS)  # name, box, 10 votes
LABEL_FORMAT = 'fer0000000.png,"(0, 0, 48, 48)" and 10 integer vote counts (12 comma-separated fields)'
KAGGLE_PIXELS = "fer2013.csv"
KAGGLE_VOTES = "fer2013new.csv"
PIXEL_COLUMNS = ("pixels", "Usage")
NEW_COLUMNS = ("Usage", "Image name") + VOTE_COLUMNS
USAGE = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
IMAGE_SIDE = 48
OCCLUSION_LIST = "jianfei_occlusion_list.txt"
OCCLUSION_FORMAT = "'<FERPlus label 0-7>_<image name> <int> <occlusion code>', e.g. '1_fer0034656.png 8 0'"

_INT = re.compile(r"[+-]?[0-9]{1,9}")


# --------------------------------------------------------------------------- the vote


def majority_label(votes) -> int | None:
    """The FERPlus label (0..7, a :data:`VOTE_COLUMNS` index) of 10 vote counts, or ``None`` (dropped).

    The official "majority" rule (spec C2): counts of 1 or less are zeroed (outlier removal); the image
    is kept only if the largest count is more than half the remaining sum and is not ``unknown`` or
    ``NF``. A tie for the largest count, or exactly half, is therefore dropped.
    """
    counts = [int(v) if int(v) > 1 else 0 for v in votes]
    if len(counts) != len(VOTE_COLUMNS):
        raise ValueError(f"expected {len(VOTE_COLUMNS)} vote counts, got {len(counts)}")
    peak = max(counts)
    if not 2 * peak > sum(counts):  # peak > 0.5 * sum, in integers
        return None
    winner = counts.index(peak)
    return winner if winner < NUM_EMOTIONS else None


# --------------------------------------------------------------------------- text helpers


def _parse_votes(fields, path, line: int) -> tuple[int, ...]:
    votes = []
    for name, field in zip(VOTE_COLUMNS, fields, strict=True):
        text = field.strip()
        if not _INT.fullmatch(text):
            raise DataFormatError(
                path, f"an integer vote count for {name!r}", line=line, got=excerpt(field, 20)
            )
        value = int(text)
        if value < 0:
            raise DataFormatError(path, f"a non-negative vote count for {name!r}", line=line, got=text)
        votes.append(value)
    return tuple(votes)


def parse_pixels(text: str, path, line: int | None = None) -> np.ndarray:
    """FER2013's ``pixels`` field -> a ``48 x 48 x 3`` uint8 image (the grey replicated).

    Vectorised over the characters (FER2013 holds 35,887 of these 2304-number strings)."""
    n_pixels = IMAGE_SIDE * IMAGE_SIDE
    expected = f"{n_pixels} space-separated integers 0..255 (a {IMAGE_SIDE} x {IMAGE_SIDE} grey image)"
    chars = np.frombuffer(text.encode("utf-8", "replace"), np.uint8)
    digit = (chars >= ord("0")) & (chars <= ord("9"))
    if not np.all(digit | (chars == ord(" ")) | (chars == ord("\t"))):
        token = next((t for t in text.split() if not re.fullmatch(r"[0-9]+", t)), None)
        got = (
            "a separator other than space or tab"
            if token is None
            else f"a non-integer {excerpt(token, 20)!r}"
        )
        raise DataFormatError(path, expected, line=line, got=got)
    before = np.concatenate(([False], digit[:-1]))
    after = np.concatenate((digit[1:], [False]))
    starts, ends = np.flatnonzero(digit & ~before), np.flatnonzero(digit & ~after)
    if starts.size != n_pixels:
        raise DataFormatError(path, expected, line=line, got=f"{starts.size} values")
    if np.any(ends - starts >= 3):
        i = int(np.argmax(ends - starts >= 3))
        raise DataFormatError(
            path, expected, line=line, got=f"a value of {text[starts[i] : ends[i] + 1][:20]}"
        )
    positions = np.flatnonzero(digit)
    token = np.cumsum(digit & ~before)[positions] - 1
    power = ends[token] - positions  # 0 for the last digit of a token
    grey = np.bincount(token, weights=(chars[positions] - ord("0")) * 10.0**power, minlength=n_pixels)
    if grey.max() > 255:
        raise DataFormatError(path, expected, line=line, got=f"a value of {int(grey.max())}")
    grey = grey.astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)
    return np.repeat(grey[:, :, None], 3, axis=2)


# --------------------------------------------------------------------------- layouts


def detect_layout(root, layout: str | None = None) -> tuple[str, Path]:
    """``(layout, base folder)`` of a FERPlus tree (module doc); raises if neither layout is there."""
    root = Path(root)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown FERPlus layout {layout!r}; expected one of {list(LAYOUTS)}")
    for base in (root, root / "data"):
        if layout in (None, "folders") and any((base / folder).is_dir() for folder in FOLDERS.values()):
            return "folders", base
    if layout in (None, "kaggle") and ((root / KAGGLE_VOTES).is_file() or (root / KAGGLE_PIXELS).is_file()):
        return "kaggle", root
    raise DataFormatError(
        root,
        "a FERPlus tree: FER2013Train/, FER2013Valid/, FER2013Test/ with label.csv (Microsoft's layout), "
        f"or {KAGGLE_PIXELS} + {KAGGLE_VOTES} (Kaggle's)"
        + ("" if layout is None else f" ({layout!r} layout asked for)"),
    )


@dataclasses.dataclass
class _Row:
    """One annotation row before the vote: where it is and how to get its image."""

    name: str
    split: str
    votes: tuple[int, ...]
    path: Path  # the annotation file
    line: int
    image_path: Path | None = None  # "folders"
    pixels: str | None = None  # "kaggle": the raw pixels field, parsed only when kept
    pixels_path: Path | None = None

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.line}"


def _folder_rows(base: Path, split: str, bad, required: bool = True):
    folder = base / FOLDERS[split]
    path = folder / LABEL_FILE
    if not path.is_file():
        if not required:
            return
        raise DataFormatError(
            path, f"the FERPlus label file of split {split!r} ({FOLDERS[split]}/{LABEL_FILE})"
        )
    first = True
    for line_number, text in text_lines(path):
        if not text.strip():
            continue
        try:
            fields = csv_fields(text, path, line_number)
            if first and len(fields) == LABEL_FIELDS:
                first = False
                if [f.strip().lower() for f in fields[2:]] == [c.lower() for c in VOTE_COLUMNS]:
                    continue  # a header line (Microsoft's files have none)
            first = False
            if len(fields) != LABEL_FIELDS:
                raise DataFormatError(path, LABEL_FORMAT, line=line_number,
                                      got=f"{len(fields)} fields: {excerpt(text)}")  # fmt: skip
            votes = _parse_votes(fields[2:], path, line_number)
            name = fields[0].strip()
            image_path = safe_relative_path(folder, name, path, line_number)
        except DataFormatError as err:
            bad.handle(err)
            continue
        yield _Row(name, split, votes, path, line_number, image_path=image_path)


def _header(path: Path, text: str | None, required) -> tuple[dict[str, int], int]:
    fields = [] if text is None else [f.strip() for f in csv_fields(text, path, 1)]
    missing = [c for c in required if c not in fields]
    if missing:
        raise DataFormatError(path, f"a header line with the columns {', '.join(required)}", line=1,
                              got=excerpt(text or "", 120))  # fmt: skip
    return {name: fields.index(name) for name in required}, len(fields)


def _kaggle_rows(base: Path, splits, bad):
    """Rows of ``fer2013new.csv`` (with their ``fer2013.csv`` pixels) in ``splits``."""
    pixels_path, votes_path = base / KAGGLE_PIXELS, base / KAGGLE_VOTES
    for path, what in ((pixels_path, "emotion,pixels,Usage"), (votes_path, "Usage,Image name,<10 votes>")):
        if not path.is_file():
            raise DataFormatError(path, f"the FER2013/FERPlus csv file ({what}) beside {base / KAGGLE_VOTES}")
    pixel_lines, vote_lines = text_lines(pixels_path), text_lines(votes_path)
    pairs = itertools.zip_longest(pixel_lines, vote_lines, fillvalue=(None, None))
    (_, pixel_header), (_, vote_header) = next(pairs, ((None, None), (None, None)))
    pixel_cols, n_pixel_fields = _header(pixels_path, pixel_header, PIXEL_COLUMNS)
    vote_cols, n_vote_fields = _header(votes_path, vote_header, NEW_COLUMNS)
    vote_format = f"{n_vote_fields} comma-separated fields (Usage, Image name, 10 vote counts)"
    pixel_format = f"{n_pixel_fields} comma-separated fields (emotion, pixels, Usage)"
    for line_number, ((_, pixel_text), (_, vote_text)) in enumerate(pairs, start=2):
        pixel_blank = pixel_text is None or not pixel_text.strip()
        vote_blank = vote_text is None or not vote_text.strip()
        if pixel_blank and vote_blank:
            continue
        if pixel_text is None or vote_text is None:  # one file ended: the two no longer align
            short, other = (pixels_path, votes_path) if pixel_text is None else (votes_path, pixels_path)
            raise DataFormatError(short, f"a row for every row of {other.name} (the files align line for line)",
                                  line=line_number, got="end of file")  # fmt: skip
        try:
            fields = csv_fields(vote_text, votes_path, line_number)
            if len(fields) != n_vote_fields:
                raise DataFormatError(votes_path, vote_format, line=line_number,
                                      got=f"{len(fields)} fields: {excerpt(vote_text)}")  # fmt: skip
            usage = fields[vote_cols["Usage"]].strip()
            if usage not in USAGE:
                raise DataFormatError(votes_path, f"a Usage of {' / '.join(USAGE)}", line=line_number,
                                      got=excerpt(usage, 20))  # fmt: skip
            split = USAGE[usage]
            if split not in splits:
                continue
            pixel_fields = csv_fields(pixel_text, pixels_path, line_number)
            if len(pixel_fields) != n_pixel_fields:
                raise DataFormatError(pixels_path, pixel_format, line=line_number,
                                      got=f"{len(pixel_fields)} fields: {excerpt(pixel_text)}")  # fmt: skip
            pixel_usage = pixel_fields[pixel_cols["Usage"]].strip()
            if pixel_usage != usage:
                raise DataFormatError(pixels_path, f"Usage {usage!r} as on the same line of {votes_path.name}",
                                      line=line_number, got=excerpt(pixel_usage, 20))  # fmt: skip
            name = fields[vote_cols["Image name"]].strip()
            if not name:
                yield None  # dropped by FERPlus itself (not a face, or unusable)
                continue
            votes = _parse_votes([fields[vote_cols[c]] for c in VOTE_COLUMNS], votes_path, line_number)
        except DataFormatError as err:
            bad.handle(err)
            continue
        yield _Row(name, split, votes, votes_path, line_number,
                   pixels=pixel_fields[pixel_cols["pixels"]], pixels_path=pixels_path)  # fmt: skip


def _sample(row: _Row, code: int) -> ExpressionSample:
    """The sample of a kept row; a missing image or bad pixels raise :class:`DataFormatError`."""
    sample = ExpressionSample(
        key=row.name,
        label=FERPLUS_TO_KDFACE[code],
        attributes={"votes": row.votes, "ferplus_label": code, "split": row.split},
        origin=row.origin,
    )
    if row.image_path is not None:
        if not image_file_exists(row.image_path, row.path, row.line, row.name):
            raise DataFormatError(row.path, f"an image at {row.image_path}", line=row.line, got=row.name)
        sample.image_path = str(row.image_path)
    else:
        sample.image = parse_pixels(row.pixels, row.pixels_path, row.line)
    return sample


# --------------------------------------------------------------------------- readers


def read_split(root, split: str, bad=None, *, layout: str | None = None, stats: dict | None = None):
    """Yield the :class:`~kdface.tasks.expressions.labels.ExpressionSample` s of ``train``, ``valid`` or ``test``.

    Only images with a majority (:func:`majority_label`) are yielded, labelled in kdface's class order.
    ``bad`` is the :class:`~kdface.data.validation.BadSamples` policy for malformed lines and missing
    images (default: raise). ``stats``, when given, is a dict the reader counts into: ``rows`` (rows of
    the split), ``dropped_by_vote``, ``unnamed`` (Kaggle rows FERPlus gave no image name) and ``kept``.
    A missing annotation file, missing header columns or a split without samples always raise.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown FERPlus split {split!r}; expected one of {list(SPLITS)}")
    bad = as_policy(bad)
    layout, base = detect_layout(root, layout)
    if layout == "folders":
        rows, where = _folder_rows(base, split, bad), base / FOLDERS[split] / LABEL_FILE
    else:
        rows, where = _kaggle_rows(base, {split}, bad), base / KAGGLE_VOTES
    kept = 0
    for row in rows:
        count(stats, "rows")
        if row is None:
            count(stats, "unnamed")
            continue
        code = majority_label(row.votes)
        if code is None:
            count(stats, "dropped_by_vote")
            continue
        try:
            sample = _sample(row, code)
        except DataFormatError as err:
            bad.handle(err)
            continue
        kept += 1
        count(stats, "kept")
        yield sample
    if kept == 0:
        raise DataFormatError(where, f"at least one FERPlus image with a majority vote in split {split!r}",
                              got="none")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _ListEntry:
    label: int
    name: str
    column2: int
    code: int
    line: int


def occlusion_list_path(root, list_path=None) -> Path:
    """``list_path``, or the Occlusion-FERPlus list's default place ``<root>/{OCCLUSION_LIST}``."""
    return Path(root) / OCCLUSION_LIST if list_path is None else Path(list_path)


def has_occlusion_list(root, list_path=None) -> bool:
    """Whether the Occlusion-FERPlus list is there (the builders add an ``occlusion`` split if so)."""
    return occlusion_list_path(root, list_path).is_file()


def _parse_occlusion_line(text: str, path, line: int) -> _ListEntry:
    fields = text.split()
    if len(fields) != 3:
        raise DataFormatError(path, OCCLUSION_FORMAT, line=line, got=f"{len(fields)} fields: {excerpt(text)}")
    prefix, sep, name = fields[0].partition("_")
    if not sep or not name or not re.fullmatch(r"[0-9]", prefix) or int(prefix) >= NUM_EMOTIONS:
        raise DataFormatError(path, OCCLUSION_FORMAT + f" (a label 0..{NUM_EMOTIONS - 1} before '_')",
                              line=line, got=excerpt(fields[0], 40))  # fmt: skip
    for field in fields[1:]:
        if not re.fullmatch(r"[0-9]{1,6}", field):
            raise DataFormatError(path, OCCLUSION_FORMAT + " (non-negative integers in columns 2 and 3)",
                                  line=line, got=excerpt(field, 20))  # fmt: skip
    return _ListEntry(int(prefix), name, int(fields[1]), int(fields[2]), line)


def read_occlusion_list(root, list_path=None, bad=None, *, layout: str | None = None):
    """Yield the Occlusion-FERPlus samples of ``jianfei_occlusion_list.txt`` (default ``<root>/``).

    Each line ``1_fer0034656.png 8 0`` names a FERPlus label (before the first ``_``), an image, an
    integer (always 8) and an undocumented occlusion code (0..3, kept as ``attributes["occlusion_code"]``).
    The image is looked up in the test split, then valid, then train; the list label must equal the
    image's majority-vote label (the real list matches 605/605), otherwise the line is a bad sample.
    ``origin`` is the list line; ``attributes["label_origin"]`` the annotation row the label came from.
    """
    bad = as_policy(bad)
    list_path = occlusion_list_path(root, list_path)
    if not list_path.is_file():
        raise DataFormatError(list_path, f"the Occlusion-FERPlus list ({OCCLUSION_LIST})")
    entries = []
    for line_number, text in text_lines(list_path):
        if not text.strip():
            continue
        try:
            entries.append(_parse_occlusion_line(text, list_path, line_number))
        except DataFormatError as err:
            bad.handle(err)
    if not entries:
        raise DataFormatError(list_path, "at least one Occlusion-FERPlus entry", got="none")
    layout, base = detect_layout(root, layout)
    wanted = {entry.name for entry in entries}
    found: dict[str, _Row] = {}
    if layout == "folders":
        for split in ("test", "valid", "train"):
            if not wanted - found.keys():
                break
            for row in _folder_rows(base, split, bad, required=split == "test"):
                if row.name in wanted:
                    found.setdefault(row.name, row)
    else:
        priority = {"test": 0, "valid": 1, "train": 2}
        for row in _kaggle_rows(base, set(SPLITS), bad):
            if row is not None and row.name in wanted:
                if row.name not in found or priority[row.split] < priority[found[row.name].split]:
                    found[row.name] = row
    for entry in entries:
        row = found.get(entry.name)
        try:
            if row is None:
                raise DataFormatError(list_path, "an image of FERPlus (test, valid or train split)",
                                      line=entry.line, got=entry.name)  # fmt: skip
            code = majority_label(row.votes)
            if code != entry.label:
                vote = "no majority (dropped)" if code is None else f"{code} ({VOTE_COLUMNS[code]})"
                raise DataFormatError(
                    list_path,
                    f"the label of {entry.name} by the FERPlus majority vote ({row.origin}): {vote}",
                    line=entry.line,
                    got=f"{entry.label} ({VOTE_COLUMNS[entry.label]})",
                )
            sample = _sample(row, code)
        except DataFormatError as err:
            bad.handle(err)
            continue
        sample.attributes.update(occlusion_code=entry.code, label_origin=row.origin)
        sample.origin = f"{list_path}:{entry.line}"
        yield sample
