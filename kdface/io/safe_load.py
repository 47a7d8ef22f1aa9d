"""Loading files that could run code: only through loaders that refuse to.

* Pickle-based files (InsightFace verification ``.bin``) go through :func:`restricted_pickle_load`,
  whose unpickler resolves only the few globals such files need (byte/str codecs and NumPy scalar and
  array reconstruction) and refuses every other one, e.g. ``os.system``.
* PyTorch checkpoints go through :func:`load_torch_checkpoint`, i.e. ``torch.load(weights_only=True)``.
* Keras models go through :func:`load_keras_model`, i.e. ``safe_mode=True`` (no Python lambdas are
  deserialised) unless the user passes an explicit flag (``--unsafe-load-model`` on the CLIs).
  :func:`load_model` also takes exported ``.tflite`` models (:mod:`kdface.io.litert`: data, no code).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

from kdface.errors import UnsafeFileError

UNSAFE_MODEL_FLAG = "--unsafe-load-model"

# (module, name) pairs a data pickle may reference. Everything else is refused.
SAFE_PICKLE_GLOBALS = frozenset(
    {
        ("_codecs", "encode"),  # Python 2 pickles store bytes as latin-1 text + this call
        # Plain containers some protocol-2 pickles build by calling their constructors.
        *(
            (module, name)
            for module in ("builtins", "__builtin__")
            for name in ("bytes", "bytearray", "set", "frozenset")
        ),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }
)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path, allowed):
        super().__init__(file, encoding="bytes")
        self._path = path
        self._allowed = allowed

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise UnsafeFileError(
                self._path,
                f"the pickle references the global {module}.{name}, which a data file has no need for",
                "only plain data, bytes and NumPy arrays are accepted",
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafeFileError(self._path, "the pickle uses persistent ids (not a plain data file)")


def restricted_pickle_load(source, *, path=None, allowed=SAFE_PICKLE_GLOBALS):
    """Unpickle ``source`` (a path, bytes, or a binary file) allowing only ``allowed`` globals.

    Raises :class:`UnsafeFileError` for a forbidden global, and lets :class:`pickle.UnpicklingError`
    and friends through for a file that is not a pickle at all (the caller turns those into its
    own format error).
    """
    if isinstance(source, (str, Path)):
        path = path or source
        with open(source, "rb") as f:
            return _RestrictedUnpickler(f, path, allowed).load()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _RestrictedUnpickler(io.BytesIO(bytes(source)), path or "<bytes>", allowed).load()
    return _RestrictedUnpickler(source, path or getattr(source, "name", "<file>"), allowed).load()


MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def check_model_file(path, flag: str | None = None, hint: str = "", exported: bool = False) -> Path:
    """``path`` if it can be a Keras model file: it exists, is a file, ends in ``.keras`` (a zip
    holding ``config.json``) or is a legacy ``.h5`` (or, with ``exported``, a LiteRT ``.tflite``
    from ``python -m kdface.export``). Raises :class:`~kdface.errors.MissingFileError`
    (naming ``flag``, followed by ``hint``), :class:`UnsafeFileError` or
    :class:`~kdface.errors.DataFormatError`; reads only the zip's directory."""
    from kdface.errors import DataFormatError
    from kdface.io.paths import require_file

    path = require_file(path, flag, what="model file", hint=hint)
    named = f"{flag} {path}" if flag else path
    if exported and path.suffix == ".tflite":
        return path
    if path.suffix not in MODEL_SUFFIXES:
        expected = "a Keras model file (.keras; legacy .h5)" + (" or an exported .tflite" if exported else "")
        raise DataFormatError(named, expected, got=path.suffix or path.name)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            raise UnsafeFileError(named, "not a Keras v3 model archive (a .keras file is a zip)") from None
        if "config.json" not in names:
            raise DataFormatError(named, "a Keras v3 model archive (a zip holding config.json)",
                                  got=", ".join(names[:5]) or "an empty zip")  # fmt: skip
    return path


def load_keras_model(path, *, unsafe: bool = False, compile: bool = False):
    """``keras.saving.load_model`` with ``safe_mode`` on unless ``unsafe`` is passed explicitly.

    Refusals are :class:`UnsafeFileError` naming the file and the flag that allows them.
    """
    import keras

    path = check_model_file(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=not unsafe)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
            raise UnsafeFileError(
                path,
                "the model contains Python code (a Lambda layer or similar) that loading would run",
                f"pass {UNSAFE_MODEL_FLAG} only if you trust where this file came from",
            ) from None
        raise


def load_model(path, *, unsafe: bool = False):
    """A saved model for inference: a ``.keras`` (:func:`load_keras_model`) or an exported ``.tflite``
    (:class:`kdface.io.litert.LiteRTModel`, with the part of the Keras interface evaluations use)."""
    if Path(path).suffix == ".tflite":
        from kdface.io.litert import LiteRTModel

        return LiteRTModel(path)
    return load_keras_model(path, unsafe=unsafe)


def load_torch_checkpoint(path):
    """A PyTorch checkpoint's tensors, loaded with ``torch.load(weights_only=True)`` on the CPU.

    ``weights_only`` makes torch refuse any pickled object that is not a tensor or plain container,
    so a checkpoint cannot run code. Needs ``torch`` (a development dependency, used only by the
    checkpoint converters).
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError(
            "reading PyTorch checkpoints needs torch (pip install torch); kdface itself does not"
        ) from exc
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(path, f"torch.load(weights_only=True) refused it: {str(exc)[:200]}") from None
