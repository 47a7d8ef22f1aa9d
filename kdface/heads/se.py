"""ViT-SE's head (spec ``vitse_doe_fer.md`` §1): a squeeze-excitation gate on one feature vector, then a
linear classifier.

The SE block here acts on a single ``(B, D)`` vector (the CLS token or the pooler output), so there is
no squeeze step: ``s = p * gate(W2 relu(W1 p + b1) + b2)``, then ``logits = W s + b``. Two variants
(:data:`VIT_SE_VARIANTS`), both kept because the sources disagree:

* ``"A"`` (repo-faithful, jerry940100's ``ViT_SE``): the HF pooler output (backbone key ``"pooled"``),
  reduction 4 and a **ReLU** gate (gates in ``[0, inf)``, not a standard SE); 295,872 SE parameters at
  D = 768;
* ``"B"`` (author-faithful, the default; the first author's SPARTA ``-se`` head): the final-LayerNorm
  CLS token (backbone key ``"embedding"``), reduction 2 and a sigmoid gate; 590,976 SE parameters at
  D = 768.

The classifier (kdface's :func:`~kdface.heads.linear.linear_head`) has ``769 C`` parameters at D = 768
and no dropout. Every layer is a built-in Keras layer applied in the caller's graph (``se.fc1``,
``se.fc2``, ``se.scale``, ``classifier``), so a saved model loads without kdface; the SE layers are
initialised like torch's ``nn.Linear`` (both originals are torch).
"""

from __future__ import annotations

import dataclasses

import keras

from kdface.errors import ConfigError
from kdface.heads.linear import linear_head, torch_dense


@dataclasses.dataclass(frozen=True)
class SEVariant:
    feature: str  # the backbone output the head reads
    reduction: int
    gate: str  # the excitation's last activation
    summary: str


VIT_SE_VARIANTS = {
    "A": SEVariant("pooled", 4, "relu", "repo-faithful: HF pooler output, SE r=4 with a ReLU gate"),
    "B": SEVariant(
        "embedding", 2, "sigmoid", "author-faithful: final-LN CLS token, SE r=2 with a sigmoid gate"
    ),
}
DEFAULT_VIT_SE_VARIANT = "B"


def vit_se_variant(variant: str) -> SEVariant:
    """The :data:`VIT_SE_VARIANTS` entry of ``variant`` (``"A"``/``"B"``, any case)."""
    try:
        return VIT_SE_VARIANTS[str(variant).upper()]
    except KeyError:
        raise ConfigError(
            f"ViT-SE variant must be one of {sorted(VIT_SE_VARIANTS)} "
            f"({'; '.join(f'{k}: {v.summary}' for k, v in VIT_SE_VARIANTS.items())}), got {variant!r}"
        ) from None


def squeeze_excitation(features, reduction: int, gate: str = "sigmoid", name: str = "se"):
    """``features * gate(fc2(relu(fc1(features))))`` on a ``(B, D)`` vector: ``fc1`` D -> D/``reduction``,
    ``fc2`` back to D; layers ``{name}.fc1``, ``{name}.fc2``, ``{name}.scale``."""
    width = int(features.shape[-1])
    if width % int(reduction):
        raise ConfigError(f"squeeze-excitation: width {width} is not divisible by the reduction {reduction}")
    squeezed = torch_dense(width // int(reduction), width, f"{name}.fc1", activation="relu")(features)
    gates = torch_dense(width, width // int(reduction), f"{name}.fc2", activation=gate)(squeezed)
    return keras.layers.Multiply(name=f"{name}.scale")([features, gates])


def vit_se_head(features, num_classes: int, variant: str = DEFAULT_VIT_SE_VARIANT):
    """ViT-SE's logits ``(B, num_classes)`` from the variant's feature vector ``(B, D)`` (the backbone
    output named by ``vit_se_variant(variant).feature``)."""
    spec = vit_se_variant(variant)
    return linear_head(num_classes)(squeeze_excitation(features, spec.reduction, spec.gate))
