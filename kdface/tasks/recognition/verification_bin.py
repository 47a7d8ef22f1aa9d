"""InsightFace face-verification ``.bin`` files (LFW, AgeDB-30, CFP-FP, CALFW, CPLFW, ...).

These are the pair lists the InsightFace / ArcFace recognition code evaluates on; they ship inside
the InsightFace training-set archives (``faces_emore``, ``faces_webface_112x112``, ``ms1m-retinaface``
...) as ``lfw.bin``, ``agedb_30.bin``, ``cfp_fp.bin``, ``calfw.bin``, ``cplfw.bin`` and so on.

Format: a Python pickle of the tuple ``(bins, issame_list)``:

* ``bins``: a list of ``2 * P`` *encoded* images (the JPEG/PNG file bytes, usually aligned
  112 x 112 faces). Files written by Python 2 hold them as ``str``, which Python 3 reads as ``bytes``
  with ``encoding="bytes"``; some re-exports hold 1-D ``uint8`` NumPy arrays of the same bytes.
* ``issame_list``: ``P`` booleans (Python or NumPy bools), ``True`` when the pair shows one person.

Pair ``i`` is ``(bins[2 * i], bins[2 * i + 1])``.

A pickle can run arbitrary code when it is loaded (its opcodes may call any importable function,
e.g. ``os.system``), and ``.bin`` files are downloaded from third-party mirrors. So they are loaded
*only* through :func:`kdface.io.safe_load.restricted_pickle_load`, whose unpickler resolves nothing
but the byte codec and NumPy array/scalar reconstruction and raises
:class:`~kdface.errors.UnsafeFileError` for any other global. Never ``pickle.load`` them.

Images are not decoded here; :func:`kdface.data.validation.check_image_bytes` checks each one where
the pipeline decodes it.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct
from pathlib import Path

import numpy as np

from kdface.errors import DataFormatError, UnsafeFileError
from kdface.io.atomic import write_bytes
from kdface.io.safe_load import restricted_pickle_load

FILE_FORMAT = "an InsightFace verification .bin (a pickle of (images, issame))"
PICKLE_PROTOCOL = 4
_ITEM_NOTE = "(the line number is the 0-based item index)"

# What unpickling a damaged or non-pickle file raises (the restricted unpickler's own refusals are
# UnsafeFileError and are let through). LookupError covers KeyError, IndexError and unknown codecs;
# RuntimeError covers RecursionError.
_PICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    TypeError,
    LookupError,
    AttributeError,
    ImportError,
    MemoryError,
    OverflowError,
    RuntimeError,
    struct.error,
)


@dataclasses.dataclass
class VerificationPairs:
    """The pairs of one ``.bin``: pair ``i`` is ``images[2 * i]``, ``images[2 * i + 1]``."""

    images: list[bytes]  # encoded (JPEG/PNG) bytes, 2 * num_pairs of them
    issame: np.ndarray  # (num_pairs,) bool
    path: str

    @property
    def num_pairs(self) -> int:
        return len(self.issame)


def _type_name(obj) -> str:
    if isinstance(obj, np.ndarray):
        return f"numpy array of shape {obj.shape}, dtype {obj.dtype}"
    return type(obj).__name__


def _image_bytes(item, path, index: int) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype == np.uint8:
        return item.tobytes()
    raise DataFormatError(
        path,
        f"image {index} to be encoded image bytes or a 1-D uint8 array {_ITEM_NOTE}",
        line=index,
        got=_type_name(item),
    )


def _flag(item, path, index: int) -> bool:
    if isinstance(item, (bool, np.bool_)):
        return bool(item)
    if isinstance(item, (int, np.integer)) and item in (0, 1):
        return bool(item)
    got = _type_name(item) if not isinstance(item, (int, np.integer)) else f"{int(item)}"[:40]
    raise DataFormatError(
        path, f"issame item {index} to be a bool (or 0/1) {_ITEM_NOTE}", line=index, got=got
    )


def _issame_array(issame, path) -> np.ndarray:
    if isinstance(issame, np.ndarray):
        if issame.ndim != 1 or not (issame.dtype == np.bool_ or np.issubdtype(issame.dtype, np.integer)):
            raise DataFormatError(path, "issame to be a 1-D array of bools", got=_type_name(issame))
        items = issame.tolist()
    elif isinstance(issame, (list, tuple)):
        items = issame
    else:
        raise DataFormatError(path, "issame to be a list of bools", got=_type_name(issame))
    return np.array([_flag(item, path, i) for i, item in enumerate(items)], dtype=bool)


def _validate(obj, path) -> VerificationPairs:
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        got = f"{_type_name(obj)} of length {len(obj)}" if isinstance(obj, (tuple, list)) else _type_name(obj)
        raise DataFormatError(path, "a pickled pair (images, issame)", got=got)
    images, issame = obj
    if not isinstance(images, (list, tuple)):
        raise DataFormatError(
            path, "images (first item) to be a list of encoded images", got=_type_name(images)
        )
    flags = _issame_array(issame, path)
    if len(images) != 2 * len(flags):
        raise DataFormatError(
            path,
            "two images per issame entry (pair i is images 2i and 2i+1)",
            got=f"{len(images)} images, {len(flags)} issame entries",
        )
    if len(flags) == 0:
        raise DataFormatError(path, "at least one pair", got="0 pairs")
    encoded = [_image_bytes(item, path, i) for i, item in enumerate(images)]
    return VerificationPairs(images=encoded, issame=flags, path=str(path))


def read_bin(path) -> VerificationPairs:
    """Read an InsightFace verification ``.bin`` (see the module doc for the format).

    Raises :class:`~kdface.errors.DataFormatError` for a file that is not such a pickle (naming what
    was expected and what was found; item problems carry the 0-based item index as the line) and
    :class:`~kdface.errors.UnsafeFileError` for a pickle that references code.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, FILE_FORMAT, got="no such file")
    try:
        with open(path, "rb") as handle:
            obj = restricted_pickle_load(handle, path=path)
    except UnsafeFileError:
        raise
    except _PICKLE_ERRORS as exc:
        raise DataFormatError(path, FILE_FORMAT, got=f"{type(exc).__name__}: {str(exc)[:100]}") from None
    return _validate(obj, path)


def write_bin(path, images, issame) -> Path:
    """Write pairs as an InsightFace verification ``.bin`` (pickle protocol 4), atomically.

    ``images``: ``2 * P`` encoded images (bytes or 1-D ``uint8`` arrays), ``issame``: ``P`` bools.
    Raises :class:`ValueError` (a :class:`~kdface.errors.DataFormatError` naming ``path``) when they
    do not form such pairs.
    """
    if not isinstance(issame, (list, tuple, np.ndarray)):
        issame = list(issame)
    pairs = _validate((list(images), issame), path)
    payload = pickle.dumps((pairs.images, [bool(v) for v in pairs.issame]), protocol=PICKLE_PROTOCOL)
    return write_bytes(path, payload)
