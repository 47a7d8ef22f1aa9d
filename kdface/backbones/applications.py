"""Backbones from ``keras.applications`` as plain Functional models taking images in ``[0, 1]``.

Every kdface model takes float images in ``[0, 1]``. Each backbone adapts that range to what its
ImageNet weights expect *inside* the model, so a user never preprocesses by hand and a
``weights="imagenet"`` model and a from-scratch one take the same input:

* EfficientNet (v1) in keras.applications already holds ``Rescaling(1/255)`` + ImageNet
  ``Normalization`` in its stem, so it expects ``[0, 255]``: we scale by 255 first (spec §1 note;
  feeding ``[0, 1]`` straight in would squash the input by 1/255).
* MobileNetV2 expects ``[-1, 1]``.
* MobileNetV3-Large is built with ``include_preprocessing=False`` and fed ``[-1, 1]`` by our
  ``Rescaling``: its own preprocessing (the default) is ``Rescaling(1/127.5, -1)`` for ``[0, 255]``
  pixels (spec ``vitse_doe_fer.md`` §2.5), which has no weights, so the ImageNet weights are the same
  either way and the range reaching the first conv is the same as with ``[0, 255]`` input.

The model: ``image`` -> ``Rescaling`` (layer ``to_application_range``) -> the application network
(``include_top=False``) viewed as a multi-output model under the application's own name (e.g.
``mobilenetv2_1.00_224``; same layers, same order, so weights saved before the dict contract still
load) -> the backbone output dict (:mod:`kdface.backbones.contract`): ``"feature_map"`` the last map
(layer ``features``), ``"embedding"`` its global average (layer ``pool``), and ``"stage1"`` ..
``"stage4"`` the last block at strides 4/8/16/32 (:data:`STAGE_LAYERS`). MobileNetV3-Large's embedding
is the 960-d average of its last 1x1 conv (+ BN + hard-swish), the cut of torchvision's ``features`` +
``avgpool`` that DoE uses (spec §2.1); Keras' network has 2,996,352 parameters there (torchvision's
2,971,952: the squeeze-excitation widths are rounded differently), and its ImageNet weights are Keras'
own, not torchvision's.

``weights`` is ``None`` (from scratch, the KD-Loss default), ``"imagenet"`` (downloaded by Keras; needs
internet once), or a path: a ``.h5``/``.weights.h5`` of the application network's weights (as before)
or of the whole backbone (``backbone.save_weights``), an ``.npz`` keyed ``<layer>/<variable>``
(:func:`kdface.backbones.weights.model_arrays`), or a kdface ``.keras`` model holding the same backbone.
"""

from __future__ import annotations

import keras

from kdface.backbones.contract import STAGES, backbone_outputs, set_bn_momentum
from kdface.backbones.weights import check_weights, load_weights
from kdface.errors import ConfigError, DataFormatError

# name -> (constructor, scale, offset into the application's input range)
_BUILDERS = {
    "efficientnet_b3": (keras.applications.EfficientNetB3, 255.0, 0.0),
    "mobilenet_v2": (keras.applications.MobileNetV2, 2.0, -1.0),
    "mobilenet_v3_large": (keras.applications.MobileNetV3Large, 2.0, -1.0),
}
# constructor arguments a kind always gets (MobileNetV3: our Rescaling is its preprocessing)
_FIXED_ARGUMENTS = {"mobilenet_v3_large": {"include_preprocessing": False}}
# the last block of each resolution (strides 4, 8, 16, 32), keras.applications layer names; None: the
# network's output (MobileNetV3's last activation has a counter name, ``activation_<n>``)
STAGE_LAYERS = {
    "efficientnet_b3": ("block2c_add", "block3c_add", "block5e_add", "top_activation"),
    "mobilenet_v2": ("block_2_add", "block_5_add", "block_12_add", "out_relu"),
    "mobilenet_v3_large": ("expanded_conv_2_add", "expanded_conv_5_add", "expanded_conv_11_add", None),
}

MIN_IMAGE_SIZE = 32  # keras.applications refuses smaller inputs


