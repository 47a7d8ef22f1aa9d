"""Functional backbones (keras-hub style): plain ``keras.Model`` objects with named taps."""

from kdface.backbones.applications import build_backbone

__all__ = ["build_backbone"]
