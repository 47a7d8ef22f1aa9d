"""Vision Transformers (ViT-B/16 and a small ViT for CPU runs) as plain Functional models taking ``[0, 1]``.

The backbone of ViT-SE (spec ``vitse_doe_fer.md`` §1): patch embedding (a ``P x P`` / ``P`` conv) ->
prepend a learned CLS token -> add learned position embeddings -> ``depth`` pre-LayerNorm encoder
blocks (``x + MHA(LN(x))``, then ``x + MLP(LN(x))`` with an exact-GELU MLP) -> final LayerNorm, and
optionally HF's pooler ``tanh(Dense(CLS))``. :data:`VIT_VARIANTS`:

* ``vit_b16``: ViT-B/16 (``google/vit-base-patch16-224-in21k``): patch 16, 12 blocks, width 768, 12
  heads, MLP 3072, LayerNorm epsilon 1e-12 (HF's; ``layer_norm_epsilon=1e-6`` builds timm's), qkv bias;
  85,798,656 parameters (86,389,248 with the pooler), the spec's 85.80 M / 86.39 M. Meant for 224 px
  (a 14 x 14 grid of patches).
* ``vit_tiny``: patch 8, 4 blocks, width 192, 3 heads, MLP 768 (DeiT-Tiny's width, heads and MLP
  ratio): 1,829,568 parameters at 64 px, for the CPU demos at 64-96 px. Patch 8 keeps an 8 x 8 grid
  at 64 px (patch 16 would leave 4 x 4); 4 blocks give one block per stage tap below.

The output dict (:mod:`kdface.backbones.contract`) for a ViT:

* ``"embedding"``: the CLS token after the final LayerNorm ``(B, width)`` (layer ``cls_token``; what
  timm's ``vit_base_patch16_224`` with the head removed returns, ViT-SE variant B's feature);
* ``"stage1"`` .. ``"stage4"``: the patch tokens (CLS dropped) of blocks ``depth * k / 4``
  (k = 1..4; blocks 3, 6, 9, 12 of ViT-B, DPT's taps) as maps ``(B, S/P, S/P, width)``; every stage has
  the stride ``P`` (a ViT does not downsample). Stages 1-3 are the residual stream as it leaves the
  block; ``stage4`` is after the final LayerNorm;
* ``"feature_map"``: ``stage4`` (layer ``features``);
* with ``pooler=True`` also ``"pooled"``: HF ``ViTPooler``, ``tanh(W_p CLS + b_p)`` ``(B, width)``
  (layer ``pooler.dense``; ViT-SE variant A's feature). The in21k checkpoint ships trained pooler
  weights; without a converted checkpoint it is a freshly initialised Dense + tanh.

Input: ``[0, 1]`` RGB, rescaled inside to ``[-1, 1]`` (layer ``to_vit_range``; the in21k checkpoint's
preprocessor uses mean = std = 0.5). The image size is fixed when the model is built (the position
embeddings have one row per patch, plus CLS) and must be a multiple of the patch size.

Only built-in Keras layers hold weights, so a saved model loads without kdface. The CLS token and the
position embeddings are ``Embedding`` layers looked up with index tensors built from the input by
``keras.ops`` (zeros for CLS, ``0..N`` for positions), which Keras serialises as part of the graph.
Layer names are HF ``ViTModel``'s module names (``embeddings.patch_embeddings.projection``,
``embeddings.cls_token``, ``embeddings.position_embeddings``, ``encoder.layer.{i}.layernorm_before``,
``encoder.layer.{i}.attention`` (a ``MultiHeadAttention``: HF's ``attention.attention.query/key/value``
and ``attention.output.dense`` are its ``query``/``key``/``value``/``attention_output`` kernels,
reshaped to ``(width, heads, width/heads)``), ``encoder.layer.{i}.layernorm_after``,
``encoder.layer.{i}.intermediate.dense``, ``encoder.layer.{i}.output.dense``, ``layernorm``,
``pooler.dense``), so a converter is a name mapping plus reshapes. Initialisation is HF's: truncated
normal with std 0.02 for every kernel, the CLS token and the position embeddings; biases zero;
LayerNorms one and zero.

``weights``: ``None`` (from scratch) or a path (an ``.npz`` keyed ``<layer>/<variable>``, a kdface
``.keras`` model holding the same ViT, a ``.weights.h5``). PyTorch checkpoints in Hugging Face names
(``google/vit-base-patch16-224-in21k``'s ``pytorch_model.bin``, pooler included) or timm names convert
with ``python -m kdface.convert vit`` (:mod:`kdface.convert.torch_vit`: the name mapping, the kernel
reshapes above, the fused timm qkv split, a bicubic position-embedding resample for another
``--image-size``; strict)::

    python -m kdface.convert vit --variant vit_b16 --checkpoint pytorch_model.bin --out vit_b16_in21k.npz
    backbone = create_backbone("vit_b16", image_size=224, weights="vit_b16_in21k.npz", pooler=True)

A timm checkpoint's network has LayerNorm epsilon 1e-6: build it with ``layer_norm_epsilon=1e-6``.
With internet, ImageNet-21k weights also come from keras-hub (not a kdface dependency)::

    hub = keras_hub.models.ViTBackbone.from_preset("vit_base_patch16_224_imagenet21k")
    np.savez("vit_b16_in21k.npz", **arrays_from_keras_hub(hub))
    backbone = create_backbone("vit_b16", image_size=224, weights="vit_b16_in21k.npz")

keras-hub's ViT has no pooler, so the ``.npz`` marks ``pooler.dense`` as left out: a ``pooler=True``
model loads it and keeps an initialised pooler (HF's trained pooler comes with the HF checkpoint,
converted as above).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from kdface.backbones.contract import STAGES, backbone_outputs
from kdface.backbones.weights import DROPPED_KEY, check_weights, load_weights
from kdface.errors import ConfigError

VIT_RANGE = (2.0, -1.0)  # [0, 1] -> [-1, 1]: the in21k preprocessor's mean = std = 0.5
INIT_STDDEV = 0.02  # HF ViTConfig.initializer_range


@dataclasses.dataclass(frozen=True)
class ViTArchitecture:
    patch_size: int
    depth: int
    width: int
    heads: int
    mlp_width: int
    layer_norm_epsilon: float = 1e-12

    def stage_blocks(self) -> tuple[int, ...]:
        """The blocks (0-based) whose outputs are ``stage1`` .. ``stage4``: blocks ``depth * k / 4``."""
        return tuple(self.depth * k // len(STAGES) - 1 for k in range(1, len(STAGES) + 1))


VIT_VARIANTS = {
    "vit_b16": ViTArchitecture(patch_size=16, depth=12, width=768, heads=12, mlp_width=3072),
    "vit_tiny": ViTArchitecture(patch_size=8, depth=4, width=192, heads=3, mlp_width=768),
}


def backbones() -> list[str]:
    return sorted(VIT_VARIANTS)


def _initializer():
    return keras.initializers.TruncatedNormal(stddev=INIT_STDDEV)


def _encoder_block(x, index: int, arch: ViTArchitecture, dropout: float, attention_dropout: float):
    """One pre-LN block, HF ``ViTLayer``: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""
    prefix = f"encoder.layer.{index}"
    h = keras.layers.LayerNormalization(epsilon=arch.layer_norm_epsilon, name=f"{prefix}.layernorm_before")(x)
    h = keras.layers.MultiHeadAttention(
        arch.heads,
        arch.width // arch.heads,
        dropout=attention_dropout,
        kernel_initializer=_initializer(),
        name=f"{prefix}.attention",
    )(h, h)
    if dropout:
        h = keras.layers.Dropout(dropout, name=f"{prefix}.attention.output.dropout")(h)
    x = keras.layers.Add(name=f"{prefix}.attention_residual")([x, h])
    h = keras.layers.LayerNormalization(epsilon=arch.layer_norm_epsilon, name=f"{prefix}.layernorm_after")(x)
    h = keras.layers.Dense(
        arch.mlp_width,
        activation="gelu",
        kernel_initializer=_initializer(),
        name=f"{prefix}.intermediate.dense",
    )(h)
    h = keras.layers.Dense(arch.width, kernel_initializer=_initializer(), name=f"{prefix}.output.dense")(h)
    if dropout:
        h = keras.layers.Dropout(dropout, name=f"{prefix}.output.dropout")(h)
    return keras.layers.Add(name=f"{prefix}.output_residual")([x, h])


