"""The ViT backbones (``vit_b16``, ``vit_tiny``): the spec's parameter counts, what each output holds,
weights by layer name, and the keras-hub in21k route (run only where keras-hub is installed)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kdface.backbones import VIT_VARIANTS, arrays_from_keras_hub, create_backbone
from kdface.backbones.contract import leaf_layers
from kdface.backbones.weights import DROPPED_KEY, model_arrays, weight_layers
from kdface.errors import ConfigError, DataFormatError


def images(size, batch=2, seed=0):
    return np.random.default_rng(seed).random((batch, size, size, 3), dtype=np.float32)


def test_vit_b16_parameter_counts_match_the_spec():
    """Spec §1.1: 85.80 M encoder, 86.39 M with HF's pooler (768 x 768 + 768)."""
    encoder = create_backbone("vit_b16", image_size=224)
    assert encoder.count_params() == 85_798_656
    with_pooler = create_backbone("vit_b16", image_size=224, pooler=True)
    assert with_pooler.count_params() == 86_389_248
    assert with_pooler.get_layer("pooler.dense").count_params() == 768 * 768 + 768
    # HF ViT-B/16's shapes: 196 patches + CLS, qkv with bias, MLP 3072, LayerNorm epsilon 1e-12
    assert tuple(encoder.get_layer("embeddings.position_embeddings").embeddings.shape) == (197, 768)
    attention = encoder.get_layer("encoder.layer.11.attention")
    assert (attention.num_heads, attention.key_dim, attention.use_bias) == (12, 64, True)
    assert encoder.get_layer("encoder.layer.0.intermediate.dense").units == 3072
    norms = [layer for layer in leaf_layers(encoder) if isinstance(layer, keras.layers.LayerNormalization)]
    assert len(norms) == 2 * 12 + 1 and {layer.epsilon for layer in norms} == {1e-12}
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in encoder.layers)  # dropout 0.0


def test_vit_outputs_are_the_cls_token_patch_maps_and_pooler():
    model = create_backbone("vit_tiny", image_size=32, pooler=True)
    arch = VIT_VARIANTS["vit_tiny"]
    assert arch.stage_blocks() == (0, 1, 2, 3)
    assert VIT_VARIANTS["vit_b16"].stage_blocks() == (2, 5, 8, 11)  # blocks 3, 6, 9, 12
    assert list(model.output) == [
        "feature_map",
        "embedding",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "pooled",
    ]
    probe = keras.Model(
        model.input,
        {
            "tokens": model.get_layer("layernorm").output,
            **{f"block{i}": model.get_layer(f"encoder.layer.{i}.output_residual").output for i in range(4)},
            "scaled": model.get_layer("to_vit_range").output,
        },
    )
    x = images(32)
    got = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    inner = {k: np.asarray(v) for k, v in probe(x, training=False).items()}
    grid = 32 // arch.patch_size
    np.testing.assert_allclose(inner["scaled"], 2 * x - 1, atol=1e-6)  # [0, 1] -> [-1, 1] inside
    assert inner["tokens"].shape == (2, 1 + grid * grid, arch.width)
    np.testing.assert_array_equal(got["embedding"], inner["tokens"][:, 0])  # final-LN CLS
    np.testing.assert_array_equal(got["stage4"], inner["tokens"][:, 1:].reshape(2, grid, grid, arch.width))
    np.testing.assert_array_equal(got["feature_map"], got["stage4"])
    for k in range(3):  # stages 1-3: the residual stream leaving blocks 1-3, patch tokens row-major
        np.testing.assert_array_equal(
            got[f"stage{k + 1}"], inner[f"block{k}"][:, 1:].reshape(got["stage4"].shape)
        )
    pooler = model.get_layer("pooler.dense")
    expected = np.tanh(got["embedding"] @ np.asarray(pooler.kernel) + np.asarray(pooler.bias))
    np.testing.assert_allclose(got["pooled"], expected, atol=1e-5)
    # the CLS token and every position carry their own learned vector
    embeddings = model.get_layer("embeddings.position_embeddings").embeddings
    assert tuple(embeddings.shape) == (1 + grid * grid, arch.width)
    assert tuple(model.get_layer("embeddings.cls_token").embeddings.shape) == (1, arch.width)


