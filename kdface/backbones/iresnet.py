"""IResNet (insightface ``arcface_torch`` layout) as plain Functional models taking images in ``[0, 1]``.

The backbone of SCN's third-party IResNet-18 variant (spec ``igkd_scn_fer.md`` §B1) and of F-SKD's
iResNet-50 (spec ``fskd_lowres_fr.md`` §1.1):

* stem: conv 3x3/1 (no bias) -> BN -> PReLU, at full resolution;
* 4 stages of ``IBasicBlock`` (widths 64/128/256/512), the **first block of every stage has stride 2**
  (S -> S/2 -> S/4 -> S/8 -> S/16): BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the
  shortcut (1x1 conv stride s + BN when the shape changes, else identity); no activation after the add;
* the embedding head, ``head="fc"`` (insightface, "Option E"): BN2d -> dropout -> flatten in torch's
  channel-first order -> Linear(512 * (S/16)^2 -> 512) -> BatchNorm1d with gamma fixed at 1
  (insightface freezes it; here ``scale=False``), or ``head="pool"`` (F-SKD v1, "Option A"): global
  average of the layer-4 map.

Depths: 18 [2, 2, 2, 2], 34 [3, 4, 6, 3], 50 [3, 4, 14, 3], 100 [3, 13, 30, 3]. The model returns the
backbone output dict (:mod:`kdface.backbones.contract`): ``"feature_map"`` the layer-4 map
``(B, S/16, S/16, 512)``, ``"embedding"`` the head's ``(B, 512)``, and ``"stage1"`` .. ``"stage4"``
the layers ``layer1_out`` .. ``layer4_out`` (strides 2/4/8/16; F-SKD's distillation taps;
``stage4`` is ``feature_map``).

Keras layer names are insightface's module names (``conv1``, ``bn1``, ``prelu``, ``layer1.0.bn1``,
``layer1.0.conv1``, ``layer1.0.bn2``, ``layer1.0.prelu``, ``layer1.0.conv2``, ``layer1.0.bn3``,
``layer1.0.downsample.0/1``, ``bn2``, ``fc``, ``features``), so ``python -m kdface.convert iresnet``
is a name mapping. Numerics follow torch: explicit zero padding + ``'valid'`` convs, BN epsilon 1e-5
and momentum 0.9 (torch's 0.1), PReLU per channel with alpha 0.25, conv weights ``N(0, 0.1)`` as
insightface initialises them.

Input normalisation happens inside the model: ``"arcface"`` (``(x - 0.5) / 0.5``, what insightface's
ArcFace weights were trained with) or ``"imagenet"`` (mean/std; what SCN's third-party code feeds
them, a mismatch for face-pretrained weights: see ``docs/scn.md``).
"""

from __future__ import annotations

import keras

from kdface.backbones import resnet
from kdface.backbones.contract import backbone_outputs
from kdface.backbones.weights import check_weights, load_weights
from kdface.errors import ConfigError
from kdface.heads import torch_bias_init, torch_linear_init

IRESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
HEADS = ("fc", "pool")
NORMALIZATIONS = {
    "arcface": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": (resnet.IMAGENET_MEAN, resnet.IMAGENET_STD),
}
EMBEDDING_SIZE = 512
_WIDTHS = (64, 128, 256, 512)


def _blocks(depth):
    try:
        return IRESNET_DEPTHS[int(depth)]
    except (KeyError, ValueError, TypeError):
        raise ValueError(f"unknown IResNet depth {depth!r}; known: {sorted(IRESNET_DEPTHS)}") from None