def backbones() -> list[str]:
    return sorted(_BUILDERS)


def _stage_view(application: keras.Model, kind: str) -> keras.Model:
    """``application`` as a multi-output model (``{"stage1": ..., "stage4": ...}``) over the same layers
    and under the same name."""
    taps = [
        application.get_layer(layer).output if layer else application.output for layer in STAGE_LAYERS[kind]
    ]
    if taps[-1] is not application.output:
        raise AssertionError(f"{application.name}: {STAGE_LAYERS[kind][-1]} is not the network's output")
    view = keras.Model(application.inputs, dict(zip(STAGES, taps, strict=True)), name=application.name)
    if [layer.name for layer in view.layers] != [layer.name for layer in application.layers]:
        raise AssertionError(f"{application.name}: the stage view reorders the layers")  # weights by order
    return view


def _whole_backbone_file(path) -> bool:
    """Whether a Keras 3 ``.weights.h5`` was saved from a whole application backbone (its layers
    include the nested network, stored as ``layers/functional``) rather than from the network alone."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            layers = f.get("layers")
            return layers is not None and "functional" in layers
    except OSError as exc:
        raise DataFormatError(path, "a Keras .weights.h5 file", got=str(exc)[:200]) from None


def _load_file_weights(model, application, path) -> None:
    """``.npz`` / ``.keras`` by layer name into the backbone; a Keras ``.weights.h5`` into the whole
    backbone if it was saved from one, else (and a legacy ``.h5``) into the application network (the
    format kdface always took)."""
    if path.endswith((".npz", ".keras")):
        load_weights(model, path)
    elif path.endswith(".weights.h5") and _whole_backbone_file(path):
        model.load_weights(path)
    else:
        application.load_weights(path)


def build_application(
    kind: str,
    *,
    image_size: int,
    weights=None,
    bn_momentum: float | None = None,
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    """A ``keras.applications`` backbone (``kind``: one of :func:`backbones`):
    ``(B, S, S, 3)`` in ``[0, 1]`` -> the backbone output dict. ``kwargs`` go to the application's
    constructor (e.g. ``alpha`` for MobileNetV2).

    ``bn_momentum`` overrides every BatchNormalization's moving-average momentum (``None``: the
    network's own): MobileNetV2 and V3 ship 0.999, whose moving statistics need thousands of steps to settle,
    so a short from-scratch run validates (inference mode) far worse than it trains unless it is lowered.
    """
    try:
        constructor, scale, offset = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown keras.applications backbone {kind!r}; known: {backbones()}") from None
    weights = check_weights(weights, kind, imagenet=True)
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise ConfigError(
            f"{kind} needs an image size of at least {MIN_IMAGE_SIZE}, got {image_size} (--image-size)"
        )
    inputs = keras.Input((image_size, image_size, 3), name="image")
    scaled = keras.layers.Rescaling(scale, offset, name="to_application_range")(inputs)
    application = constructor(
        include_top=False,
        weights=weights if weights in (None, "imagenet") else None,
        input_shape=(image_size, image_size, 3),
        **{**kwargs, **_FIXED_ARGUMENTS.get(kind, {})},
    )
    stages = _stage_view(application, kind)(scaled)
    features = keras.layers.Identity(name="features")(stages["stage4"])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    outputs = backbone_outputs(features, pooled, [stages[s] for s in STAGES])
    model = keras.Model(inputs, outputs, name=name or kind)
    if weights not in (None, "imagenet"):
        _load_file_weights(model, application, weights)
    set_bn_momentum(model, bn_momentum)
    return model


def build_backbone(name: str, image_size: int, weights=None, bn_momentum=None, **kwargs) -> keras.Model:
    """Any registered backbone by name (:func:`kdface.backbones.create_backbone`), with the argument
    order kdface always used; returns the backbone output dict contract."""
    from kdface.backbones.registry import create_backbone

    return create_backbone(name, image_size=image_size, weights=weights, bn_momentum=bn_momentum, **kwargs)
