"""Backbone weights by layer name: the ``.npz`` format of ``python -m kdface.convert``, taking the backbone
out of a saved kdface ``.keras`` model, and the checks every backbone's ``weights`` argument goes through.

Weights are keyed ``<layer name>/<variable>`` (e.g. ``layer2.0.downsample.0/kernel``); nested models
(the ``keras.applications`` network inside an application backbone) are flattened, so a key names the
weight layer wherever it sits. Assignment is strict, all or nothing.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from kdface.backbones.contract import leaf_layers
from kdface.errors import DataFormatError

# Keras variable names of the layers that hold weights (the converter maps torch names onto these).
CONV_VARIABLES = ("kernel",)
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
DROPPED_KEY = "__dropped_layers__"  # in a converter .npz: layers left out on purpose (--drop-fc)
# what a ResNet / IResNet backbone (torch names) always holds: how backbone_of recognises one
_TORCH_LAYOUT_LAYERS = {"conv1", "layer4.0.conv1"}


def weight_layers(model: keras.Model) -> dict:
    """``{layer name: [(variable name, variable), ...]}`` for every layer of ``model`` (nested models
    flattened) that has weights. Convs, Denses, BatchNormalizations and PReLUs use the converter's
    variable names (``kernel``/``bias``, :data:`BN_VARIABLES`, ``alpha``), a MultiHeadAttention
    ``query``/``key``/``value``/``attention_output`` + ``/kernel``/``/bias``; any other layer its
    variables' own names. Two weight layers with one name are an error (keys would collide)."""
    out = {}
    for layer in leaf_layers(model):
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            variables = [("kernel", layer.kernel)] + ([("bias", layer.bias)] if layer.use_bias else [])
        elif isinstance(layer, keras.layers.BatchNormalization):
            variables = [(n, getattr(layer, n)) for n in BN_VARIABLES if getattr(layer, n, None) is not None]
        elif isinstance(layer, keras.layers.PReLU):
            variables = [("alpha", layer.alpha)]
        elif isinstance(layer, keras.layers.MultiHeadAttention):  # four EinsumDense, each kernel + bias
            variables = [
                (f"{part}/{var}", getattr(dense, var))
                for part, dense in (
                    ("query", layer.query_dense),
                    ("key", layer.key_dense),
                    ("value", layer.value_dense),
                    ("attention_output", layer.output_dense),
                )
                for var in ("kernel", "bias")
                if getattr(dense, var, None) is not None
            ]
        else:
            variables = [(v.name, v) for v in layer.weights]
            if len({n for n, _ in variables}) != len(variables):
                raise TypeError(
                    f"layer {layer.name} ({type(layer).__name__}) has two variables with one name"
                )
        if layer.name in out:
            raise ValueError(f"{model.name}: two weight layers are named {layer.name!r}")
        out[layer.name] = variables
    return out


def model_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    """The backbone's weights keyed ``<layer name>/<variable>`` (the converter's ``.npz`` keys)."""
    return {
        f"{layer}/{var}": np.asarray(keras.ops.convert_to_numpy(v))
        for layer, variables in weight_layers(model).items()
        for var, v in variables
    }


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


def _models_in(saved: keras.Model) -> list:
    """``saved`` and every model nested in it, outermost first."""
    out, seen = [], set()

    def walk(m):
        if id(m) in seen:
            return
        seen.add(id(m))
        out.append(m)
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)

    walk(saved)
    return out


