"""ResNet-18/50 in the torchvision layout, as plain Functional models taking images in ``[0, 1]``.

This is the backbone of IGKD and SCN (spec ``igkd_scn_fer.md`` §A1, §C1): conv1 7×7/2 pad 3 → bn1 →
ReLU → maxpool 3×3/2 pad 1 → layer1..layer4, with **no fc head**. The model returns two outputs:

* the layer-4 feature map ``(B, S/32, S/32, C)`` (layer ``"features"``), and
* its global average ``(B, C)`` (layer ``"pool"``),

with ``C`` = 512 (ResNet-18, BasicBlock [2, 2, 2, 2]) or 2048 (ResNet-50, Bottleneck [3, 4, 6, 3]).

Keras layer names are the torchvision module names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``layer2.0.downsample.1``...; Keras 3 accepts dots in layer names, only
``/`` is refused), so converting a PyTorch state dict is a name mapping
(:mod:`kdface.convert.torch_resnet`). The layers torch has no parameters for are named after the
layer they serve (``conv1_pad``, ``layer1.0.conv2_pad``, ``layer1.0.add``, ``layer1.0.relu_out``...).

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
a saved kdface ``.keras`` model holding a ResNet of the same depth (its backbone is taken, strictly),
or a ``.weights.h5`` saved from a model of the same depth.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from kdface.errors import DataFormatError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# depth -> (block kind, blocks per stage)
RESNET_DEPTHS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}
STRIDE_ON = ("3x3", "1x1")
_WIDTHS = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}
# Keras variable names of the layers that hold weights (the converter maps torch names onto these).
CONV_VARIABLES = ("kernel",)
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


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
    image_size: int = 224,
    weights=None,
    bn_momentum: float = 0.9,
    bn_epsilon: float = 1e-5,
    name: str | None = None,
    stride_on: str = "3x3",
) -> keras.Model:
    """A torchvision-layout ResNet: ``(B, S, S, 3)`` in ``[0, 1]`` -> ``[layer-4 map, pooled]``.

    ``image_size`` may be ``None`` for a model that accepts any size (at least 32 px). See the
    module docstring for ``weights`` and ``stride_on``.
    """
    kind, blocks = _depth_spec(depth)
    if stride_on not in STRIDE_ON:
        raise ValueError(f"stride_on must be one of {STRIDE_ON}, got {stride_on!r}")
    if stride_on != "3x3" and kind != "bottleneck":
        raise ValueError(f"stride_on={stride_on!r} only applies to bottleneck ResNets (depth 50)")
    if weights is not None and not os.path.exists(weights):
        raise FileNotFoundError(f"ResNet weights file {weights!r} does not exist (expected None or a path)")
    b = _Builder(bn_momentum, bn_epsilon)
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
    for stage, (width, count) in enumerate(zip(_WIDTHS, blocks, strict=True), start=1):
        for i in range(count):
            stride = 2 if (i == 0 and stage > 1) else 1
            x = block(x, f"layer{stage}.{i}", width, stride, stride_on)
    features = keras.layers.Identity(name="features")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    model = keras.Model(inputs, [features, pooled], name=name or f"resnet{depth}")
    if weights is not None:
        load_weights(model, weights)
    return model


def weight_layers(model: keras.Model):
    """``{layer name: [(variable name, variable), ...]}`` for every layer of ``model`` that has weights
    (convs, BatchNormalizations, PReLUs, Denses); raises if some other layer holds weights."""
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out[layer.name] = [("kernel", layer.kernel)] + ([("bias", layer.bias)] if layer.use_bias else [])
        elif isinstance(layer, keras.layers.BatchNormalization):
            out[layer.name] = [
                (n, getattr(layer, n)) for n in BN_VARIABLES if getattr(layer, n, None) is not None
            ]
        elif isinstance(layer, keras.layers.PReLU):
            out[layer.name] = [("alpha", layer.alpha)]
        elif isinstance(layer, keras.layers.Dense):
            out[layer.name] = [("kernel", layer.kernel)] + ([("bias", layer.bias)] if layer.use_bias else [])
        elif layer.weights:
            raise TypeError(
                f"unexpected layer with weights in a backbone: {layer.name} ({type(layer).__name__})"
            )
    return out


def model_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    """The backbone's weights keyed ``<layer name>/<variable>`` (the converter's ``.npz`` keys)."""
    return {
        f"{layer}/{var}": np.asarray(keras.ops.convert_to_numpy(v))
        for layer, variables in weight_layers(model).items()
        for var, v in variables
    }


DROPPED_KEY = "__dropped_layers__"  # in a converter .npz: layers left out on purpose (--drop-fc)


def assign_arrays(model: keras.Model, arrays: dict, source, dropped_layers=()) -> int:
    """Set every backbone variable from ``arrays`` (keys ``<layer>/<variable>``), all or nothing.

    Any missing key, unexpected key or wrong shape is a :class:`DataFormatError` naming ``source``
    and listing the names; nothing is assigned in that case. ``dropped_layers`` are layers the
    file leaves out on purpose (they keep their initialisation). Returns how many arrays were assigned.
    """
    targets = {
        f"{layer}/{var}": v
        for layer, variables in weight_layers(model).items()
        if layer not in dropped_layers
        for var, v in variables
    }
    missing = sorted(set(targets) - set(arrays))
    unexpected = sorted(set(arrays) - set(targets))
    wrong = sorted(
        f"{k} {tuple(np.shape(arrays[k]))} != model {tuple(targets[k].shape)}"
        for k in set(targets) & set(arrays)
        if tuple(np.shape(arrays[k])) != tuple(targets[k].shape)
    )
    if missing or unexpected or wrong:
        raise DataFormatError(
            source,
            mismatch_message(f"the {len(targets)} weights of {model.name}", missing, unexpected, wrong),
        )
    for key, variable in targets.items():
        variable.assign(np.asarray(arrays[key], dtype=variable.dtype))
    return len(targets)


def mismatch_message(what, missing, unexpected, wrong, limit=12) -> str:
    def listing(label, names):
        shown = ", ".join(names[:limit]) + (
            f", ... ({len(names) - limit} more)" if len(names) > limit else ""
        )
        return f"{label} {len(names)}: [{shown}]"

    parts = [
        listing(label, names)
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
        if names
    ]
    return f"{what} exactly; " + "; ".join(parts)


def backbone_of(saved: keras.Model, source) -> keras.Model:
    """The one ResNet/IResNet backbone nested in a saved kdface model (a classifier or a deployed student):
    the sub-model whose layers include ``conv1`` and ``layer4.0.conv1``."""
    found = [
        layer
        for layer in saved.layers
        if isinstance(layer, keras.Model)
        and {"conv1", "layer4.0.conv1"} <= {sub.name for sub in layer.layers}
    ]
    if len(found) != 1:
        raise DataFormatError(source, "a kdface model holding exactly one ResNet backbone",
                              got=f"{len(found)} ({', '.join(m.name for m in found) or 'none'})")  # fmt: skip
    return found[0]


def load_weights(model: keras.Model, path, unsafe: bool = False) -> None:
    """Load a converter ``.npz`` (strictly, see :func:`assign_arrays`), the backbone of a saved kdface
    ``.keras`` model (e.g. a ``--method fer`` classifier, to start IGKD from a trained teacher;
    strictly too), or a Keras ``.weights.h5``."""
    path = str(path)
    if path.endswith(".keras"):
        from kdface.io.safe_load import load_keras_model

        saved = load_keras_model(path, unsafe=unsafe)
        assign_arrays(model, model_arrays(backbone_of(saved, path)), path)
    elif path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError) as exc:
            raise DataFormatError(path, "a .npz of backbone weights", got=str(exc)[:200]) from None
        dropped = [str(n) for n in arrays.pop(DROPPED_KEY, ())]
        assign_arrays(model, arrays, path, dropped_layers=dropped)
        if dropped:
            print(
                f"{path}: layers {', '.join(dropped)} were left out at conversion; they keep their initialisation"
            )
    else:
        model.load_weights(path)
