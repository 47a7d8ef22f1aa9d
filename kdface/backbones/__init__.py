"""Functional backbones (keras-hub style): plain ``keras.Model`` objects with named taps."""

from kdface.backbones.applications import build_backbone
from kdface.backbones.resnet import RESNET_DEPTHS, build_resnet

__all__ = ["RESNET_DEPTHS", "build_backbone", "build_resnet"]
