"""The one output contract of every kdface backbone, and helpers that read it.

A backbone is a plain Functional ``keras.Model`` taking ``(B, S, S, 3)`` RGB in ``[0, 1]`` (its input
normalisation is a layer inside it) whose output is a dict with the keys :data:`BACKBONE_OUTPUTS`:

* ``"feature_map"``: the last stage's map ``(B, h, w, C)``;
* ``"embedding"``: the backbone's feature vector ``(B, D)`` (the global average of ``feature_map``, or
  an embedding head such as IResNet's fc + BatchNorm1d);
* ``"stage1"`` .. ``"stage4"``: the four stage outputs, shallow to deep (``stage4`` is the same map as
  ``feature_map``).

Callers take outputs by key (``backbone(images)["embedding"]``) and widths from
:func:`embedding_size` / :func:`feature_channels` / :func:`backbone_spec`, never by position.
"""

from __future__ import annotations

import dataclasses

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