def _patch_map(tokens, grid: int, width: int, name: str):
    """The patch tokens of ``(B, 1 + grid^2, width)`` (CLS dropped) as a ``(B, grid, grid, width)`` map."""
    patches = keras.layers.Cropping1D((1, 0), name=f"{name}_patches")(tokens)
    return keras.layers.Reshape((grid, grid, width), name=name)(patches)


def build_vit(
    kind: str,
    *,
    image_size: int,
    weights=None,
    bn_momentum: float | None = None,
    name: str | None = None,
    pooler: bool = False,
    dropout: float = 0.0,
    attention_dropout: float = 0.0,
    layer_norm_epsilon: float | None = None,
) -> keras.Model:
    """A ViT (``kind``: a :data:`VIT_VARIANTS` name): ``(B, S, S, 3)`` in ``[0, 1]`` -> the backbone output
    dict (plus ``"pooled"`` with ``pooler=True``); see the module docstring.

    ``dropout`` is HF's ``hidden_dropout_prob`` (after the embeddings, the attention output and the MLP),
    ``attention_dropout`` its ``attention_probs_dropout_prob`` (both 0.0 in ViT-B/16's config).
    ``layer_norm_epsilon`` (``None``: the variant's, HF's 1e-12) sets every LayerNorm's epsilon, e.g.
    1e-6 for timm's ViTs. ``bn_momentum`` is accepted for the registry's common signature; a ViT has
    no BatchNormalization.
    """
    try:
        arch = VIT_VARIANTS[kind]
    except KeyError:
        raise ValueError(f"unknown ViT {kind!r}; known: {backbones()}") from None
    if layer_norm_epsilon is not None:
        if not float(layer_norm_epsilon) > 0:
            raise ConfigError(f"layer_norm_epsilon must be > 0, got {layer_norm_epsilon}")
        arch = dataclasses.replace(arch, layer_norm_epsilon=float(layer_norm_epsilon))
    weights = check_weights(weights, kind)
    if image_size is None or int(image_size) % arch.patch_size or int(image_size) < arch.patch_size:
        raise ConfigError(
            f"{kind} needs a fixed image size that is a multiple of its patch size {arch.patch_size}, "
            f"got {image_size} (--image-size)"
        )
    grid = int(image_size) // arch.patch_size
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(*VIT_RANGE, name="to_vit_range")(inputs)
    x = keras.layers.Conv2D(
        arch.width,
        arch.patch_size,
        strides=arch.patch_size,
        padding="valid",
        kernel_initializer=_initializer(),
        name="embeddings.patch_embeddings.projection",
    )(x)
    patches = keras.layers.Reshape((grid * grid, arch.width), name="embeddings.patch_embeddings.flatten")(x)
    cls_index = ops.zeros_like(patches[:, :1, 0], dtype="int32")  # (B, 1): row 0 of the CLS table
    cls = keras.layers.Embedding(
        1, arch.width, embeddings_initializer=_initializer(), name="embeddings.cls_token"
    )(cls_index)
    tokens = keras.layers.Concatenate(axis=1, name="embeddings.tokens")([cls, patches])
    positions = ops.cumsum(ops.ones_like(tokens[:, :, 0], dtype="int32"), axis=1) - 1  # (B, 1 + N): 0..N
    position_embeddings = keras.layers.Embedding(
        1 + grid * grid,
        arch.width,
        embeddings_initializer=_initializer(),
        name="embeddings.position_embeddings",
    )(positions)
    x = keras.layers.Add(name="embeddings.add")([tokens, position_embeddings])
    if dropout:
        x = keras.layers.Dropout(dropout, name="embeddings.dropout")(x)

    stage_blocks = arch.stage_blocks()
    stages = []
    for i in range(arch.depth):
        x = _encoder_block(x, i, arch, dropout, attention_dropout)
        if i in stage_blocks[:-1]:
            stages.append(_patch_map(x, grid, arch.width, f"stage{len(stages) + 1}"))
    x = keras.layers.LayerNormalization(epsilon=arch.layer_norm_epsilon, name="layernorm")(x)
    features = _patch_map(x, grid, arch.width, "features")
    cls_token = keras.layers.Cropping1D((0, grid * grid), name="cls_crop")(x)
    embedding = keras.layers.Reshape((arch.width,), name="cls_token")(cls_token)
    outputs = backbone_outputs(features, embedding, [*stages, features])
    if pooler:
        outputs["pooled"] = keras.layers.Dense(
            arch.width, activation="tanh", kernel_initializer=_initializer(), name="pooler.dense"
        )(embedding)
    model = keras.Model(inputs, outputs, name=name or kind)
    if weights is not None:
        load_weights(model, weights)
    return model


