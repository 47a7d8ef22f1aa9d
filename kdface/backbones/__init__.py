"""Functional backbones (keras-hub style): one registry, one output contract.

``create_backbone(name, image_size=..., weights=..., bn_momentum=...)`` builds any of
:func:`backbone_names` as a plain ``keras.Model`` taking ``[0, 1]`` RGB whose output is the dict
:data:`BACKBONE_OUTPUTS` (``feature_map``, ``embedding``, ``stage1`` .. ``stage4``); see
:mod:`kdface.backbones.registry` and :mod:`kdface.backbones.contract`. :func:`freeze` makes any of them
receive no update (weights and BatchNorm statistics; :mod:`kdface.backbones.freezing`).
"""

from kdface.backbones.applications import build_backbone
from kdface.backbones.contract import (
    BACKBONE_OUTPUTS,
    STAGES,
    BackboneSpec,
    attention_blocks,
    attention_maps,
    backbone_spec,
    embedding_size,
    feature_channels,
)
from kdface.backbones.freezing import freeze, is_frozen
from kdface.backbones.iresnet import IRESNET_DEPTHS, build_iresnet
from kdface.backbones.registry import (
    backbone_names,
    check_backbone_weights,
    create_backbone,
    register_backbone,
)
from kdface.backbones.resnet import RESNET_DEPTHS, build_resnet
from kdface.backbones.vit import VIT_VARIANTS, arrays_from_keras_hub, build_vit
from kdface.backbones.weights import backbone_of

__all__ = [
    "BACKBONE_OUTPUTS",
    "IRESNET_DEPTHS",
    "RESNET_DEPTHS",
    "STAGES",
    "VIT_VARIANTS",
    "BackboneSpec",
    "arrays_from_keras_hub",
    "attention_blocks",
    "attention_maps",
    "backbone_names",
    "backbone_of",
    "backbone_spec",
    "build_backbone",
    "build_iresnet",
    "build_resnet",
    "build_vit",
    "check_backbone_weights",
    "create_backbone",
    "embedding_size",
    "feature_channels",
    "freeze",
    "is_frozen",
    "register_backbone",
]
