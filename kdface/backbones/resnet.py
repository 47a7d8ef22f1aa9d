"""ResNet-18/50 in the torchvision layout, as plain Functional models taking images in ``[0, 1]``.

This is the backbone of IGKD and SCN (spec ``igkd_scn_fer.md`` §A1, §C1): conv1 7×7/2 pad 3 → bn1 →
ReLU → maxpool 3×3/2 pad 1 → layer1..layer4, with **no fc head**. The model returns the backbone
output dict (:mod:`kdface.backbones.contract`):

* ``"feature_map"``: the layer-4 map ``(B, S/32, S/32, C)`` (layer ``"features"``),
* ``"embedding"``: its global average ``(B, C)`` (layer ``"pool"``),
* ``"stage1"`` .. ``"stage4"``: the outputs of layer1..layer4 (layers ``layer1_out`` .. ``layer4_out``,
  strides 4/8/16/32),

with ``C`` = 512 (ResNet-18, BasicBlock [2, 2, 2, 2]) or 2048 (ResNet-50, Bottleneck [3, 4, 6, 3]).

Keras layer names are the torchvision module names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``layer2.0.downsample.1``...; Keras 3 accepts dots in layer names, only
``/`` is refused), so converting a PyTorch state dict is a name mapping
(:mod:`kdface.convert.torch_resnet`). The layers torch has no parameters for are named after the
layer they serve (``conv1_pad``, ``layer1.0.conv2_pad``, ``layer1.0.add``, ``layer1.0.relu_out``...)
or after the tap (``layer1_out``, ``features``, ``pool``).

Numerics follow torch so converted weights give torch's outputs (max abs difference ~1e-5, see
``tests/test_resnet_convert.py``):

* The ImageNet mean/std normalisation (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225) is a
  ``Normalization`` layer inside the model (IGKD and the face-pretrained checkpoints all use it). It
  is a built-in layer, so the model saves and loads with ``safe_mode`` (no ``Lambda``).
* Padding is explicit (``ZeroPadding2D`` then a ``'valid'`` conv/pool): Keras ``'same'`` pads
  stride-2 layers asymmetrically (more at the bottom/right) while torch pads symmetrically.
* Convolutions have no bias, Kaiming-normal fan-out init (torchvision's); BatchNormalization has
  momentum 0.9 (torch's 0.1), epsilon 1e-5, gamma 1 and beta 0.
* ``stride_on`` (ResNet-50 only): ``"3x3"`` (default) is torchvision's v1.5 bottleneck, which IGKD
  uses. ``"1x1"`` is the original (Caffe) v1 bottleneck that puts the stride on the first 1×1 conv;
  the VGGFace2 ``resnet50_ft`` weights were trained that way, so load them into a ``"1x1"`` model to
  get the network they were trained as (spec §A7.2; IGKD itself ignores this). Note the other
  VGGFace2 caveat, which no option here fixes: those weights expect BGR ``[0, 255]`` input minus the
  VGGFace2 mean, not ImageNet-normalised RGB.

``weights`` is ``None`` (from scratch), or a path to a ``.npz`` written by
``python -m kdface.convert resnet`` (keys ``<layer name>/<variable>``, every variable exactly once),
a saved kdface ``.keras`` model holding a ResNet of the same depth (its backbone is taken, strictly,
by :func:`kdface.backbones.weights.backbone_of`), or a ``.weights.h5`` saved from a model of the same
depth. ``"imagenet"`` is refused (a ``ValueError`` naming the backbones that take it): convert
torchvision's checkpoint instead.
"""

from __future__ import annotations

import keras

from kdface.backbones.contract import backbone_outputs
from kdface.backbones.weights import (  # noqa: F401  (re-exported: the converter and callers import them here)
    BN_VARIABLES,
    CONV_VARIABLES,
    DROPPED_KEY,
    assign_arrays,
    backbone_of,
    check_weights,
    load_weights,
    mismatch_message,
    model_arrays,
    weight_layers,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# depth -> (block kind, blocks per stage)
RESNET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}
STRIDE_ON = ("3x3", "1x1")
_WIDTHS = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}


def feature_channels(depth: int) -> int:
    kind, _ = _depth_spec(depth)
    return _WIDTHS[-1] * _EXPANSION[kind]


def _depth_spec(depth):
    try:
        return RESNET_DEPTHS[int(depth)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"unknown ResNet depth {depth!r}; known: {sorted(RESNET_DEPTHS)}") from None