def test_vit_uses_only_built_in_layers_with_hf_names():
    model = create_backbone("vit_tiny", image_size=32, pooler=True)
    assert {type(layer).__module__.split(".")[0] for layer in model.layers} == {"keras"}
    assert set(weight_layers(model)) == {
        "embeddings.patch_embeddings.projection",
        "embeddings.cls_token",
        "embeddings.position_embeddings",
        *(
            f"encoder.layer.{i}.{part}"
            for i in range(4)
            for part in (
                "layernorm_before",
                "attention",
                "layernorm_after",
                "intermediate.dense",
                "output.dense",
            )
        ),
        "layernorm",
        "pooler.dense",
    }
    keys = model_arrays(model)
    assert keys["encoder.layer.0.attention/query/kernel"].shape == (192, 3, 64)  # (width, heads, head width)
    assert keys["encoder.layer.0.attention/attention_output/kernel"].shape == (3, 64, 192)
    assert keys["embeddings.patch_embeddings.projection/kernel"].shape == (8, 8, 3, 192)


def test_vit_weights_from_npz_and_keras_files(tmp_path):
    source = create_backbone("vit_tiny", image_size=32, name="trained")
    x = images(32, seed=1)
    expected = np.asarray(source(x)["embedding"])
    assert not np.allclose(np.asarray(create_backbone("vit_tiny", image_size=32)(x)["embedding"]), expected)
    np.savez(tmp_path / "vit.npz", **model_arrays(source))
    inputs = keras.Input((32, 32, 3), name="image")
    classifier = keras.Model(inputs, keras.layers.Dense(7, name="classifier")(source(inputs)["embedding"]))
    classifier.save(tmp_path / "classifier.keras")
    for file in ("vit.npz", "classifier.keras"):
        model = create_backbone("vit_tiny", image_size=32, weights=tmp_path / file)
        np.testing.assert_allclose(np.asarray(model(x)["embedding"]), expected, atol=1e-6, err_msg=file)
    # the position table is sized by the image: another size is a strict shape mismatch, not a silent resize
    with pytest.raises(
        DataFormatError, match=r"embeddings.position_embeddings/embeddings \(17, 192\) != model"
    ):
        create_backbone("vit_tiny", image_size=64, weights=tmp_path / "vit.npz")
    # a pooler model loads an encoder-only file whose .npz marks the pooler as left out
    arrays = model_arrays(source)
    np.savez(tmp_path / "no_pooler.npz", **arrays, **{DROPPED_KEY: np.asarray(["pooler.dense"])})
    pooled = create_backbone("vit_tiny", image_size=32, pooler=True, weights=tmp_path / "no_pooler.npz")
    np.testing.assert_allclose(np.asarray(pooled(x)["embedding"]), expected, atol=1e-6)
    with pytest.raises(DataFormatError, match=r"missing 2: \[pooler.dense/bias, pooler.dense/kernel\]"):
        create_backbone("vit_tiny", image_size=32, pooler=True, weights=tmp_path / "vit.npz")


def test_vit_image_size_and_options():
    for size in (None, 36, 4):
        with pytest.raises(ConfigError, match="multiple of its patch size 8"):
            create_backbone("vit_tiny", image_size=size)
    with pytest.raises(ValueError, match="only available for"):
        create_backbone("vit_b16", image_size=224, weights="imagenet")
    model = create_backbone("vit_tiny", image_size=16, dropout=0.1, attention_dropout=0.1)
    assert model.get_layer("encoder.layer.0.attention").dropout == 0.1
    assert model.get_layer("embeddings.dropout").rate == 0.1
    assert model.count_params() == create_backbone("vit_tiny", image_size=16).count_params()


def test_keras_hub_vit_weights_map_onto_the_kdface_vit(tmp_path):
    """The documented in21k route, checked on a randomly initialised keras-hub ViT of vit_tiny's shape."""
    keras_hub = pytest.importorskip("keras_hub")
    arch = VIT_VARIANTS["vit_tiny"]
    hub = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3),
        patch_size=arch.patch_size,
        num_layers=arch.depth,
        num_heads=arch.heads,
        hidden_dim=arch.width,
        mlp_dim=arch.mlp_width,
        layer_norm_epsilon=arch.layer_norm_epsilon,
    )
    rng = np.random.default_rng(0)
    for variable in hub.weights:  # biases and LayerNorms away from their 0/1 init, so a mix-up shows
        variable.assign(rng.normal(0.0, 0.05, variable.shape).astype(np.float32) + np.asarray(variable))
    np.savez(tmp_path / "hub.npz", **arrays_from_keras_hub(hub))
    model = create_backbone("vit_tiny", image_size=32, pooler=True, weights=tmp_path / "hub.npz")
    x = images(32, seed=2)
    tokens = np.asarray(hub(2 * x - 1))  # keras-hub takes the normalised image
    got = model(x)
    np.testing.assert_allclose(np.asarray(got["embedding"]), tokens[:, 0], atol=1e-4)
    np.testing.assert_allclose(
        np.asarray(got["stage4"]), tokens[:, 1:].reshape(2, 4, 4, arch.width), atol=1e-4
    )
