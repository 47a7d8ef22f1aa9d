"""Offline converters from other frameworks' checkpoints to kdface weights.

``python -m kdface.convert resnet --depth 18 --checkpoint resnet18_msceleb.pth --out X.npz``:
see :mod:`kdface.convert.torch_resnet`; ``python -m kdface.convert vit --variant vit_b16 --checkpoint
pytorch_model.bin --out X.npz`` (Hugging Face or timm ViTs): :mod:`kdface.convert.torch_vit`. The
names below are imported lazily, so the CLI can quiet TensorFlow's logging before Keras is imported.
"""

from __future__ import annotations

import importlib

__all__ = ["ConversionReport", "convert", "expected_tensor_count", "load_into", "read_state_dict"]


def __getattr__(name):
    if name in __all__:
        return getattr(importlib.import_module("kdface.convert.torch_resnet"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
