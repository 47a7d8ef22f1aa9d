"""The backbone registry and its one output contract (every registered backbone passes one harness,
keras-hub's ``run_vision_backbone_test`` idea), weights loading by path, and the task heads."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from kdface.backbones import (
    BACKBONE_OUTPUTS,
    backbone_names,
    backbone_of,
    backbone_spec,
    build_backbone,
    build_iresnet,
    build_resnet,
    create_backbone,
    embedding_size,
    feature_channels,
    register_backbone,
)
from kdface.backbones import registry as registry_module
from kdface.backbones.applications import STAGE_LAYERS
from kdface.backbones.contract import leaf_layers
from kdface.backbones.registry import backbone_entry
from kdface.backbones.weights import model_arrays
from kdface.errors import DataFormatError
from kdface.heads import landmark_head, linear_head, torch_bias_init, torch_linear_init

STRIDES = (4, 8, 16, 32)
IRESNET_STRIDES = (2, 4, 8, 16)  # insightface: full-resolution stem, every stage halves
# name -> (image size for the harness, stage strides); small sizes keep the harness fast
CASES = {
    "resnet18": (64, STRIDES),
    "resnet50": (64, STRIDES),
    "iresnet18": (32, IRESNET_STRIDES),
    "iresnet34": (32, IRESNET_STRIDES),
    "iresnet50": (32, IRESNET_STRIDES),
    "iresnet100": (32, IRESNET_STRIDES),
    "mobilenet_v2": (32, STRIDES),
    "mobilenet_v3_large": (32, STRIDES),
    "efficientnet_b3": (32, STRIDES),
    "vit_b16": (32, (16,) * 4),  # a ViT does not downsample: every stage is the patch grid
    "vit_tiny": (32, (8,) * 4),
}


def images(size, batch=2, seed=0):
    return np.random.default_rng(seed).random((batch, size, size, 3), dtype=np.float32)


def run_backbone_test(model, image_size, strides, tmp_path, bn_momentum, batchnorm=True):
    """The contract every backbone keeps: a plain Functional model, ``[0, 1]`` RGB in, the dict of
    :data:`BACKBONE_OUTPUTS` out with the stages at ``strides``; serialisable, and equal after a
    ``.keras`` round trip loaded with ``safe_mode=True``. ``batchnorm``: whether the network has
    BatchNormalization (all at ``bn_momentum``; a ViT has none)."""
    assert type(model).__name__ == "Functional"
    assert tuple(model.input.shape) == (None, image_size, image_size, 3)
    assert isinstance(model.layers[1], keras.layers.Rescaling | keras.layers.Normalization)  # [0, 1] in
    assert list(model.output) == list(BACKBONE_OUTPUTS)
    spec = backbone_spec(model)
    assert spec.stage_strides == strides
    for i, stride in enumerate(strides, start=1):
        side = image_size // stride
        assert tuple(model.output[f"stage{i}"].shape) == (None, side, side, spec.stage_channels[i - 1])
    assert tuple(model.output["feature_map"].shape) == tuple(model.output["stage4"].shape)
    assert tuple(model.output["embedding"].shape) == (None, spec.embedding_size)
    assert (embedding_size(model), feature_channels(model)) == (spec.embedding_size, spec.feature_channels)
    assert spec.feature_channels == spec.stage_channels[-1]
    batchnorms = [layer for layer in leaf_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    assert {layer.momentum for layer in batchnorms} == ({bn_momentum} if batchnorm else set())

    x = images(image_size)
    expected = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    assert list(expected) == list(BACKBONE_OUTPUTS)
    assert all(np.isfinite(v).all() and v.shape[0] == 2 for v in expected.values())
    np.testing.assert_array_equal(expected["feature_map"], expected["stage4"])

    json.dumps(model.get_config())  # get_config is plain JSON
    json.dumps(keras.saving.serialize_keras_object(model))
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)  # no kdface import needed
    assert [layer.name for layer in leaf_layers(loaded)] == [layer.name for layer in leaf_layers(model)]
    assert backbone_spec(loaded) == spec
    got = loaded(x, training=False)
    assert list(got) == list(BACKBONE_OUTPUTS)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[key]), value, rtol=0, atol=1e-6, err_msg=key)
    return expected


def test_every_registered_backbone_has_a_harness_case():
    assert backbone_names() == sorted(CASES)
    assert backbone_names(family="iresnet") == ["iresnet100", "iresnet18", "iresnet34", "iresnet50"]


def unit_gain(model, seed=0):
    """Conv kernels ``N(0, 1/fan_in)``: activations stay O(1) in inference mode however deep the
    network (IResNet-100's own ``N(0, 0.1)`` init overflows float32 there before any training)."""
    rng = np.random.default_rng(seed)
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            shape = tuple(layer.kernel.shape)
            layer.kernel.assign(rng.normal(0.0, np.prod(shape[:-1]) ** -0.5, shape).astype(np.float32))


@pytest.mark.parametrize("name", sorted(CASES))
def test_backbone_contract(name, tmp_path):
    size, strides = CASES[name]
    model = create_backbone(name, image_size=size, bn_momentum=0.75)  # EfficientNetB3: its one build
    assert model.name == name
    unit_gain(model)
    family = backbone_entry(name).family
    outputs = run_backbone_test(model, size, strides, tmp_path, bn_momentum=0.75, batchnorm=family != "vit")
    if name.startswith("iresnet"):
        assert embedding_size(model) == 512  # the fc + BatchNorm1d embedding head
    elif family == "vit":  # the final-LN CLS token (tests/test_vit_backbone.py)
        assert embedding_size(model) == feature_channels(model)
    else:  # the global average of the last map
        np.testing.assert_allclose(outputs["embedding"], outputs["feature_map"].mean(axis=(1, 2)), atol=1e-5)
    if name in STAGE_LAYERS:  # the taps are the application's own layers
        application = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        for key, layer in zip(("stage1", "stage2", "stage3", "stage4"), STAGE_LAYERS[name], strict=True):
            tap = application.get_layer(layer) if layer else application.layers[-1]  # None: the output
            assert application.output[key] is tap.output


def test_iresnet_pool_head_and_options(tmp_path):
    model = create_backbone("iresnet18", image_size=48, head="pool", normalization="imagenet", name="ir")
    outputs = run_backbone_test(model, 48, IRESNET_STRIDES, tmp_path, bn_momentum=0.9)  # None: torch's
    np.testing.assert_allclose(outputs["embedding"], outputs["feature_map"].mean(axis=(1, 2)), atol=1e-5)
    assert {"fc", "features"}.isdisjoint(layer.name for layer in model.layers)  # no fc head
    with pytest.raises(ValueError, match="multiple of 16"):
        create_backbone("iresnet18", image_size=40)


def test_bn_momentum_none_keeps_each_networks_own():
    for name, own in (
        ("resnet18", 0.9),
        ("iresnet18", 0.9),
        ("mobilenet_v2", 0.999),
        ("mobilenet_v3_large", 0.999),
    ):
        model = create_backbone(name, image_size=32)
        momenta = {
            layer.momentum
            for layer in leaf_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization)
        }
        assert momenta == {own}, name


