"""Backbones from ``keras.applications`` as plain Functional models taking images in ``[0, 1]``.

Every kdface model takes float images in ``[0, 1]``. Each backbone adapts that range to what its
ImageNet weights expect *inside* the model, so a user never preprocesses by hand and a
``weights="imagenet"`` model and a from-scratch one take the same input:

* EfficientNet (v1) in keras.applications already holds ``Rescaling(1/255)`` + ImageNet
  ``Normalization`` in its stem, so it expects ``[0, 255]``: we scale by 255 first (spec §1 note;
  feeding ``[0, 1]`` straight in would squash the input by 1/255).
* MobileNetV2 expects ``[-1, 1]``.

``weights`` is ``None`` (from scratch, the KD-Loss default), ``"imagenet"`` (downloaded by Keras; needs
internet once), or a path to a ``.h5``/``.weights.h5`` file of backbone weights.
"""

from __future__ import annotations

import os

import keras

_BUILDERS = {
    "efficientnet_b3": (keras.applications.EfficientNetB3, 255.0, 0.0),
    "mobilenet_v2": (keras.applications.MobileNetV2, 2.0, -1.0),
}


def backbones() -> list[str]:
    return sorted(_BUILDERS)


def _application_weights(weights):
    if weights is None or weights == "imagenet":
        return weights
    if not os.path.exists(weights):
        raise FileNotFoundError(
            f"backbone weights file {weights!r} does not exist (expected None, 'imagenet' or a path)"
        )
    return None  # loaded after building, see below


def build_backbone(name: str, image_size: int, weights=None, bn_momentum=None, **kwargs) -> keras.Model:
    """A Functional backbone: ``(B, S, S, 3)`` in ``[0, 1]`` -> pooled features ``(B, C)``.

    The last feature map stays reachable as layer ``"features"`` for distillation taps.
    ``bn_momentum`` overrides every BatchNormalization's moving-average momentum: MobileNetV2 ships
    0.999, whose moving statistics need thousands of steps to settle, so a short from-scratch run
    validates (inference mode) far worse than it trains unless it is lowered.
    """
    try:
        constructor, scale, offset = _BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {backbones()}") from None
    inputs = keras.Input((image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(scale, offset, name="to_application_range")(inputs)
    application = constructor(
        include_top=False,
        weights=_application_weights(weights),
        input_shape=(image_size, image_size, 3),
        **kwargs,
    )
    if weights not in (None, "imagenet"):
        application.load_weights(weights)
    if bn_momentum is not None:
        for layer in application.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(bn_momentum)
    features = keras.layers.Identity(name="features")(application(scaled))
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    return keras.Model(inputs, pooled, name=name)
