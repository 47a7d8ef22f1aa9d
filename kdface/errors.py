"""kdface's documented errors. The CLIs print these as one clear message (no traceback).

* :class:`DataFormatError` (a ``ValueError``): a data file is not in its expected format; names the
  file, the line and what was expected.
* :class:`UnsafeFileError` (a ``ValueError``): a file asks for something kdface refuses to do while
  loading it (run code, reach outside the dataset root).
* :class:`RunError`: a training run cannot start or go on (unwritable output, too little disk, a run
  directory that holds another run, a loss that became NaN/Inf).
* :class:`ConfigError` (a ``ValueError``): a setting is out of range or contradicts another.
* :class:`UnknownNameError` (a ``ValueError``): a name no registry or table holds; lists the known
  ones and suggests the closest.
* :class:`MissingFileError` (a ``FileNotFoundError``): an input file or folder (a model, a photo, a
  dataset folder, weights) does not exist, or is a folder where a file is expected; names the flag.
* :class:`ForeignFolderError` (a :class:`RunError` and ``FileExistsError``): an output folder holds
  files kdface did not write; kdface never writes into or deletes it.
"""

from __future__ import annotations


def _where(path, line) -> str:
    return f"{path}" if line is None else f"{path}:{line}"


class KdfaceError(Exception):
    """Base of every error kdface raises on purpose."""


class DataFormatError(KdfaceError, ValueError):
    """A data file is not in the format its reader expects.

    The message names the file, the line (when there is one) and what was expected.
    """

    def __init__(self, path, expected: str, line: int | None = None, got: str | None = None):
        msg = f"{_where(path, line)}: expected {expected}"
        if got is not None:
            msg += f", got {got!r}"
        super().__init__(msg)
        self.path = str(path)
        self.line = line
        self.expected = expected


class UnsafeFileError(KdfaceError, ValueError):
    """A file asks for something kdface will not do while loading it (run code, escape a folder)."""

    def __init__(self, path, reason: str, hint: str | None = None, line: int | None = None):
        message = f"{_where(path, line)}: refused: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self.path = str(path)
        self.line = line
        self.reason = reason


class RunError(KdfaceError, RuntimeError):
    """A training run cannot start, or had to stop (the message says why and what was kept)."""


class NonFiniteLossError(RunError):
    """The training loss became NaN or Inf; training stopped and the last good checkpoint was kept."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class ConfigError(KdfaceError, ValueError):
    """An experiment's settings contradict each other or are out of range (a flag's value, a preset)."""


class UnknownNameError(KdfaceError, ValueError):
    """A name (method, task, backbone, dataset, split) that no registry holds; lists the known ones."""


class MissingFileError(KdfaceError, FileNotFoundError):
    """An input (a model, a photo, a dataset folder, a weights file) does not exist, or is a folder
    where a file is expected (or the reverse). The message names the flag, the path and, where it
    can, where the right one comes from."""


class ForeignFolderError(RunError, FileExistsError):
    """An output folder holds files kdface did not write; kdface neither writes into it nor deletes it."""
