"""CK+ (the Extended Cohn-Kanade dataset) read as neutral/expressive pairs of one subject.

On-disk layout (the real release's zips unpacked side by side; SynthFaces writes the same tree,
:mod:`kdface.data.synthfaces`)::

    <root>/cohn-kanade-images/S005/001/S005_001_00000001.png ... S005_001_00000011.png
    <root>/Emotion/S005/001/S005_001_00000011_emotion.txt      one number, "   3.0000000e+00"
    <root>/Landmarks/S005/001/S005_001_00000001_landmarks.txt  68 lines "x y" (optional, see "Face box")

A sequence (``S005/001``) goes from a neutral onset (frame 1) to the peak of one posed expression;
frames are numbered ``1..n`` without gaps. A sequence that carries an emotion label has one
``*_emotion.txt`` named after its peak frame, holding a CK+ code 1 anger, 2 contempt, 3 disgust,
4 fear, 5 happy, 6 sadness, 7 surprise (0 neutral exists in the coding but never labels a sequence).
Codes become kdface classes at the boundary (:data:`~kdface.tasks.expressions.labels.CKPLUS_TO_KDFACE`);
CK+ is an 8-class dataset in kdface's order (contempt is class 7).

Protocol (spec ``vitse_doe_fer.md`` §2.4)
-----------------------------------------
* **Expression pairs**: for every labelled sequence, ``(onset frame, target)`` for each of the last
  ``peak_frames`` (default 3) frames up to the labelled peak, with the sequence's label. The onset is
  never a target (a 2-frame sequence gives one pair).
* **Neutral pairs** (``neutral_pairs=True``, the optional 8th class): for each sequence of a subject,
  its onset with the next sequence's onset (the subject's sequences in order, the last with the
  first; a subject with one sequence pairs its onset with itself), labelled neutral.
* **Pairs never cross subjects**, by construction: pairs are built by :func:`subject_pairs` from one
  subject's sequences only, and a frame is only accepted inside the folder its name names
  (``S005/001/S005_001_*``), so a misplaced file cannot put another person into a pair.
* **Folds**: subject-independent ``folds``-fold cross-validation (default 10). The subject folders
  under ``cohn-kanade-images/`` are sorted by name and subject ``i`` of that list goes to fold
  ``i % folds``: deterministic, balanced in subjects (123 subjects: folds of 12 or 13), independent of
  labels and of bad samples. A fold's test set is its subjects' pairs; its training set the other
  folds' (:func:`subject_folds`).

Face box
--------
CK+ frames are 640 x 490 (a few 640 x 480 / 720 x 480) photographs with the face in the middle, not
face crops, so each pair carries the face box of each frame. A sequence has **one box, taken from its
onset frame** and used for every frame of it: a sequence lasts about a second with the head still,
and one window for the neutral and the peak frame makes their difference the expression, not a
shifted crop. The box comes from the onset frame's 68 points in ``Landmarks/`` (CK+'s AAM points,
read as 1-based pixel centres like 300W's): the points' bounding box, raised by
``BOX_RAISE`` of its height to take in the forehead, made square with side ``BOX_SCALE`` times its
longer side. Without a ``Landmarks/`` folder, the largest face OpenCV's Haar cascade finds in the
onset frame is the box (:func:`kdface.report.detect_faces`); no face found is a bad sample.

Bad input
---------
Per-sequence problems are :class:`~kdface.errors.DataFormatError` s handed to the ``bad`` policy
(raised, or the sequence left out and counted): a file name that does not match its folder, frames
missing from ``1..n``, a one-frame sequence, an emotion file that is not one number, not an integer
code 1..7, names a frame the sequence lacks, or labels a sequence without frames; a landmark file
that is not 68 finite ``x y`` lines. Unreadable images are bad pairs, found by :func:`validated_pairs`.
Entries under ``cohn-kanade-images/`` or ``Emotion/`` that are no subject folder are recorded once for
the whole dataset by :func:`subject_folders`. A missing ``cohn-kanade-images/`` or ``Emotion/`` folder
always raises. Names starting with ``.`` (``.DS_Store``) are ignored everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from kdface.data.validation import as_policy, check_face_box, check_image_file
from kdface.errors import DataFormatError
from kdface.tasks.expressions.labels import CKPLUS_TO_KDFACE, CLASS_NAMES, excerpt

IMAGE_DIR = "cohn-kanade-images"
EMOTION_DIR = "Emotion"
LANDMARK_DIR = "Landmarks"
NUM_CLASSES = len(CLASS_NAMES)  # contempt is a CK+ label; neutral has examples with neutral pairs only
DEFAULT_FOLDS = 10
DEFAULT_PEAK_FRAMES = 3
NEUTRAL = CKPLUS_TO_KDFACE[0]
CKPLUS_CODES = {1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happy", 6: "sadness", 7: "surprise"}
NUM_LANDMARKS = 68
LANDMARK_OFFSET = 0.5  # 1-based pixel centres -> kdface pixels (origin at the image corner)
COORDINATE_LIMIT = 1e6  # no frame is this large; beyond it a number is garbage (and overflows float32)
BOX_SCALE = 1.25
BOX_RAISE = 0.1

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_SUBJECT = re.compile(r"S[0-9]{3}")
_SEQUENCE = re.compile(r"[0-9]{3}")
_FRAME = re.compile(r"(S[0-9]{3})_([0-9]{3})_([0-9]{8})")
_EMOTION = re.compile(r"(S[0-9]{3})_([0-9]{3})_([0-9]{8})_emotion\.txt")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")  # ASCII only
EMOTION_FORMAT = "one number, a CK+ emotion code 1..7 (e.g. '   3.0000000e+00')"
LANDMARK_FORMAT = f"{NUM_LANDMARKS} lines of two numbers 'x y'"


@dataclasses.dataclass(frozen=True)
class Frame:
    """One image of a sequence: ``number`` is its 1-based position (from its name)."""

    path: str
    subject: str
    sequence: str
    number: int

    @property
    def name(self) -> str:
        """CK+'s frame name without extension, e.g. ``S005_001_00000011``."""
        return f"{self.subject}_{self.sequence}_{self.number:08d}"


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One subject's sequence: ``frames`` in order (``frames[0]`` the neutral onset), the CK+ emotion
    ``code`` (``None``: unlabelled) and ``peak``, the index of the frame the emotion file names (the
    last frame when unlabelled)."""

    subject: str
    sequence: str
    frames: tuple[Frame, ...]
    code: int | None = None
    peak: int = -1
    emotion_file: str | None = None

    @property
    def folder(self) -> str:
        return f"{self.subject}/{self.sequence}"

    @property
    def label(self) -> int | None:
        """The kdface class of the sequence's emotion, ``None`` when unlabelled."""
        return None if self.code is None else CKPLUS_TO_KDFACE[self.code]

    @property
    def onset(self) -> Frame:
        return self.frames[0]

    def peak_frames(self, count: int) -> tuple[Frame, ...]:
        """The last ``count`` frames up to the peak (fewer in a short sequence: never the onset)."""
        peak = self.peak % len(self.frames)
        return self.frames[max(1, peak - count + 1) : peak + 1]


