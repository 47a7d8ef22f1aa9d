"""Whole models that put the heads of :mod:`kdface.heads` on backbones of :mod:`kdface.backbones`
(task-free, like both; methods build their ``keras.Model`` around them). They live above ``heads``
because they import ``backbones``, which itself imports ``heads``.

* :func:`build_vit_se`: ViT-SE, variants A and B (:mod:`kdface.models.vit_se`);
* :func:`build_doe`, :func:`build_target_only`, :func:`build_ddoe_step1`, :func:`build_ddoe_step2`:
  Difference of Embeddings (and its target-only ablation) and
  Disentangled DoE; the pair models take one ``(B, 2, S, S, 3)`` input, neutral at index
  :data:`NEUTRAL` and target at :data:`TARGET` of axis 1 (:mod:`kdface.models.doe`).

Each returns a plain Functional ``keras.Model`` that saves and loads with ``safe_mode=True`` and
without kdface.
"""

from kdface.models.doe import (
    EMOTION_ENCODER,
    ENCODER,
    IDENTITY_ENCODER,
    NEUTRAL,
    PAIR_INPUT_NAME,
    TARGET,
    build_ddoe_step1,
    build_ddoe_step2,
    build_doe,
    build_target_only,
    emotion_encoder_of,
    split_pair,
)
from kdface.models.vit_se import build_vit_se

__all__ = [
    "EMOTION_ENCODER",
    "ENCODER",
    "IDENTITY_ENCODER",
    "NEUTRAL",
    "PAIR_INPUT_NAME",
    "TARGET",
    "build_ddoe_step1",
    "build_ddoe_step2",
    "build_doe",
    "build_target_only",
    "build_vit_se",
    "emotion_encoder_of",
    "split_pair",
]
