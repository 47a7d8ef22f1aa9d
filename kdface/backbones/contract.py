"""The one output contract of every kdface backbone, and helpers that read it.

A backbone is a plain Functional ``keras.Model`` taking ``(B, S, S, 3)`` RGB in ``[0, 1]`` (its input
normalisation is a layer inside it) whose output is a dict with the keys :data:`BACKBONE_OUTPUTS`:

* ``"feature_map"``: the last stage's map ``(B, h, w, C)``;
* ``"embedding"``: the backbone's feature vector ``(B, D)`` (the global average of ``feature_map``, or
  an embedding head such as IResNet's fc + BatchNorm1d);
* ``"stage1"`` .. ``"stage4"``: the four stage outputs, shallow to deep (``stage4`` is the same map as
  ``feature_map``).

A backbone may add more keys. Those with attention (IResNet ``attention="cbam_fskd"|"cbam_askd"``) add
two maps per block, ``"attention/<block>/channel"`` ``(B, C)`` and ``"attention/<block>/spatial"``
``(B, H, W, 1)``, outputs of the same graph; :func:`attention_maps` returns them in block order and
:func:`attention_blocks` names the blocks (both empty for a backbone without attention).

Callers take outputs by key (``backbone(images)["embedding"]``) and widths from
:func:`embedding_size` / :func:`feature_channels` / :func:`backbone_spec`, never by position.
"""

from __future__ import annotations

import dataclasses
import re

import keras

STAGES = ("stage1", "stage2", "stage3", "stage4")
BACKBONE_OUTPUTS = ("feature_map", "embedding", *STAGES)


def backbone_outputs(feature_map, embedding, stages) -> dict:
    """The contract's output dict from the tensors of a Functional graph (``stages``: four maps)."""
    stages = list(stages)
    if len(stages) != len(STAGES):
        raise ValueError(f"a backbone has {len(STAGES)} stage outputs, got {len(stages)}")
    return {"feature_map": feature_map, "embedding": embedding, **dict(zip(STAGES, stages, strict=True))}


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What callers need to know about a backbone, read from its outputs.

    ``stage_strides`` are input size / map size (``None`` where the model takes any input size)."""

    name: str
    embedding_size: int
    feature_channels: int
    stage_channels: tuple[int, int, int, int]
    stage_strides: tuple[int | None, int | None, int | None, int | None]


def _outputs(model: keras.Model, keys=BACKBONE_OUTPUTS) -> dict:
    """``model``'s output dict, holding at least ``keys`` (a method's own stand-in network may provide
    only the outputs it reads)."""
    outputs = getattr(model, "output", None)
    if not isinstance(outputs, dict) or not set(keys) <= set(outputs):
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ValueError(
            f"{getattr(model, 'name', model)!r} is not a kdface backbone: its output must be a dict with "
            f"keys {list(keys)}, got {got}"
        )
    return outputs


def backbone_spec(model: keras.Model) -> BackboneSpec:
    """Embedding width, feature-map channels, and the stages' channels and strides of ``model``."""
    outputs = _outputs(model)
    size = model.input.shape[1] if not isinstance(model.input, dict | list | tuple) else None

    def stride(tensor):
        side = tensor.shape[1]
        return size // side if size and side else None

    return BackboneSpec(
        name=model.name,
        embedding_size=int(outputs["embedding"].shape[-1]),
        feature_channels=int(outputs["feature_map"].shape[-1]),
        stage_channels=tuple(int(outputs[s].shape[-1]) for s in STAGES),
        stage_strides=tuple(stride(outputs[s]) for s in STAGES),
    )


def embedding_size(model: keras.Model) -> int:
    """Width ``D`` of the backbone's ``"embedding"`` output."""
    return int(_outputs(model, ("embedding",))["embedding"].shape[-1])


def feature_channels(model: keras.Model) -> int:
    """Channels ``C`` of the backbone's ``"feature_map"`` output."""
    return int(_outputs(model, ("feature_map",))["feature_map"].shape[-1])


def leaf_layers(model: keras.Model) -> list:
    """Every layer of ``model``, nested models flattened (depth first, each layer once)."""
    out, seen = [], set()

    def walk(m):
        for layer in m.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, keras.Model):
                walk(layer)
            else:
                out.append(layer)

    walk(model)
    return out


def set_bn_momentum(model: keras.Model, momentum) -> None:
    """Set the moving-average momentum of every BatchNormalization in ``model`` (nested ones too);
    ``None`` keeps each layer's own."""
    if momentum is None:
        return
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


# --- attention maps: optional extra outputs (F-SKD / A-SKD CBAM backbones) --------------------------------
ATTENTION_PREFIX = "attention/"
ATTENTION_KINDS = ("channel", "spatial")


def attention_key(block: str, kind: str) -> str:
    """The output key of ``block``'s ``kind`` map: ``"attention/layer1.0/channel"``."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, got {kind!r}")
    return f"{ATTENTION_PREFIX}{block}/{kind}"


def _natural(text: str):
    """Sort key reading digit runs as numbers, so ``layer3.10`` comes after ``layer3.9``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def attention_blocks(model_or_outputs) -> list[str]:
    """The blocks (e.g. ``"layer1.0"``) whose attention maps a backbone outputs, in network order;
    ``[]`` for a backbone without attention. Takes a backbone or its output dict; a block with only
    one of the two maps is a ``ValueError``."""
    outputs = model_or_outputs if isinstance(model_or_outputs, dict) else _outputs(model_or_outputs, ())
    kinds: dict[str, set] = {}
    for key in outputs:
        if isinstance(key, str) and key.startswith(ATTENTION_PREFIX):
            block, _, kind = key[len(ATTENTION_PREFIX) :].rpartition("/")
            kinds.setdefault(block, set()).add(kind)
    incomplete = sorted(b for b, k in kinds.items() if k != set(ATTENTION_KINDS))
    if incomplete:
        raise ValueError(
            f"attention outputs come in pairs {ATTENTION_KINDS} per block; blocks {incomplete} do not"
        )
    return sorted(kinds, key=_natural)


def attention_maps(outputs: dict) -> list[tuple]:
    """``[(channel, spatial), ...]`` in block order from a backbone's output dict (what a model call
    returned, or ``model.output``); ``[]`` for a backbone without attention. Shapes ``(B, C)`` and
    ``(B, H, W, 1)``; which quantity they hold (post-sigmoid gates or pre-sigmoid logits) is the
    backbone's (:mod:`kdface.backbones.iresnet`)."""
    return [tuple(outputs[attention_key(b, k)] for k in ATTENTION_KINDS) for b in attention_blocks(outputs)]
