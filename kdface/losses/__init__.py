"""Losses as pure functions of tensors, named as in the papers."""

from kdface.losses.igkd import (
    IGKDTerms,
    baseline_loss,
    feature_distillation_loss,
    igkd_loss,
    kl_batchmean,
    knowledge_feedback_loss,
    knowledge_learning_loss,
    ramp_down,
    ramp_up,
    relation_distillation_loss,
)
from kdface.losses.kd_loss import (
    KDLossTerms,
    aloss_elementwise,
    aloss_tolerant,
    aloss_tough,
    kd_loss,
    main_loss,
    main_loss_elementwise,
)
from kdface.losses.scn import (
    SCNTerms,
    high_group_size,
    low_importance_mask,
    scn_loss,
    scn_rank_regularization,
    scn_relabel,
    scn_weighted_cross_entropy,
)

__all__ = [
    "IGKDTerms",
    "baseline_loss",
    "feature_distillation_loss",
    "igkd_loss",
    "kl_batchmean",
    "knowledge_feedback_loss",
    "knowledge_learning_loss",
    "ramp_down",
    "ramp_up",
    "relation_distillation_loss",
    "KDLossTerms",
    "aloss_elementwise",
    "aloss_tolerant",
    "aloss_tough",
    "kd_loss",
    "main_loss",
    "main_loss_elementwise",
    "SCNTerms",
    "high_group_size",
    "low_importance_mask",
    "scn_loss",
    "scn_rank_regularization",
    "scn_relabel",
    "scn_weighted_cross_entropy",
]
