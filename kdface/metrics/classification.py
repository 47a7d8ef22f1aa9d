"""Classification metrics for expression recognition: accuracy, per-class accuracy, confusion matrix.

Per-class accuracy is the recall of each class; *mean class accuracy* averages it over the classes
present in the test set (the number FER papers report beside overall accuracy, robust to the
test sets' imbalance).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdface.io.atomic import atomic_path


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``(K, K)`` counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"a {name} outside 0..{num_classes - 1}")
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def summarize_classification(labels, probabilities, class_names: Sequence[str]) -> dict:
    """Accuracy (%), mean class accuracy (%) over the classes present, per-class accuracy and count,
    and the confusion matrix, from integer ``labels`` and ``(N, K)`` ``probabilities``."""
    probabilities = np.asarray(probabilities)
    k = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape[1] != k:
        raise ValueError(f"expected (N, {k}) probabilities, got {probabilities.shape}")
    predictions = probabilities.argmax(axis=1)
    cm = confusion_matrix(labels, predictions, k)
    counts = cm.sum(axis=1)
    present = counts > 0
    per_class = np.where(present, np.diag(cm) / np.maximum(counts, 1), np.nan)
    total = int(counts.sum())
    return {
        "accuracy": 100.0 * np.trace(cm) / total if total else float("nan"),
        "mean_class_accuracy": 100.0 * float(np.mean(per_class[present])) if present.any() else float("nan"),
        "count": total,
        "per_class": {
            name: {
                "accuracy": None if not present[i] else 100.0 * float(per_class[i]),
                "count": int(counts[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion": cm.tolist(),
    }


def plot_confusion(confusion, class_names: Sequence[str], path, title: str = "Confusion matrix") -> None:
    """Save a row-normalised confusion-matrix heat map (cells show % of the true class and counts)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    fig = Figure(figsize=(1.0 + 0.8 * k, 0.8 + 0.7 * k), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            color = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{100 * share[i, j]:.0f}\n({int(cm[i, j])})", ha="center", va="center",
                    fontsize=7, color=color)  # fmt: skip
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_weight_histograms(weights, groups, path, xlabel: str, title: str = "") -> Path:
    """Save overlaid density histograms on [0, 1] of ``weights`` split by boolean masks:
    ``groups`` is ``[(mask, label), ...]`` (blue, red, ...); empty groups are left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    weights = np.asarray(weights)
    fig = Figure(figsize=(6.4, 4.0), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(0.0, 1.0, 41)
    for (mask, label), colour in zip(groups, ("tab:blue", "tab:red", "tab:green"), strict=False):
        mask = np.asarray(mask, bool)
        if mask.any():
            ax.hist(weights[mask], bins=bins, density=True, alpha=0.6, color=colour,
                    label=f"{label} (n={int(mask.sum())})")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
