"""Losses as pure functions of tensors, named as in the papers."""

from kdface.losses.kd_loss import (
    KDLossTerms,
    aloss_elementwise,
    aloss_tolerant,
    aloss_tough,
    kd_loss,
    main_loss,
    main_loss_elementwise,
)

__all__ = [
    "KDLossTerms",
    "aloss_elementwise",
    "aloss_tolerant",
    "aloss_tough",
    "kd_loss",
    "main_loss",
    "main_loss_elementwise",
]