def test_unknown_names_and_options():
    with pytest.raises(
        ValueError, match=r"unknown backbone 'resnet19'; known: \[.*\]; did you mean 'resnet18'\?"
    ):
        create_backbone("resnet19", image_size=64)
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'; known: \['efficientnet_b3'.*\]$"):
        create_backbone("vgg", image_size=64)
    with pytest.raises(TypeError, match=r"no option\(s\) \['head'\]; its options: .*stride_on"):
        create_backbone("resnet50", image_size=64, head="pool")
    with pytest.raises(ValueError, match="stride_on"):
        create_backbone("resnet18", image_size=64, stride_on="1x1")
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_backbone("vgg", 64)


def test_weights_imagenet_only_for_applications_and_missing_paths(tmp_path):
    for make in (
        lambda: create_backbone("resnet18", image_size=64, weights="imagenet"),
        lambda: create_backbone("iresnet50", image_size=64, weights="imagenet"),
        lambda: build_resnet(18, weights="imagenet"),
        lambda: build_iresnet(18, weights="imagenet"),
    ):
        with pytest.raises(
            ValueError, match=r"only available for .*\(efficientnet_b3, mobilenet_v2, mobilenet_v3_large\)"
        ):
            make()
    missing = tmp_path / "nowhere.npz"
    for name in ("resnet18", "iresnet18", "mobilenet_v2"):
        with pytest.raises(FileNotFoundError, match="nowhere.npz"):
            create_backbone(name, image_size=32, weights=missing)


