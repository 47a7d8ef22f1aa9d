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

Attention (F-SKD / A-SKD ``--mode cbam``, spec ``fskd_lowres_fr.md`` §1.2): ``attention="cbam_fskd"`` or
``"cbam_askd"`` puts a CBAM in **every** block, after ``bn3`` and before the residual add, and adds its
two maps to the output dict as ``"attention/layer{s}.{i}/channel"`` ``(B, C)`` and
``"attention/layer{s}.{i}/spatial"`` ``(B, H, W, 1)`` (outputs of the same graph; read them in block
order with :func:`kdface.backbones.contract.attention_maps`). The two CBAMs differ on purpose:

* ``"cbam_fskd"`` (the F-SKD repo's ``backbone/attention.py``, Jongchan Park's CBAM): channel gate
  ``Mc = sigmoid(mlp(avg) + mlp(max))`` with the shared ``mlp`` Linear(C -> C/16) -> ReLU ->
  Linear(C/16 -> C), both with bias; spatial gate on ``x * Mc``: ``[max over C, mean over C]`` -> conv
  7x7 (no bias) -> BatchNorm (eps 1e-5, momentum 0.99, torch's 0.01) -> ``Ms = sigmoid``. The maps are
  the **post-sigmoid** ``Mc``, ``Ms``. Layer names are the torch module names
  (``layer1.0.attention.ChannelGate.mlp.1`` / ``.mlp.3``, ``layer1.0.attention.SpatialGate.spatial.conv``
  / ``.spatial.bn``). Init as F-SKD's iresnet: the 7x7 conv ``N(0, 0.1)`` like every conv, the Linears
  torch's default;
* ``"cbam_askd"`` (A-SKD's ``model/backbone.py``, Face_Pytorch's ``CAModule``/``SAModule``): channel
  logits ``a_c = mlp(avg) + mlp(max)`` with the shared ``mlp`` two 1x1 convs without bias (C -> C/16 ->
  C, ReLU between), gate ``sigmoid(a_c)``; spatial logits ``a_s`` = conv 3x3 (no bias, no BatchNorm) of
  ``[mean over C, max over C]`` (the other order) of the channel-gated tensor, gate ``sigmoid(a_s)``.
  The maps are the **pre-sigmoid** logits ``a_c``, ``a_s``. Layer names are A-SKD's
  (``layer1.0.channel_layer.shared_mlp.0`` / ``.2``, ``layer1.0.spatial_layer.conv``; the rest of the
  network keeps insightface's names, and the converter maps A-SKD's ``input_layer`` / ``res_layer`` /
  ``shortcut_layer`` / ``output_layer`` onto them). Init: the CBAM convs xavier-uniform (Keras
  ``glorot_uniform``, the same fans as torch's for convs) as A-SKD; **departure from the original**: the
  rest of the network keeps kdface's ``N(0, 0.1)`` convs and torch-default Linear instead of A-SKD's
  xavier-uniform everywhere (irrelevant once converted weights are loaded).

Channel means and maxima are built-in Keras pooling layers (a ``channels_first`` pool whose window spans
the channel axis), so a saved CBAM model still loads with ``keras.saving.load_model`` without kdface.
A-SKD's embedding head is ``head="fc", dropout=0.4, features_scale=True`` (its BatchNorm1d is trainable);
insightface's and later F-SKD's keep ``features_scale=False`` (gamma fixed at 1), F-SKD v1's is
``head="pool"``.
"""

from __future__ import annotations

import keras

from kdface.backbones import resnet
from kdface.backbones.contract import attention_key, backbone_outputs
from kdface.backbones.weights import check_weights, load_weights
from kdface.errors import ConfigError
from kdface.heads import torch_bias_init, torch_linear_init

IRESNET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
HEADS = ("fc", "pool")
ATTENTIONS = ("none", "cbam_fskd", "cbam_askd")
CBAM_REDUCTION = 16  # both originals: the channel MLP's hidden width is C // 16
CBAM_BN_MOMENTUM = 0.99  # F-SKD's spatial-gate BatchNorm: torch momentum 0.01
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

    def block(self, x, prefix, width, stride, attention="none"):
        """One IBasicBlock; returns ``(output, (channel map, spatial map) or None)``."""
        if stride != 1 or x.shape[-1] != width:
            shortcut = self.bn(self.conv(x, f"{prefix}.downsample.0", width, 1, stride),
                               f"{prefix}.downsample.1")  # fmt: skip
        else:
            shortcut = x
        y = self.bn(x, f"{prefix}.bn1")
        y = self.bn(self.conv(y, f"{prefix}.conv1", width, 3, 1, 1), f"{prefix}.bn2")
        y = self.prelu(y, f"{prefix}.prelu")
        y = self.bn(self.conv(y, f"{prefix}.conv2", width, 3, stride, 1), f"{prefix}.bn3")
        maps = None
        if attention == "cbam_fskd":
            y, maps = self.cbam_fskd(y, f"{prefix}.attention")
        elif attention == "cbam_askd":
            y, maps = self.cbam_askd(y, prefix)
        return keras.layers.Add(name=f"{prefix}.add")([y, shortcut]), maps

    @staticmethod
    def channel_reduce(x, name, kind):
        """``(B, H, W, C) -> (B, H, W, 1)``, the max or mean over channels: a ``channels_first`` pool
        reads axis 1 (H) as the channels and pools the window ``(1, C)`` over ``(W, C)``."""
        pool = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
        return pool((1, x.shape[-1]), data_format="channels_first", name=name)(x)

    def cbam_fskd(self, x, p):
        """F-SKD's CBAM: returns ``(gated x, (Mc (B, C), Ms (B, H, W, 1)))``, the maps post-sigmoid."""
        channels = x.shape[-1]
        hidden = keras.layers.Dense(channels // CBAM_REDUCTION, kernel_initializer=torch_linear_init(),
                                    bias_initializer=torch_bias_init(channels), name=f"{p}.ChannelGate.mlp.1")  # fmt: skip
        relu = keras.layers.ReLU(name=f"{p}.ChannelGate.mlp.2")
        out = keras.layers.Dense(channels, kernel_initializer=torch_linear_init(),
                                 bias_initializer=torch_bias_init(channels // CBAM_REDUCTION),
                                 name=f"{p}.ChannelGate.mlp.3")  # fmt: skip
        avg = keras.layers.GlobalAveragePooling2D(name=f"{p}.ChannelGate.avg_pool")(x)
        mx = keras.layers.GlobalMaxPooling2D(name=f"{p}.ChannelGate.max_pool")(x)
        logits = keras.layers.Add(name=f"{p}.ChannelGate.sum")(
            [out(relu(hidden(avg))), out(relu(hidden(mx)))]
        )
        mc = keras.layers.Activation("sigmoid", name=f"{p}.ChannelGate.sigmoid")(logits)
        scale = keras.layers.Reshape((1, 1, channels), name=f"{p}.ChannelGate.expand")(mc)
        x = keras.layers.Multiply(name=f"{p}.ChannelGate.scale")([x, scale])
        pooled = keras.layers.Concatenate(name=f"{p}.SpatialGate.compress")([
            self.channel_reduce(x, f"{p}.SpatialGate.compress.max", "max"),
            self.channel_reduce(x, f"{p}.SpatialGate.compress.mean", "mean"),
        ])  # fmt: skip
        y = self.conv(pooled, f"{p}.SpatialGate.spatial.conv", 1, 7, 1, 3)
        y = keras.layers.BatchNormalization(momentum=CBAM_BN_MOMENTUM, epsilon=self.bn_epsilon,
                                            name=f"{p}.SpatialGate.spatial.bn")(y)  # fmt: skip
        ms = keras.layers.Activation("sigmoid", name=f"{p}.SpatialGate.sigmoid")(y)
        return keras.layers.Multiply(name=f"{p}.SpatialGate.scale")([x, ms]), (mc, ms)

    def cbam_askd(self, x, p):
        """A-SKD's CBAM: returns ``(gated x, (a_c (B, C), a_s (B, H, W, 1)))``, the maps pre-sigmoid."""
        channels = x.shape[-1]
        xavier = keras.initializers.GlorotUniform()
        c = f"{p}.channel_layer"
        hidden = keras.layers.Conv2D(channels // CBAM_REDUCTION, 1, use_bias=False, kernel_initializer=xavier,
                                     name=f"{c}.shared_mlp.0")  # fmt: skip
        relu = keras.layers.ReLU(name=f"{c}.shared_mlp.1")
        out = keras.layers.Conv2D(channels, 1, use_bias=False, kernel_initializer=xavier,
                                  name=f"{c}.shared_mlp.2")  # fmt: skip
        avg = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{c}.avg_pool")(x)
        mx = keras.layers.GlobalMaxPooling2D(keepdims=True, name=f"{c}.max_pool")(x)
        logits = keras.layers.Add(name=f"{c}.sum")([out(relu(hidden(avg))), out(relu(hidden(mx)))])
        a_c = keras.layers.Reshape((channels,), name=f"{c}.logits")(logits)
        gate = keras.layers.Activation("sigmoid", name=f"{c}.sigmoid")(logits)
        x = keras.layers.Multiply(name=f"{c}.scale")([x, gate])
        s = f"{p}.spatial_layer"
        pooled = keras.layers.Concatenate(name=f"{s}.cat")([
            self.channel_reduce(x, f"{s}.mean", "mean"), self.channel_reduce(x, f"{s}.max", "max")
        ])  # fmt: skip
        pooled = keras.layers.ZeroPadding2D(1, name=f"{s}.conv_pad")(pooled)
        a_s = keras.layers.Conv2D(1, 3, use_bias=False, kernel_initializer=xavier, name=f"{s}.conv")(pooled)
        gate = keras.layers.Activation("sigmoid", name=f"{s}.sigmoid")(a_s)
        return keras.layers.Multiply(name=f"{s}.scale")([x, gate]), (a_c, a_s)


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
    attention: str = "none",
    features_scale: bool = False,
) -> keras.Model:
    """An insightface-layout IResNet: ``(B, S, S, 3)`` RGB in ``[0, 1]`` -> the backbone output dict
    (``feature_map`` the layer-4 map, ``embedding`` the 512-d head, ``stage1..4`` layer1..layer4, and
    with ``attention`` a CBAM's two maps per block, ``"attention/layer{s}.{i}/channel|spatial"``).

    ``image_size`` must be a multiple of 16 with ``head="fc"`` (the Linear's width depends on it).
    ``weights``: ``None``, an ``.npz`` from ``python -m kdface.convert iresnet`` (strict; an ``fc``
    dropped at conversion with ``--drop-fc`` stays initialised, and says so), a kdface ``.keras``
    holding an IResNet of the same layout, or a ``.weights.h5``. ``bn_momentum`` ``None`` is torch's (0.9);
    it sets the network's BatchNorms, not the F-SKD CBAM's (0.99, its original's).
    ``attention``: ``"none"`` (``--mode ir``), ``"cbam_fskd"`` or ``"cbam_askd"`` (see the module
    docstring). ``features_scale``: the ``head="fc"`` BatchNorm1d's gamma is trainable (A-SKD) instead of
    fixed at 1 (insightface, later F-SKD).
    """
    blocks = _blocks(depth)
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
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
    stages, maps = [], {}
    for stage, (width, count) in enumerate(zip(_WIDTHS, blocks, strict=True), start=1):
        for i in range(count):
            prefix = f"layer{stage}.{i}"
            x, block_maps = b.block(x, prefix, width, 2 if i == 0 else 1, attention)
            if block_maps is not None:
                maps[attention_key(prefix, "channel")], maps[attention_key(prefix, "spatial")] = block_maps
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
        embedding = b.bn(y, "features", scale=bool(features_scale))
    outputs = {**backbone_outputs(feature_map, embedding, stages), **maps}
    model = keras.Model(inputs, outputs, name=name or f"iresnet{depth}")
    if weights is not None:
        load_weights(model, weights)
    return model
