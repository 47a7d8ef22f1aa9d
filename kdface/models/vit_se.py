"""ViT-SE (spec ``vitse_doe_fer.md`` §1): a backbone's feature vector -> squeeze-excitation -> classifier,
and its ablation without the SE block."""

from __future__ import annotations

import keras

from kdface.errors import ConfigError
from kdface.heads.linear import linear_head
from kdface.heads.se import DEFAULT_VIT_SE_VARIANT, vit_se_head, vit_se_variant


def build_vit_se(
    backbone: keras.Model,
    num_classes: int,
    variant: str = DEFAULT_VIT_SE_VARIANT,
    name: str = "vit_se",
    se: bool = True,
) -> keras.Model:
    """``image`` ``(B, S, S, 3)`` in ``[0, 1]`` -> logits ``(B, num_classes)``: ``backbone`` (nested under
    its own name, fully trainable as in both originals) -> the variant's feature -> :func:`vit_se_head`.

    Variant ``"B"`` (default) reads ``"embedding"`` (a ViT's final-LN CLS token; any kdface backbone
    works), variant ``"A"`` reads ``"pooled"``, so it needs a ViT built with ``pooler=True``; a variant-B
    model on such a backbone would carry a pooler that receives no gradient, so build B with
    ``pooler=False``. See :mod:`kdface.heads.se`.

    ``se=False`` is the ablation baseline: the same backbone and feature with the classifier alone
    (layer ``classifier``), so the two models differ by the SE block and nothing else.
    """
    spec = vit_se_variant(variant)
    if spec.feature not in backbone.output:
        raise ConfigError(
            f"ViT-SE variant {variant!r} reads the backbone output {spec.feature!r}, which {backbone.name} "
            f"lacks (outputs: {sorted(backbone.output)}); build the ViT with pooler=True"
        )
    image = keras.Input(tuple(backbone.input.shape[1:]), name="image")
    features = backbone(image)[spec.feature]
    logits = vit_se_head(features, num_classes, variant) if se else linear_head(num_classes)(features)
    return keras.Model(image, logits, name=name)