class _Builder:
    def __init__(self, bn_momentum, bn_epsilon):
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)

    def conv(self, x, name, filters, kernel, stride=1, pad=0):
        if pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="valid",
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal"),
            name=name,
        )(x)

    def bn(self, x, name):
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            gamma_initializer="ones",
            beta_initializer="zeros",
            name=name,
        )(x)

    def relu(self, x, name):
        return keras.layers.ReLU(name=name)(x)

    def shortcut(self, x, prefix, filters, stride):
        if stride == 1 and x.shape[-1] == filters:
            return x
        s = self.conv(x, f"{prefix}.downsample.0", filters, 1, stride)
        return self.bn(s, f"{prefix}.downsample.1")

    def basic(self, x, prefix, width, stride, stride_on):
        shortcut = self.shortcut(x, prefix, width, stride)
        y = self.relu(
            self.bn(self.conv(x, f"{prefix}.conv1", width, 3, stride, 1), f"{prefix}.bn1"), f"{prefix}.relu1"
        )
        y = self.bn(self.conv(y, f"{prefix}.conv2", width, 3, 1, 1), f"{prefix}.bn2")
        y = keras.layers.Add(name=f"{prefix}.add")([y, shortcut])
        return self.relu(y, f"{prefix}.relu_out")

    def bottleneck(self, x, prefix, width, stride, stride_on):
        out = width * _EXPANSION["bottleneck"]
        shortcut = self.shortcut(x, prefix, out, stride)
        s1, s3 = (1, stride) if stride_on == "3x3" else (stride, 1)
        y = self.relu(
            self.bn(self.conv(x, f"{prefix}.conv1", width, 1, s1), f"{prefix}.bn1"), f"{prefix}.relu1"
        )
        y = self.relu(
            self.bn(self.conv(y, f"{prefix}.conv2", width, 3, s3, 1), f"{prefix}.bn2"), f"{prefix}.relu2"
        )
        y = self.bn(self.conv(y, f"{prefix}.conv3", out, 1), f"{prefix}.bn3")
        y = keras.layers.Add(name=f"{prefix}.add")([y, shortcut])
        return self.relu(y, f"{prefix}.relu_out")


def build_resnet(
    depth: int,
    image_size: int | None = 224,
    weights=None,
    bn_momentum: float | None = 0.9,
    bn_epsilon: float = 1e-5,
    name: str | None = None,
    stride_on: str = "3x3",
) -> keras.Model:
    """A torchvision-layout ResNet: ``(B, S, S, 3)`` in ``[0, 1]`` -> the backbone output dict
    (:data:`kdface.backbones.BACKBONE_OUTPUTS`; strides 4/8/16/32, ``embedding`` the pooled layer 4).

    ``image_size`` may be ``None`` for a model that accepts any size (at least 32 px). ``bn_momentum``
    ``None`` is torch's (0.9 in Keras terms). See the module docstring for ``weights`` and ``stride_on``.
    """
    kind, blocks = _depth_spec(depth)
    if stride_on not in STRIDE_ON:
        raise ValueError(f"stride_on must be one of {STRIDE_ON}, got {stride_on!r}")
    if stride_on != "3x3" and kind != "bottleneck":
        raise ValueError(f"stride_on={stride_on!r} only applies to bottleneck ResNets (depth 50)")
    weights = check_weights(weights, f"resnet{depth}")
    b = _Builder(0.9 if bn_momentum is None else bn_momentum, bn_epsilon)
    block = getattr(b, kind)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Normalization(
        mean=list(IMAGENET_MEAN), variance=[s * s for s in IMAGENET_STD], name="imagenet_normalize"
    )(inputs)
    x = b.relu(b.bn(b.conv(x, "conv1", 64, 7, 2, 3), "bn1"), "relu")
    # torch's MaxPool2d pads with -inf; its input here comes after a ReLU, so it is >= 0 and zero
    # padding gives the same maxima.
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)
    stages = []
    for stage, (width, count) in enumerate(zip(_WIDTHS, blocks, strict=True), start=1):
        for i in range(count):
            stride = 2 if (i == 0 and stage > 1) else 1
            x = block(x, f"layer{stage}.{i}", width, stride, stride_on)
        x = keras.layers.Identity(name=f"layer{stage}_out")(x)
        stages.append(x)
    features = keras.layers.Identity(name="features")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    model = keras.Model(inputs, backbone_outputs(features, pooled, stages), name=name or f"resnet{depth}")
    if weights is not None:
        load_weights(model, weights)
    return model
