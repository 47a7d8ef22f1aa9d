"""ViT-SE, DoE and Disentangled DoE (spec ``vitse_doe_fer.md``): the heads' parameter counts and wiring
against the spec, frozen encoders that receive no update (weights and BatchNorm statistics) through
``model.fit`` and after a ``.keras`` round trip, one shared encoder in the pair models, and
``safe_mode=True`` round trips of every builder."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import changed, snapshot

from kdface.backbones import create_backbone, freeze, is_frozen
from kdface.backbones.contract import leaf_layers
from kdface.errors import ConfigError
from kdface.heads import ddoe_step1_head, doe_head, linear_head, vit_se_head
from kdface.models import (
    NEUTRAL,
    PAIR_INPUT_NAME,
    TARGET,
    build_ddoe_step1,
    build_ddoe_step2,
    build_doe,
    build_vit_se,
)

SIZE = 32


def images(batch=4, seed=0):
    return np.random.default_rng(seed).random((batch, SIZE, SIZE, 3), dtype=np.float32)


def pairs(batch=4, seed=0):
    """``(B, 2, S, S, 3)``: the neutral image at index 0 of axis 1, the target at 1."""
    return np.stack([images(batch, seed), images(batch, seed + 1)], axis=1)


LABELS = np.array([0, 0, 1, 2])  # unbalanced: the bias gradient is not zero even at uniform logits


def moving_statistics(model):
    return sorted(
        v.path
        for layer in leaf_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    )


def fit_one_step(model, x, y=LABELS):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    history = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1


def round_trip(model, tmp_path, x):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)  # built-in layers only
    np.testing.assert_allclose(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)), atol=1e-5
    )
    return loaded


# --- heads: the spec's parameter counts and wiring --------------------------------------------------------


def head_model(inputs, outputs):
    return keras.Model(inputs, outputs)


def dense_counts(model, names):
    return [model.get_layer(name).count_params() for name in names]


def test_vit_se_head_counts_and_gates():
    """Spec §1.1: SE A = 147,648 + 148,224 = 295,872 and the classifier 769 C on the 768-d pooler output;
    §1.3: B is r = 2 with a sigmoid gate."""
    features = keras.Input((768,))
    a = head_model(features, vit_se_head(features, 7, "A"))
    assert dense_counts(a, ["se.fc1", "se.fc2", "classifier"]) == [147_648, 148_224, 769 * 7]
    assert a.count_params() == 295_872 + 769 * 7
    b = head_model(features, vit_se_head(features, 7))  # the default: B
    assert dense_counts(b, ["se.fc1", "se.fc2", "classifier"]) == [768 * 384 + 384, 384 * 768 + 768, 769 * 7]
    assert [a.get_layer("se.fc2").activation.__name__, b.get_layer("se.fc2").activation.__name__] == [
        "relu",
        "sigmoid",
    ]
    # the forward pass: s = p * gate(W2 relu(W1 p + b1) + b2); logits = W s + b
    p = np.random.default_rng(0).normal(size=(3, 768)).astype(np.float32)
    for model, gate in ((a, lambda z: np.maximum(z, 0)), (b, lambda z: 1 / (1 + np.exp(-z)))):
        w1, b1 = (np.asarray(v) for v in model.get_layer("se.fc1").weights)
        w2, b2 = (np.asarray(v) for v in model.get_layer("se.fc2").weights)
        wc, bc = (np.asarray(v) for v in model.get_layer("classifier").weights)
        s = p * gate(np.maximum(p @ w1 + b1, 0) @ w2 + b2)
        np.testing.assert_allclose(np.asarray(model(p)), s @ wc + bc, rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match=r"variant must be one of \['A', 'B'\]"):
        vit_se_head(features, 7, "C")


def test_doe_head_counts_and_difference_first():
    """Spec §2.2: 960-d embeddings, C = 8: 491,776 + 32,896 + 8,256 + 2,080 + 33 C = 535,272."""
    neutral, target = keras.Input((960,)), keras.Input((960,))
    model = head_model([neutral, target], doe_head(neutral, target, 8))
    names = ["mlp.0", "mlp.1", "mlp.2", "mlp.3", "classifier"]
    assert dense_counts(model, names) == [491_776, 32_896, 8_256, 2_080, 33 * 8]
    assert model.count_params() == 535_272
    assert [model.get_layer(n).activation.__name__ for n in names] == ["relu"] * 4 + ["linear"]  # logits
    probe = keras.Model([neutral, target], model.get_layer("doe_features").output)
    rng = np.random.default_rng(1)
    e_n, e_t = rng.normal(size=(2, 960)).astype(np.float32), rng.normal(size=(2, 960)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(probe([e_n, e_t])), np.concatenate([e_t - e_n, e_t], axis=1), atol=1e-6
    )


def test_ddoe_step1_head_counts_and_emotion_first():
    """Spec §3.2: concat[960 emotion, 2048 identity] = 3008 -> 770,304 + 43,232 + 33 C1."""
    emotion, identity = keras.Input((960,)), keras.Input((2048,))
    model = head_model([emotion, identity], ddoe_step1_head(emotion, identity, 5))
    assert dense_counts(model, ["mlp.0"]) == [770_304]
    assert sum(dense_counts(model, ["mlp.1", "mlp.2", "mlp.3"])) == 43_232
    assert model.count_params() == 770_304 + 43_232 + 33 * 5
    probe = keras.Model([emotion, identity], model.get_layer("ddoe_features").output)
    e, i = np.ones((1, 960), np.float32), np.full((1, 2048), 2.0, np.float32)
    np.testing.assert_array_equal(np.asarray(probe([e, i])), np.concatenate([e, i], axis=1))


# --- freezing -----------------------------------------------------------------------------------------------


def classifier(encoder):
    image = keras.Input((SIZE, SIZE, 3), name="image")
    return keras.Model(image, linear_head(4)(encoder(image)["embedding"]), name="classifier_model")


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "resnet18", "iresnet18"])
def test_frozen_encoder_receives_no_update_through_fit_and_after_loading(name, tmp_path):
    x = images()
    # the control: a trainable encoder changes weights and BatchNorm statistics in one step
    control = create_backbone(name, image_size=SIZE, bn_momentum=0.5)
    before = snapshot(control)
    fit_one_step(classifier(control), x)
    moved = changed(before, control)
    assert set(moving_statistics(control)) <= set(moved) and len(moved) == len(before)

    encoder = freeze(create_backbone(name, image_size=SIZE, bn_momentum=0.5))
    assert is_frozen(encoder) and not encoder.trainable_weights
    model = classifier(encoder)
    before, head = snapshot(encoder), snapshot(model.get_layer("classifier"))
    fit_one_step(model, x)  # fit calls the encoder with training=True
    assert changed(before, encoder) == []  # weights and moving statistics bit-identical
    assert changed(head, model.get_layer("classifier")) == sorted(head)

    model.save(tmp_path / "frozen.keras")
    loaded = keras.saving.load_model(tmp_path / "frozen.keras", safe_mode=True)
    loaded_encoder = loaded.get_layer(name)
    assert is_frozen(loaded_encoder)
    fit_one_step(loaded, x)
    assert changed(before, loaded_encoder) == []


# --- ViT-SE -------------------------------------------------------------------------------------------------


def test_vit_se_models_and_round_trips(tmp_path):
    backbone = create_backbone("vit_tiny", image_size=SIZE)
    with pytest.raises(
        ConfigError, match="reads the backbone output .pooled., which vit_tiny lacks.*pooler=True"
    ):
        build_vit_se(backbone, 7, "A")
    b = build_vit_se(backbone, 7)
    assert b.count_params() == backbone.count_params() + (192 * 96 + 96) + (96 * 192 + 192) + 193 * 7
    assert len(b.trainable_weights) == len(b.weights)  # nothing frozen, as in both originals
    pooled = create_backbone("vit_tiny", image_size=SIZE, pooler=True)
    a = build_vit_se(pooled, 7, "a")
    assert a.count_params() == pooled.count_params() + (192 * 48 + 48) + (48 * 192 + 192) + 193 * 7
    x = images(2)
    probe = keras.Model(a.input, a.get_layer("se.scale").input[0])  # what the SE gate multiplies
    np.testing.assert_allclose(np.asarray(probe(x)), np.asarray(pooled(x)["pooled"]), atol=1e-6)
    for model in (a, b):
        loaded = round_trip(model, tmp_path, x)
        assert loaded.output.shape == (None, 7)
    fit_one_step(b, images())


# --- DoE and Disentangled DoE ---------------------------------------------------------------------------------


def test_doe_shares_one_frozen_encoder(tmp_path):
    encoder = create_backbone("mobilenet_v3_large", image_size=SIZE, bn_momentum=0.5)
    model = build_doe(encoder, 8)
    # one input, the pipeline's (B, 2, S, S, 3): neutral at index 0, target at 1 (the original's layout)
    assert (NEUTRAL, TARGET) == (0, 1) and len(model.inputs) == 1
    assert model.input.name == PAIR_INPUT_NAME and tuple(model.input.shape) == (None, 2, SIZE, SIZE, 3)
    assert not [layer for layer in model.layers if isinstance(layer, keras.layers.Lambda)]
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert [layer.name for layer in nested] == ["encoder"]
    assert {id(v) for v in nested[0].weights} == {id(v) for v in encoder.weights}  # a view, not a copy
    assert len(model.weights) == len(encoder.weights) + 10  # one encoder's variables + the 5 Dense
    assert model.count_params() == 2_996_352 + 535_272
    assert is_frozen(encoder) and len(model.trainable_weights) == 10

    x = pairs()
    probe = keras.Model(model.input, model.get_layer("doe_features").output)
    e_n, e_t = (np.asarray(encoder(x[:, k])["embedding"]) for k in (NEUTRAL, TARGET))
    np.testing.assert_allclose(np.asarray(probe(x)), np.concatenate([e_t - e_n, e_t], axis=1), atol=1e-5)
    same = np.asarray(probe(np.stack([x[:, TARGET], x[:, TARGET]], axis=1)))
    assert not same[:, :960].any()  # one function of both images: their difference is exactly zero
    swapped = np.asarray(probe(x[:, ::-1]))  # which image is the neutral one is axis 1's order
    np.testing.assert_allclose(swapped, np.concatenate([e_n - e_t, e_n], axis=1), atol=1e-5)
    assert not np.allclose(swapped, np.asarray(probe(x)), rtol=1e-3, atol=0)  # random weights: tiny values
    assert model.predict(x, verbose=0).shape == (4, 8)  # model.predict takes the one array

    before, head = snapshot(encoder), snapshot(model.get_layer("mlp.0"))
    fit_one_step(model, x)
    assert changed(before, encoder) == []
    assert changed(head, model.get_layer("mlp.0")) == sorted(head)
    loaded = round_trip(model, tmp_path, x)
    assert is_frozen(loaded.get_layer("encoder"))

    tuned = build_doe(
        create_backbone("mobilenet_v3_large", image_size=SIZE, bn_momentum=0.5), 8, freeze_encoder=False
    )
    shared = tuned.get_layer("encoder")
    before = snapshot(shared)
    fit_one_step(tuned, x)  # both branches' gradients reach the one set of weights
    assert len(changed(before, shared)) == len(before) and len(tuned.weights) == len(shared.weights) + 10
    with pytest.raises(ConfigError, match="image_size 64 differs"):
        build_doe(encoder, 8, image_size=64)


def test_ddoe_step1_then_step2_on_a_frozen_copy_of_its_emotion_encoder(tmp_path):
    emotion = create_backbone("mobilenet_v3_large", image_size=SIZE, bn_momentum=0.5)
    identity = create_backbone("resnet18", image_size=SIZE, bn_momentum=0.5)  # the 2048-d counts: above
    step1 = build_ddoe_step1(emotion, identity, 7)
    assert [layer.name for layer in step1.layers if isinstance(layer, keras.Model)] == [
        "emotion_encoder",
        "identity_encoder",
    ]
    head = (960 + 512) * 256 + 256 + 43_232 + 33 * 7
    assert step1.count_params() == emotion.count_params() + identity.count_params() + head
    assert is_frozen(identity) and not is_frozen(emotion)
    x = images()
    before_emotion, before_identity = snapshot(emotion), snapshot(identity)
    fit_one_step(step1, x)
    assert changed(before_identity, identity) == []  # the frozen ResNet: weights and BN statistics
    assert set(moving_statistics(emotion)) <= set(changed(before_emotion, emotion))  # fine-tuned
    loaded1 = round_trip(step1, tmp_path, x)

    step2 = build_ddoe_step2(loaded1, 8)
    assert tuple(step2.input.shape) == (None, 2, SIZE, SIZE, 3)  # step 1 takes images, step 2 pairs
    copy, source = step2.get_layer("encoder"), loaded1.get_layer("emotion_encoder")
    assert is_frozen(copy) and not is_frozen(source)  # step 1's own encoder stays trainable
    assert not {id(v) for v in copy.weights} & {id(v) for v in source.weights}  # a copy...
    for got, want in zip(copy.get_weights(), source.get_weights(), strict=True):  # ...with step 1's weights
        np.testing.assert_array_equal(got, want)
    assert step2.count_params() == emotion.count_params() + 535_272
    assert "identity_encoder" not in [layer.name for layer in step2.layers]
    before = snapshot(copy)
    fit_one_step(step2, pairs())
    assert changed(before, copy) == []
    loaded2 = round_trip(step2, tmp_path, pairs())
    assert is_frozen(loaded2.get_layer("encoder"))
    # an encoder is accepted directly too
    assert build_ddoe_step2(emotion, 8, name="from_encoder").count_params() == step2.count_params()

    with pytest.raises(ConfigError, match="must be two models"):
        build_ddoe_step1(emotion, emotion, 7)
    with pytest.raises(ConfigError, match="holds no 'emotion_encoder'"):
        build_ddoe_step2(classifier(identity), 8)
