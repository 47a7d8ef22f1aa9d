"""Evaluation metrics."""

from kdface.metrics.landmarks import (
    auc,
    auc_kdloss_original,
    ced_curve,
    failure_rate,
    nme_per_image,
    plot_ced,
    summarize,
)

__all__ = [
    "auc",
    "auc_kdloss_original",
    "ced_curve",
    "failure_rate",
    "nme_per_image",
    "plot_ced",
    "summarize",
]
