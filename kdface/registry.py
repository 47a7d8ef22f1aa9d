"""Things found by name (timm's ``register_model`` / ``create_model`` idea), one small class for all.

kdface keeps three registries of this kind: backbones (:mod:`kdface.backbones`), tasks
(:mod:`kdface.tasks`) and methods (:mod:`kdface.methods`). An unknown name is a user's typo far
more often than a missing feature, so the error lists what is known and suggests the closest name.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Generic, TypeVar

from kdface.errors import UnknownNameError

T = TypeVar("T")


def unknown_name_message(kind: str, name, known, where: str = "") -> str:
    """``unknown backbone 'resnet19'; known: ..., resnet18, resnet50 (did you mean 'resnet18'?)``; ``where`` follows
    the name (``" for 'raf-db'"``)."""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{where}; known: {', '.join(known) or 'none'}{hint}"


class Registry(Generic[T]):
    """A name -> entry mapping that refuses duplicates and explains unknown names.

    With ``package`` (a package name and its ``__path__``), the first lookup imports every module of
    that package: each registers itself, so a new method or task is a new file and nothing else."""

    def __init__(self, kind: str, package: tuple[str, list] | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._package = package

    def discover(self) -> None:
        if self._package is not None:
            package, self._package = self._package, None
            import_submodules(*package)

    def register(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self._entries)) from None

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def __contains__(self, name) -> bool:
        self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self):
        self.discover()
        return sorted(self._entries.items())


def import_submodules(package: str, path) -> None:
    """Import every module of ``package`` (whose ``__path__`` is ``path``)."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
