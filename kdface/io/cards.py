"""Model cards: the ``<model>.json`` written beside every trained model (task, dataset, preprocessing,
class names or landmark layout, training config and time)."""

from __future__ import annotations

import json
from pathlib import Path

# The task of cards written before cards named their task: the first kdface models were landmark models.
LEGACY_TASK = "landmarks"


def read_model_card(model_path) -> dict:
    """The card beside ``model_path`` (empty dict if absent)."""
    card = Path(model_path).with_suffix(".json")
    return json.loads(card.read_text()) if card.exists() else {}


def model_task(model_path) -> str:
    return read_model_card(model_path).get("task", LEGACY_TASK)


def model_dataset(model_path, card: dict, dataset: str | None = None) -> str:
    """The dataset to evaluate ``model_path`` on: ``dataset`` if given, else the one its card names."""
    from kdface.errors import RunError

    name = dataset or card.get("dataset")
    if name is None:
        raise RunError(f"{model_path} has no model card naming its dataset; pass --dataset")
    return name