@dataclasses.dataclass(frozen=True)
class PairSample:
    """A neutral image and a target image of **one** subject, the target's kdface ``label``, each
    frame's face box ``(x0, y0, x1, y1)`` (kdface pixels) and the subject's ``fold``; ``origin`` is the
    emotion file (expression pairs) or the onset frame (neutral pairs), for error messages."""

    key: str
    label: int
    subject: str
    neutral: Frame
    target: Frame
    neutral_box: tuple[float, float, float, float]
    target_box: tuple[float, float, float, float]
    fold: int
    origin: str

    @property
    def sequence(self) -> str:
        """The target's sequence folder, ``S005/001``."""
        return f"{self.target.subject}/{self.target.sequence}"


# --------------------------------------------------------------------------- the tree


def _visible(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def _require_folder(root: Path, name: str) -> Path:
    folder = root / name
    if not folder.is_dir():
        raise DataFormatError(
            folder,
            f"CK+'s {name}/ folder ({IMAGE_DIR}/ from extended-cohn-kanade-images.zip, {EMOTION_DIR}/ from "
            f"Emotion_labels.zip, unpacked side by side)",
            got="missing",
        )
    return folder


def subject_folders(root, bad=None) -> list[str]:
    """The subject folders (``S005``, ...) under ``cohn-kanade-images/``, sorted.

    Anything else there, and an ``Emotion/`` entry without its subject's image folder, is a bad
    sample of the whole dataset (recorded once, whichever fold is read).
    """
    bad = as_policy(bad)
    root = Path(root)
    images = _require_folder(root, IMAGE_DIR)
    emotions = _require_folder(root, EMOTION_DIR)
    subjects = []
    for entry in _visible(images):
        if entry.is_dir() and _SUBJECT.fullmatch(entry.name):
            subjects.append(entry.name)
        else:
            bad.handle(
                DataFormatError(entry, "a subject folder named S + 3 digits (e.g. S005)", got=entry.name)
            )
    for entry in _visible(emotions):
        if not (entry.is_dir() and _SUBJECT.fullmatch(entry.name)):
            bad.handle(
                DataFormatError(entry, "a subject folder named S + 3 digits (e.g. S005)", got=entry.name)
            )
        elif entry.name not in subjects:
            bad.handle(
                DataFormatError(entry, f"the subject's frames in {images / entry.name}", got="missing")
            )
    return subjects


def subject_folds(subjects: Iterable[str], folds: int = DEFAULT_FOLDS) -> dict[str, int]:
    """``{subject: fold}``: the subjects sorted by name, subject ``i`` in fold ``i % folds``."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    return {subject: i % folds for i, subject in enumerate(sorted(subjects))}


def dataset_folds(root, folds: int = DEFAULT_FOLDS, bad=None) -> dict[str, int]:
    """``{subject: fold}`` of the subject folders in ``root`` (:func:`subject_folders`,
    :func:`subject_folds`); fewer subjects than folds always raises."""
    subjects = subject_folders(root, bad)
    if len(subjects) < folds:
        raise DataFormatError(Path(root) / IMAGE_DIR, f"at least {folds} subject folders for {folds}-fold "
                              "subject-independent cross-validation", got=str(len(subjects)))  # fmt: skip
    return subject_folds(subjects, folds)


def read_emotion_file(path) -> int:
    """The CK+ emotion code (1..7) an ``*_emotion.txt`` holds."""
    text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    lines = [
        (i, line) for i, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1) if line.strip()
    ]
    if not lines:
        raise DataFormatError(path, EMOTION_FORMAT, got="an empty file")
    if len(lines) > 1:
        raise DataFormatError(
            path, EMOTION_FORMAT, line=lines[1][0], got=f"a second line: {excerpt(lines[1][1])}"
        )
    line, content = lines[0]
    fields = content.split()
    if len(fields) != 1 or not _NUMBER.fullmatch(fields[0]):
        raise DataFormatError(path, EMOTION_FORMAT, line=line, got=excerpt(content))
    value = float(fields[0])
    if not math.isfinite(value) or value != int(value) or int(value) not in CKPLUS_CODES:
        codes = ", ".join(f"{code} {name}" for code, name in CKPLUS_CODES.items())
        raise DataFormatError(path, f"a CK+ emotion code 1..7 ({codes})", line=line, got=fields[0])
    return int(value)


def read_landmarks(path) -> np.ndarray:
    """A CK+ ``*_landmarks.txt``: ``(68, 2)`` float32 kdface pixels."""
    text = Path(path).read_bytes().decode("utf-8-sig", errors="replace")
    lines = [
        (i, line) for i, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1) if line.strip()
    ]
    if len(lines) != NUM_LANDMARKS:
        where = lines[NUM_LANDMARKS][0] if len(lines) > NUM_LANDMARKS else None
        raise DataFormatError(path, LANDMARK_FORMAT, line=where, got=f"{len(lines)} lines")
    points = np.empty((NUM_LANDMARKS, 2), np.float64)
    for k, (line, content) in enumerate(lines):
        fields = content.split()
        if len(fields) != 2 or not all(_NUMBER.fullmatch(f) for f in fields):
            raise DataFormatError(path, "two numbers 'x y'", line=line, got=excerpt(content))
        points[k] = [float(f) for f in fields]
        if not np.all(np.abs(points[k]) < COORDINATE_LIMIT):
            raise DataFormatError(
                path, f"coordinates within +-{COORDINATE_LIMIT:g}", line=line, got=excerpt(content)
            )
    return (points - LANDMARK_OFFSET).astype(np.float32)


def landmark_box(points) -> tuple[float, float, float, float]:
    """The face box of 68 points (module doc, "Face box")."""
    points = np.asarray(points, np.float64)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    side = BOX_SCALE * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - BOX_RAISE * (y1 - y0)
    return (float(cx - side / 2), float(cy - side / 2), float(cx + side / 2), float(cy + side / 2))


def _frames(folder: Path, subject: str, sequence: str) -> tuple[Frame, ...]:
    """The sequence's frames in order; a name that does not match the folder, a duplicate frame number
    or a gap in ``1..n`` raises."""
    frames: dict[int, Frame] = {}
    for entry in _visible(folder):
        match = _FRAME.fullmatch(entry.stem)
        if not entry.is_file() or entry.suffix.lower() not in IMAGE_SUFFIXES or not match:
            raise DataFormatError(
                entry, f"a frame named {subject}_{sequence}_<8-digit frame number>.png", got=entry.name
            )
        if match.group(1, 2) != (subject, sequence):
            raise DataFormatError(entry, f"a frame of {subject}/{sequence} (named {subject}_{sequence}_...)",
                                  got=entry.name)  # fmt: skip
        number = int(match.group(3))
        if number in frames:
            raise DataFormatError(
                entry, "one image per frame number", got=f"{entry.name} and {Path(frames[number].path).name}"
            )
        frames[number] = Frame(str(entry), subject, sequence, number)
    if len(frames) < 2:
        raise DataFormatError(
            folder,
            "a sequence of at least 2 frames (a neutral onset and a peak)",
            got=f"{len(frames)} frame(s)",
        )
    missing = sorted(set(range(1, len(frames) + 1)) - set(frames))
    if missing:
        raise DataFormatError(folder, f"frames numbered 1..{max(frames)} without gaps",
                              got=f"frame {missing[0]:08d} missing")  # fmt: skip
    return tuple(frames[n] for n in sorted(frames))


def _emotion(folder: Path, subject: str, sequence: str) -> tuple[Path | None, int | None]:
    """The sequence's emotion file (``None``: unlabelled) and the frame number it names."""
    if not folder.is_dir():
        return None, None
    files = _visible(folder)
    for entry in files:
        match = _EMOTION.fullmatch(entry.name)
        if not entry.is_file() or not match:
            raise DataFormatError(entry, f"an emotion file named {subject}_{sequence}_<peak frame>_emotion.txt",
                                  got=entry.name)  # fmt: skip
        if match.group(1, 2) != (subject, sequence):
            raise DataFormatError(entry, f"the emotion file of {subject}/{sequence}", got=entry.name)
    if len(files) > 1:
        raise DataFormatError(folder, "one emotion file per sequence", got=", ".join(f.name for f in files))
    if not files:
        return None, None
    return files[0], int(_EMOTION.fullmatch(files[0].name).group(3))


def read_subject(root, subject: str, bad=None) -> list[Sequence]:
    """The subject's sequences in order; a bad sequence goes to ``bad`` (module doc)."""
    bad = as_policy(bad)
    root = Path(root)
    images, emotions = root / IMAGE_DIR / subject, root / EMOTION_DIR / subject
    sequences = []
    for entry in _visible(images):
        if not (entry.is_dir() and _SEQUENCE.fullmatch(entry.name)):
            bad.handle(
                DataFormatError(entry, "a sequence folder named by 3 digits (e.g. 001)", got=entry.name)
            )
            continue
        try:
            frames = _frames(entry, subject, entry.name)
            emotion_file, peak_number = _emotion(emotions / entry.name, subject, entry.name)
            code, peak = None, len(frames) - 1
            if emotion_file is not None:
                code = read_emotion_file(emotion_file)
                if not 1 <= peak_number <= len(frames):
                    raise DataFormatError(emotion_file, f"a label of a frame of {entry} (frames 1..{len(frames)})",
                                          got=f"frame {peak_number:08d} missing")  # fmt: skip
                if peak_number == 1:
                    raise DataFormatError(
                        emotion_file, "a label of a peak frame after the neutral onset", got="frame 1"
                    )
                peak = peak_number - 1
        except DataFormatError as err:
            bad.handle(err)
            continue
        sequences.append(
            Sequence(subject, entry.name, frames, code, peak, None if code is None else str(emotion_file))
        )
    for entry in _visible(emotions) if emotions.is_dir() else ():
        if not (entry.is_dir() and _SEQUENCE.fullmatch(entry.name)):
            bad.handle(
                DataFormatError(entry, "a sequence folder named by 3 digits (e.g. 001)", got=entry.name)
            )
        elif not (images / entry.name).is_dir() and _visible(
            entry
        ):  # CK+ keeps empty folders of unlabelled ones
            bad.handle(
                DataFormatError(entry, f"the frames it labels in {images / entry.name}", got="missing")
            )
    return sequences


def sequence_box(root, sequence: Sequence) -> tuple[float, float, float, float]:
    """The face box of every frame of ``sequence`` (module doc, "Face box")."""
    root = Path(root)
    if (root / LANDMARK_DIR).is_dir():
        path = (
            root
            / LANDMARK_DIR
            / sequence.subject
            / sequence.sequence
            / f"{sequence.onset.name}_landmarks.txt"
        )
        if not path.is_file():
            raise DataFormatError(path, f"the onset frame's {LANDMARK_FORMAT} ({LANDMARK_DIR}/ holds one file a frame)",
                                  got="missing")  # fmt: skip
        return landmark_box(read_landmarks(path))
    import cv2

    from kdface.report import detect_faces

    check_image_file(sequence.onset.path)
    image = cv2.imdecode(np.fromfile(sequence.onset.path, np.uint8), cv2.IMREAD_COLOR)
    faces = detect_faces(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if not len(faces):
        raise DataFormatError(sequence.onset.path,
                              f"a face OpenCV's Haar cascade finds (or CK+'s {LANDMARK_DIR}/ folder in {root})",
                              got="no face")  # fmt: skip
    return tuple(float(v) for v in faces[0])


def subject_pairs(root, sequences: list[Sequence], fold: int, peak_frames: int = DEFAULT_PEAK_FRAMES,
                  neutral_pairs: bool = False, bad=None) -> list[PairSample]:  # fmt: skip
    """The pairs of **one** subject's ``sequences`` (module doc, "Protocol"): the only place pairs are
    made, so no pair can join two subjects. A sequence whose face box cannot be had goes to ``bad``."""
    bad = as_policy(bad)
    if peak_frames < 1:
        raise ValueError(f"peak_frames must be >= 1, got {peak_frames}")
    subjects = {s.subject for s in sequences}
    if len(subjects) > 1:
        raise ValueError(f"subject_pairs takes one subject's sequences, got {sorted(subjects)}")
    boxed = []
    for sequence in sequences:
        try:
            boxed.append((sequence, sequence_box(root, sequence)))
        except DataFormatError as err:
            bad.handle(err)
    pairs = []
    for sequence, box in boxed:
        if sequence.code is None:
            continue
        for target in sequence.peak_frames(peak_frames):
            pairs.append(PairSample(f"{sequence.onset.name}+{target.name}", sequence.label, sequence.subject,
                                    sequence.onset, target, box, box, fold, sequence.emotion_file))  # fmt: skip
    if neutral_pairs:
        for k, (sequence, box) in enumerate(boxed):
            other, other_box = boxed[(k + 1) % len(boxed)]
            pairs.append(PairSample(f"{sequence.onset.name}+{other.onset.name}", NEUTRAL, sequence.subject,
                                    sequence.onset, other.onset, box, other_box, fold, sequence.onset.path))  # fmt: skip
    return pairs


def read_pairs(root, *, folds: int = DEFAULT_FOLDS, peak_frames: int = DEFAULT_PEAK_FRAMES,
               neutral_pairs: bool = False, fold: int | None = None, bad=None) -> Iterator[PairSample]:  # fmt: skip
    """Every pair of the dataset, subject after subject (or those of the subjects of ``fold``).

    Structural problems go to ``bad`` (module doc); the images themselves are checked by
    :func:`validated_pairs`.
    """
    bad = as_policy(bad)
    for subject, subject_fold in dataset_folds(root, folds, bad).items():
        if fold is None or subject_fold == fold:
            sequences = read_subject(root, subject, bad)
            yield from subject_pairs(root, sequences, subject_fold, peak_frames, neutral_pairs, bad)


def validated_pairs(pairs: Iterable[PairSample], bad=None):
    """Yield ``(pair, neutral (H, W), target (H, W))`` for the pairs whose two images decode and whose
    boxes overlap them; bad ones go to ``bad``. Each image is decoded once, however many pairs hold it."""
    bad = as_policy(bad)
    checked: dict[str, tuple[int, int] | DataFormatError] = {}

    def size(frame: Frame, origin: str):
        if frame.path not in checked:
            try:
                annotation = origin if origin != frame.path else None  # the emotion file naming the peak
                checked[frame.path] = check_image_file(frame.path, annotation=annotation)
            except DataFormatError as err:
                checked[frame.path] = err
        if isinstance(checked[frame.path], DataFormatError):
            raise checked[frame.path]
        return checked[frame.path]

    for pair in pairs:
        if not pair.subject == pair.neutral.subject == pair.target.subject:  # subject_pairs guarantees it
            raise AssertionError(f"pair {pair.key} joins two subjects")
        try:
            hw = [size(frame, pair.origin) for frame in (pair.neutral, pair.target)]
            check_face_box(pair.neutral_box, f"{pair.neutral.path} (face box)", image_hw=hw[0])
            check_face_box(pair.target_box, f"{pair.target.path} (face box)", image_hw=hw[1])
        except DataFormatError as err:
            bad.handle(err)
            continue
        yield pair, hw[0], hw[1]