def arrays_from_keras_hub(hub_backbone) -> dict[str, np.ndarray]:
    """A keras-hub ``ViTBackbone``'s weights keyed like a kdface ViT (``<layer>/<variable>``, the
    ``.npz`` format of :func:`kdface.backbones.weights.load_weights`), with ``pooler.dense`` marked as
    left out (keras-hub's ViT has none). keras-hub is only needed to build ``hub_backbone``."""

    def array(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable))

    embedding = hub_backbone.get_layer("vit_patching_and_embedding")
    encoder = hub_backbone.get_layer("vit_encoder")
    arrays = {
        "embeddings.patch_embeddings.projection/kernel": array(embedding.patch_embedding.kernel),
        "embeddings.patch_embeddings.projection/bias": array(embedding.patch_embedding.bias),
        "embeddings.cls_token/embeddings": array(embedding.class_token).reshape(1, -1),
        "embeddings.position_embeddings/embeddings": array(embedding.position_embedding.embeddings),
        "layernorm/gamma": array(encoder.layer_norm.gamma),
        "layernorm/beta": array(encoder.layer_norm.beta),
    }
    for i, block in enumerate(encoder.encoder_layers):
        prefix = f"encoder.layer.{i}"
        for norm, ours in ((block.layer_norm_1, "layernorm_before"), (block.layer_norm_2, "layernorm_after")):
            arrays[f"{prefix}.{ours}/gamma"] = array(norm.gamma)
            arrays[f"{prefix}.{ours}/beta"] = array(norm.beta)
        for part in ("query", "key", "value", "attention_output"):
            dense = getattr(block.mha, f"{part}_dense" if part != "attention_output" else "output_dense")
            arrays[f"{prefix}.attention/{part}/kernel"] = array(dense.kernel)
            arrays[f"{prefix}.attention/{part}/bias"] = array(dense.bias)
        for dense, ours in ((block.mlp.dense_1, "intermediate.dense"), (block.mlp.dense_2, "output.dense")):
            arrays[f"{prefix}.{ours}/kernel"] = array(dense.kernel)
            arrays[f"{prefix}.{ours}/bias"] = array(dense.bias)
    arrays[DROPPED_KEY] = np.asarray(["pooler.dense"])
    return arrays
