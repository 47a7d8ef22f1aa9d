"""Functional backbones (keras-hub style): plain ``keras.Model`` objects with named taps."""

from kdface.backbones.applications import build_backbone
from kdface.backbones.iresnet import IRESNET_DEPTHS, build_iresnet
from kdface.backbones.resnet import RESNET_DEPTHS, build_resnet

__all__ = ["IRESNET_DEPTHS", "RESNET_DEPTHS", "build_backbone", "build_iresnet", "build_resnet"]