class _Builder:
    def __init__(self, bn_momentum, bn_epsilon):
        self.bn_momentum, self.bn_epsilon = float(bn_momentum), float(bn_epsilon)

    def conv(self, x, name, filters, kernel, stride=1, pad=0):
        if pad:
            x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                                   kernel_initializer=keras.initializers.RandomNormal(0.0, 0.1),
                                   name=name)(x)  # fmt: skip

    def bn(self, x, name, scale=True):
        return keras.layers.BatchNormalization(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                               scale=scale, name=name)(x)  # fmt: skip

    def prelu(self, x, name):
        return keras.layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
        )(x)

    def block(self, x, prefix, width, stride):
        if stride != 1 or x.shape[-1] != width:
            shortcut = self.bn(self.conv(x, f"{prefix}.downsample.0", width, 1, stride),
                               f"{prefix}.downsample.1")  # fmt: skip
        else:
            shortcut = x
        y = self.bn(x, f"{prefix}.bn1")
        y = self.bn(self.conv(y, f"{prefix}.conv1", width, 3, 1, 1), f"{prefix}.bn2")
        y = self.prelu(y, f"{prefix}.prelu")
        y = self.bn(self.conv(y, f"{prefix}.conv2", width, 3, stride, 1), f"{prefix}.bn3")
        return keras.layers.Add(name=f"{prefix}.add")([y, shortcut])


def build_iresnet(
    depth: int,
    image_size: int = 112,
    weights=None,
    head: str = "fc",
    dropout: float = 0.0,
    normalization: str = "arcface",
    bn_momentum: float | None = 0.9,
    bn_epsilon: float = 1e-5,
    name: str | None = None,
) -> keras.Model:
    """An insightface-layout IResNet: ``(B, S, S, 3)`` RGB in ``[0, 1]`` -> the backbone output dict
    (``feature_map`` the layer-4 map, ``embedding`` the 512-d head, ``stage1..4`` layer1..layer4).

    ``image_size`` must be a multiple of 16 with ``head="fc"`` (the Linear's width depends on it).
    ``weights``: ``None``, an ``.npz`` from ``python -m kdface.convert iresnet`` (strict; an ``fc``
    dropped at conversion with ``--drop-fc`` stays initialised, and says so), a kdface ``.keras``
    holding an IResNet of the same layout, or a ``.weights.h5``. ``bn_momentum`` ``None`` is torch's (0.9).
    """
    blocks = _blocks(depth)
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r}")
    if head == "fc" and (image_size is None or image_size % 16):
        raise ConfigError(
            f"iresnet{depth} (head='fc') needs an image size that is a multiple of 16, got {image_size} "
            "(--image-size 112, the ArcFace size, or e.g. 96, 128)"
        )
    weights = check_weights(weights, f"iresnet{depth}")
    b = _Builder(0.9 if bn_momentum is None else bn_momentum, bn_epsilon)
    mean, std = NORMALIZATIONS[normalization]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                                   name=f"{normalization}_normalize")(inputs)  # fmt: skip
    x = b.prelu(b.bn(b.conv(x, "conv1", 64, 3, 1, 1), "bn1"), "prelu")
    stages = []
    for stage, (width, count) in enumerate(zip(_WIDTHS, blocks, strict=True), start=1):
        for i in range(count):
            x = b.block(x, f"layer{stage}.{i}", width, 2 if i == 0 else 1)
        x = keras.layers.Identity(name=f"layer{stage}_out")(x)
        stages.append(x)
    feature_map = x
    if head == "pool":
        embedding = keras.layers.GlobalAveragePooling2D(name="pool")(feature_map)
    else:
        y = b.bn(feature_map, "bn2")
        y = keras.layers.Dropout(dropout, name="dropout")(y)
        # torch flattens (C, H, W): put channels first so a converted fc weight applies unchanged
        y = keras.layers.Permute((3, 1, 2), name="to_channels_first")(y)
        y = keras.layers.Flatten(name="flatten")(y)
        y = keras.layers.Dense(EMBEDDING_SIZE, kernel_initializer=torch_linear_init(),
                               bias_initializer=torch_bias_init(y.shape[-1]), name="fc")(y)  # fmt: skip
        embedding = b.bn(y, "features", scale=False)
    outputs = backbone_outputs(feature_map, embedding, stages)
    model = keras.Model(inputs, outputs, name=name or f"iresnet{depth}")
    if weights is not None:
        load_weights(model, weights)
    return model
