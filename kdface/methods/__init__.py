"""Methods, found by name: each module here is one method (config, ``keras.Model``, build, train) and
registers itself with :func:`register_method`; no method imports another.

``get_method("scn")`` imports every module of this package once (a new method is a new file here,
nothing else), then looks the name up. A :class:`Method` names its task (which decides the data,
evaluation and model card) and the roles it trains: ``teacher`` (``train_teacher.py``) and/or
``student`` (``train_student.py``), each with its config dataclass and its ``train`` function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from kdface.registry import Registry

ROLES = ("teacher", "student")


@dataclasses.dataclass(frozen=True)
class Role:
    """One thing a method trains: ``train(config, out=None, run_dir=None, options=None) -> Path``."""

    config: type
    train: Callable[..., Path]


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    task: str
    summary: str
    roles: dict[str, Role]
    # What to run instead, for a CLI whose role this method lacks.
    instead: str = ""
    # The method train_teacher.py / train_student.py run without --method (kdface's first, KD-Loss).
    default: bool = False

    def role(self, role: str) -> Role:
        if role not in self.roles:
            from kdface.errors import UnknownNameError

            raise UnknownNameError(f"--method {self.name} has no {role} to train: {self.instead}")
        return self.roles[role]


METHODS: Registry[Method] = Registry("method", package=(__name__, __path__))


def register_method(method: Method) -> Method:
    for role in method.roles:
        if role not in ROLES:
            raise ValueError(f"method {method.name!r}: unknown role {role!r}; roles are {ROLES}")
    return METHODS.register(method.name, method)


def get_method(name: str) -> Method:
    return METHODS.get(name)


def method_names() -> list[str]:
    return METHODS.names()


def default_method() -> str:
    return next(name for name, method in METHODS.items() if method.default)
