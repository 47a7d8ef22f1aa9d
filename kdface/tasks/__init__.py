"""Tasks, found by name: what every method of a task shares (readers, pipeline, data loading,
evaluation, model card, photo mode). One package per task registers a :class:`Task`.

``test.py`` reads a model's card, takes its ``task`` (cards written before tasks were recorded are
landmark models) and hands evaluation to that task; nothing outside a task's package switches on
its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from kdface.registry import Registry


@dataclasses.dataclass(frozen=True)
class Task:
    """A task's entry points for ``test.py``.

    ``datasets()``: the dataset names it evaluates on; ``add_test_arguments(parser)``: its own
    ``test.py`` flags; ``evaluate(model_paths, args)``: models x splits -> report;
    ``predict_photo(model, photo, out, unsafe)``; ``check(model_path, card, dataset, args)``: the
    cheap checks of ``test.py``'s inputs for one model (split names, the data folder, whether the
    model fits the dataset), made before anything is written; each failure is a kdface error.
    """

    name: str
    summary: str
    datasets: Callable[[], list[str]]
    evaluate: Callable
    predict_photo: Callable | None = None
    add_test_arguments: Callable | None = None
    check: Callable | None = None


TASKS: Registry[Task] = Registry("task", package=(__name__, __path__))


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)


def get_task(name: str) -> Task:
    return TASKS.get(name)


def task_names() -> list[str]:
    return TASKS.names()