def test_register_backbone(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_backbone("tiny", family="custom")
    def build_tiny(*, image_size, weights=None, bn_momentum=None, name=None, width=8):
        inputs = keras.Input((image_size, image_size, 3), name="image")
        x = keras.layers.Rescaling(1.0, name="identity_range")(inputs)
        stages = []
        for i in range(4):
            x = keras.layers.Conv2D(width, 3, strides=4 if i == 0 else 2, padding="same", name=f"conv{i}")(x)
            stages.append(x)
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = {
            "feature_map": x,
            "embedding": pooled,
            **{f"stage{i + 1}": s for i, s in enumerate(stages)},
        }
        return keras.Model(inputs, outputs, name=name)

    assert "tiny" in backbone_names() and backbone_names(family="custom") == ["tiny"]
    model = create_backbone("tiny", image_size=32, width=4)
    assert model.name == "tiny" and backbone_spec(model).stage_strides == STRIDES
    assert feature_channels(model) == embedding_size(model) == 4
    with pytest.raises(TypeError, match=r"no option\(s\) \['depth'\]; its options: \['width'\]"):
        create_backbone("tiny", image_size=32, depth=3)
    with pytest.raises(ValueError, match="weights='imagenet' is only available"):
        create_backbone("tiny", image_size=32, weights="imagenet")
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny", family="custom", builder=build_tiny)

    def build_list(*, image_size, weights=None, bn_momentum=None, name=None):  # the old list contract
        inputs = keras.Input((image_size, image_size, 3))
        x = keras.layers.Conv2D(4, 3)(inputs)
        return keras.Model(inputs, [x, keras.layers.GlobalAveragePooling2D()(x)], name=name)

    register_backbone("listy", family="custom", builder=build_list)
    with pytest.raises(ValueError, match="'listy' is not a kdface backbone: its output must be a dict"):
        create_backbone("listy", image_size=32)


def test_build_functions_return_the_contract():
    for model in (
        build_resnet(18, image_size=None),
        build_iresnet(18, image_size=32),
        build_backbone("mobilenet_v2", 32),
    ):
        assert list(model.output) == list(BACKBONE_OUTPUTS), model.name
    assert backbone_spec(build_resnet(18, image_size=None)).stage_strides == (None,) * 4  # any input size
    assert build_backbone("resnet18", 64).name == "resnet18"  # any registered name


def _randomise_batchnorms(model, seed):
    rng = np.random.default_rng(seed)
    for layer in leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(rng.normal(0.3, 0.2, layer.beta.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))


def _embedding(model, size):
    return np.asarray(model(images(size, seed=3), training=False)["embedding"])


def _classifier(backbone, size, name):
    inputs = keras.Input((size, size, 3), name="image")
    return keras.Model(inputs, linear_head(7)(backbone(inputs)["embedding"]), name=name)


def test_resnet_weights_from_every_kind_of_file(tmp_path):
    source = create_backbone("resnet18", image_size=32, name="trained")
    _randomise_batchnorms(source, 0)
    expected = _embedding(source, 32)
    assert not np.allclose(_embedding(create_backbone("resnet18", image_size=32), 32), expected)
    np.savez(tmp_path / "r18.npz", **model_arrays(source))
    source.save_weights(tmp_path / "r18.weights.h5")
    source.save(tmp_path / "bare.keras")  # a backbone saved alone
    _classifier(source, 32, "fer_classifier").save(tmp_path / "new.keras")
    # a classifier saved before the dict contract: its nested backbone returns [map, pooled]
    legacy = keras.Model(
        source.input, [source.output["feature_map"], source.output["embedding"]], name="resnet18"
    )
    inputs = keras.Input((32, 32, 3), name="image")
    old = keras.Model(
        inputs, keras.layers.Dense(7, name="classifier")(legacy(inputs)[1]), name="fer_classifier"
    )
    old.save(tmp_path / "legacy.keras")
    for file in ("r18.npz", "r18.weights.h5", "bare.keras", "new.keras", "legacy.keras"):
        model = create_backbone("resnet18", image_size=32, weights=tmp_path / file)
        np.testing.assert_allclose(_embedding(model, 32), expected, atol=1e-6, err_msg=file)
    saved = keras.saving.load_model(tmp_path / "legacy.keras", safe_mode=True)
    assert backbone_of(saved, "legacy.keras").name == "resnet18"  # the existing call, no `like`
    with pytest.raises(DataFormatError, match=r"weights of resnet50 exactly; missing"):  # depth mismatch
        create_backbone("resnet50", image_size=32, weights=tmp_path / "new.keras")
    both = keras.Input((32, 32, 3), name="image")
    pair = keras.Model(
        both, [legacy(both)[1], create_backbone("resnet18", image_size=32, name="b")(both)["embedding"]]
    )
    pair.save(tmp_path / "two.keras")
    with pytest.raises(DataFormatError, match=r"exactly one resnet18 backbone.*got '2 \(resnet18, b\)'"):
        create_backbone("resnet18", image_size=32, weights=tmp_path / "two.keras")


def test_application_weights_from_every_kind_of_file(tmp_path):
    source = create_backbone("mobilenet_v2", image_size=32)
    _randomise_batchnorms(source, 1)
    expected = _embedding(source, 32)
    assert not np.allclose(
        _embedding(create_backbone("mobilenet_v2", image_size=32), 32), expected, atol=1e-3
    )
    application = source.get_layer("mobilenetv2_1.00_32")
    application.save_weights(tmp_path / "application.weights.h5")  # the format kdface always took
    source.save_weights(tmp_path / "backbone.weights.h5")
    np.savez(tmp_path / "backbone.npz", **model_arrays(source))
    inputs = keras.Input((32, 32, 3), name="image")
    regressor = keras.Model(
        inputs, landmark_head(5, dropout=0.1)(source(inputs)["embedding"]), name="regressor"
    )
    regressor.save(tmp_path / "regressor.keras")
    for file in ("application.weights.h5", "backbone.weights.h5", "backbone.npz", "regressor.keras"):
        model = create_backbone("mobilenet_v2", image_size=32, weights=tmp_path / file, bn_momentum=0.5)
        np.testing.assert_allclose(_embedding(model, 32), expected, atol=1e-6, err_msg=file)


def test_backbone_spec_refuses_other_models():
    inputs = keras.Input((8,))
    with pytest.raises(ValueError, match="'plain' is not a kdface backbone"):
        backbone_spec(keras.Model(inputs, keras.layers.Dense(2)(inputs), name="plain"))


# --- heads -------------------------------------------------------------------------------------------------


def test_linear_head_is_torch_linear_kernel_init_with_zero_bias():
    init = torch_linear_init().get_config()
    assert (init["scale"], init["mode"], init["distribution"]) == (1.0 / 3.0, "fan_in", "uniform")
    head = linear_head(7)
    assert (head.name, head.units, head.use_bias) == ("classifier", 7, True)
    assert keras.initializers.serialize(head.kernel_initializer) == keras.initializers.serialize(
        torch_linear_init()
    )
    assert head.get_config()["bias_initializer"]["class_name"] == "Zeros"
    head.build((None, 300))
    bound = 1.0 / np.sqrt(300)
    kernel = np.asarray(head.kernel)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    assert not np.asarray(head.bias).any()
    no_bias = linear_head(3, name="mapping", use_bias=False)
    assert (no_bias.name, no_bias.use_bias) == ("mapping", False)
    bias = torch_bias_init(300).get_config()
    assert (bias["minval"], bias["maxval"]) == pytest.approx((-bound, bound))


def test_landmark_head_layers():
    features = keras.Input((16,))
    model = keras.Model(features, landmark_head(68, dropout=0.2)(features))
    assert [layer.name for layer in model.layers[1:]] == ["dropout", "landmarks"]
    assert model.get_layer("dropout").rate == 0.2 and tuple(model.output.shape) == (None, 136)
    plain = keras.Model(features, landmark_head(5)(features))
    assert [layer.name for layer in plain.layers[1:]] == ["landmarks"]
    assert plain.get_layer("landmarks").get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"
