"""Checks of the paths a user names (``--model``, ``--data-dir``, ``--out``...), made before anything
is written: each failure is one :class:`~kdface.errors.MissingFileError` or
:class:`~kdface.errors.RunError` line that names the flag and the path.

These only read the file system; creating folders and test-writing them is
:func:`kdface.training.trainer.check_writable`'s job, once every input has been checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdface.errors import MissingFileError, RunError


def _named(flag: str | None, path) -> str:
    return f"{flag} {path}" if flag else f"{path}"


def require_file(path, flag: str | None = None, *, what: str = "file", hint: str = "") -> Path:
    """``path`` as a ``Path`` if it is an existing file, else :class:`MissingFileError`
    (``--model x.keras: no such file; <hint>``)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        message = f"{_named(flag, path)} is a folder, not a {what}"
    elif path.exists():
        message = f"{_named(flag, path)} is not a regular file"
    else:
        message = f"{_named(flag, path)}: no such {what}"
    raise MissingFileError(message + (f"; {hint}" if hint else ""))


def require_folder(path, flag: str | None = None, *, hint: str = "") -> Path:
    """``path`` as a ``Path`` if it is an existing folder, else :class:`MissingFileError`."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        message = f"{_named(flag, path)} is a file, not a folder"
    else:
        message = f"{_named(flag, path)}: no such folder"
    raise MissingFileError(message + (f"; {hint}" if hint else ""))


def check_can_create(folder, flag: str | None = None, *, given=None) -> Path:
    """Raise :class:`RunError` unless ``folder`` is a writable folder or could be created as one (its
    nearest existing ancestor is a writable folder). Writes nothing. ``given``: the path as the user
    named it (a file in ``folder``, e.g. ``--out``'s), shown in the message instead of ``folder``."""
    folder = Path(folder)
    named = _named(flag, given if given is not None else folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise RunError(f"cannot write to {named}: {existing} is a file, not a folder; choose another folder")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(
            f"cannot write to {named}: {existing} is not writable (permission denied); choose another folder"
        )
    return folder