def backbone_of(saved: keras.Model, source, like: keras.Model | None = None) -> keras.Model:
    """The one backbone held by a saved kdface model (a classifier, a deployed student, or a backbone
    saved alone).

    With ``like`` (a backbone to load into), the model nested in ``saved`` (or ``saved`` itself) whose
    weight layers have exactly ``like``'s names; models sharing the very same variables (an application
    backbone and the ``keras.applications`` network inside it) count once, the outermost. Without
    ``like``, or when no name set matches, a ResNet/IResNet: the model whose own layers include
    ``conv1`` and ``layer4.0.conv1`` (works for models saved before the dict output contract, whose
    backbones return lists). Anything but exactly one is a :class:`DataFormatError` naming ``source``.
    """
    models = _models_in(saved)
    if like is not None:
        names = set(weight_layers(like))
        found, variables = [], set()
        for m in models:
            try:
                layers = weight_layers(m)
            except ValueError:  # e.g. a model holding two backbones: their names collide
                continue
            if set(layers) == names:
                ids = frozenset(id(v) for vs in layers.values() for _, v in vs)
                if ids not in variables:
                    variables.add(ids)
                    found.append(m)
        if len(found) == 1:
            return found[0]
    found = [m for m in models if _TORCH_LAYOUT_LAYERS <= {layer.name for layer in m.layers}]
    if len(found) != 1:
        what = f"a kdface model holding exactly one {like.name if like is not None else 'ResNet'} backbone"
        raise DataFormatError(
            source, what, got=f"{len(found)} ({', '.join(m.name for m in found) or 'none'})"
        )
    return found[0]


def read_npz(path) -> tuple[dict, list[str]]:
    """A converter ``.npz``: ``(arrays keyed <layer>/<variable>, layers left out on purpose)``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise DataFormatError(path, "a .npz of backbone weights", got=str(exc)[:200]) from None
    return arrays, [str(n) for n in arrays.pop(DROPPED_KEY, ())]


def load_weights(model: keras.Model, path, unsafe: bool = False) -> None:
    """Load into ``model``: a converter ``.npz`` (strictly, see :func:`assign_arrays`), the backbone of a
    saved kdface ``.keras`` model (e.g. a ``--method fer`` classifier, to start IGKD from a trained
    teacher; strictly too, see :func:`backbone_of`), or a Keras ``.weights.h5`` of the whole backbone."""
    path = os.fspath(path)
    if path.endswith(".keras"):
        from kdface.io.safe_load import load_keras_model

        saved = load_keras_model(path, unsafe=unsafe)
        assign_arrays(model, model_arrays(backbone_of(saved, path, like=model)), path)
    elif path.endswith(".npz"):
        arrays, dropped = read_npz(path)
        assign_arrays(model, arrays, path, dropped_layers=dropped)
        if kept := [layer for layer in dropped if layer in weight_layers(model)]:
            print(
                f"{path}: layers {', '.join(kept)} were left out at conversion; they keep their initialisation"
            )
    else:
        model.load_weights(path)


WEIGHT_FILES = "an .npz from `python -m kdface.convert`, a kdface .keras model, or .weights.h5"
WEIGHT_SUFFIXES = (".npz", ".keras", ".h5", ".hdf5")  # what load_weights reads (.weights.h5 included)


def check_weights(weights, backbone: str, imagenet: bool = False, flag: str | None = None):
    """``weights`` as ``None``, ``"imagenet"`` or a path string; ``"imagenet"`` only where the backbone
    has such weights (``imagenet``; else :class:`~kdface.errors.ConfigError`), and a path must be an
    existing file (:class:`~kdface.errors.MissingFileError`, a ``FileNotFoundError``). ``flag`` (the
    option that set ``weights``, e.g. ``--t-checkpoint``) is named in the messages."""
    from kdface.errors import ConfigError
    from kdface.io.paths import require_file

    if weights is None:
        return None
    named = f"{flag} {weights}" if flag else f"weights={weights!r}"
    if weights == "imagenet":
        if imagenet:
            return weights
        from kdface.backbones.registry import imagenet_backbones

        raise ConfigError(
            f"{named} is only available for the keras.applications backbones "
            f"({', '.join(imagenet_backbones())}); {backbone} takes none (from scratch) or a weights file "
            f"({WEIGHT_FILES})"
        )
    if not isinstance(weights, str | os.PathLike):
        raise TypeError(f"weights must be None, 'imagenet' or a path, got {type(weights).__name__}")
    hint = f"{backbone} takes {WEIGHT_FILES}" + (f"; leave {flag} out to start from scratch" if flag else "")
    path = os.fspath(require_file(weights, flag or f"{backbone} weights file", what="file", hint=hint))
    if not path.endswith(WEIGHT_SUFFIXES):
        raise DataFormatError(f"{flag} {path}" if flag else path, f"a weights file: {WEIGHT_FILES}",
                              got=os.path.basename(path))  # fmt: skip
    return path
