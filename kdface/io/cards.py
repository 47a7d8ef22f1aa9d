"""Model cards: the ``<model>.json`` written beside every trained model (task, dataset, preprocessing,
class names or landmark layout, training config and time)."""

from __future__ import annotations

import json
from pathlib import Path

from kdface.errors import DataFormatError, RunError

# The task of cards written before cards named their task: the first kdface models were landmark models.
LEGACY_TASK = "landmarks"


def read_model_card(model_path) -> dict:
    """The card beside ``model_path`` (empty dict if absent)."""
    card = Path(model_path).with_suffix(".json")
    if not card.is_file():
        return {}
    try:
        value = json.loads(card.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            card, "a model card (a JSON object)", got=f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise DataFormatError(card, "a model card (a JSON object)", got=type(value).__name__)
    return value


def model_task(model_path) -> str:
    return read_model_card(model_path).get("task", LEGACY_TASK)


def model_dataset(model_path, card: dict, dataset: str | None = None) -> str:
    """The dataset to evaluate ``model_path`` on: ``dataset`` if given, else the one its card names."""
    name = dataset or card.get("dataset")
    if name is None:
        raise RunError(f"{model_path} has no model card naming its dataset; pass --dataset")
    return name
