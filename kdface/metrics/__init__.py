"""Evaluation metrics."""

from kdface.metrics.classification import (
    confusion_matrix,
    plot_confusion,
    plot_weight_histograms,
    summarize_classification,
)
from kdface.metrics.landmarks import (
    auc,
    auc_kdloss_original,
    ced_curve,
    failure_rate,
    nme_per_image,
    plot_ced,
    summarize,
)
from kdface.metrics.verification import (
    RocCurve,
    VerificationResult,
    best_threshold,
    cmc_ranks,
    plot_roc,
    roc_curve_points,
    tar_at_far,
    threshold_grid,
    verification_10_fold,
    verification_accuracy,
    verification_folds,
)

__all__ = [
    "auc",
    "auc_kdloss_original",
    "ced_curve",
    "confusion_matrix",
    "failure_rate",
    "nme_per_image",
    "plot_ced",
    "plot_confusion",
    "plot_weight_histograms",
    "summarize",
    "summarize_classification",
    "RocCurve",
    "VerificationResult",
    "best_threshold",
    "cmc_ranks",
    "plot_roc",
    "roc_curve_points",
    "tar_at_far",
    "threshold_grid",
    "verification_10_fold",
    "verification_accuracy",
    "verification_folds",
]
