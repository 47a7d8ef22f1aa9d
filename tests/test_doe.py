"""DoE (``--method doe``, ``--target-only``) and Disentangled DoE (``ddoe-step1``, ``ddoe-step2``) as
methods: the frozen parts of each method's network receive no update through its train step (weights
and BatchNorm statistics bit-identical; the trained parts do move), CK+'s folds (``--fold``, the
held-out test fold, step 1 and step 2 on one fold), and tiny end-to-end runs through the CLIs:
training, ``test.py`` on pairs, :func:`kdface.predict_expressions` on pairs, a bad frame."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import changed, snapshot

from kdface.backbones import create_backbone, is_frozen
from kdface.errors import ConfigError
from kdface.methods.ddoe import DDoEStep1Config, DDoEStep2Config, build_step1_network
from kdface.methods.doe import DoEConfig, build_network
from kdface.models import build_ddoe_step2
from kdface.tasks.expressions.evaluation import default_test_splits
from kdface.tasks.expressions.labels import CLASS_NAMES
from kdface.tasks.expressions.sources import held_out_split
from kdface.tasks.expressions.training import ExpressionClassifier, group_adam

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
K = 5


def moving_statistics(model):
    return {v.path for v in model.weights if "moving_" in v.path}


# --- the methods' train steps: frozen parts stay frozen ---------------------------------------------------

# weight decay 0.1: coupled L2 would move a frozen weight that reached the optimizer, even with no gradient
COMMON = dict(image_size=SIZE, bn_momentum=0.5, weight_decay=0.1, learning_rate=1e-2)


def _method_model(kind):
    """``(model, inputs, frozen encoder, trained encoder or None)`` of each method's network at 32 px."""
    rng = np.random.default_rng(0)
    images = rng.random((4, SIZE, SIZE, 3), dtype=np.float32)
    pairs = np.stack([images, rng.random((4, SIZE, SIZE, 3), dtype=np.float32)], axis=1)
    if kind in ("doe", "doe --target-only"):
        config = DoEConfig(
            backbone="resnet18", weights="none", target_only=kind != "doe", **COMMON
        ).resolved()
        network, deploy = build_network(config, K)
        owner = network if kind == "doe" else network.get_layer("doe_target_only")
        frozen, trained, x = owner.get_layer("encoder"), None, pairs
    else:
        config = DDoEStep1Config(identity_backbone="resnet18", identity_weights="none", **COMMON).resolved()
        network, deploy = build_step1_network(config, K), None
        frozen, trained, x = (
            network.get_layer("identity_encoder"),
            network.get_layer("emotion_encoder"),
            images,
        )
        if kind == "ddoe-step2":
            network = build_ddoe_step2(network, K)
            frozen, trained, x = network.get_layer("encoder"), None, pairs
    model = ExpressionClassifier(network, deploy)
    model.compile(optimizer=group_adam(config, steps_per_epoch=1))
    return model, x, frozen, trained


@pytest.mark.parametrize("kind", ["doe", "doe --target-only", "ddoe-step1", "ddoe-step2"])
def test_frozen_parts_receive_no_update_through_the_methods_train_step(kind):
    model, x, frozen, trained = _method_model(kind)
    assert is_frozen(frozen) and moving_statistics(frozen)
    owner = model.network.get_layer("doe_target_only") if kind == "doe --target-only" else model.network
    head = owner.get_layer("classifier")
    before_frozen, before_head = snapshot(frozen), snapshot(head)
    before_trained = snapshot(trained) if trained is not None else None
    history = model.fit(x, np.array([0, 0, 1, 2]), batch_size=4, epochs=1, verbose=0)  # training=True
    assert np.isfinite(history.history["loss"][0])
    assert changed(before_frozen, frozen) == []  # weights and BatchNorm statistics, bit for bit
    assert changed(before_head, head) == sorted(before_head)  # the head trains
    if trained is not None:  # step 1's emotion encoder is fine-tuned: weights and statistics move
        assert moving_statistics(trained) <= set(changed(before_trained, trained))
    deployed = model.deploy_model
    pair_input = kind in ("doe", "ddoe-step2")
    assert tuple(deployed.input_shape) == ((None, 2, SIZE, SIZE, 3) if pair_input else (None, SIZE, SIZE, 3))
    sample = x if kind != "doe --target-only" else x[:, 1]  # the ablation deploys on targets alone
    np.testing.assert_allclose(np.asarray(deployed(sample)).sum(axis=1), 1.0, rtol=1e-5)


# --- folds ------------------------------------------------------------------------------------------------


def test_fold_names_the_training_folds_and_the_held_out_test_fold():
    config = DoEConfig(weights="none", fold=3).resolved()
    assert config.train_split == "train-fold3" and config.fold_tag() == "_fold3"
    assert DoEConfig(weights="none").resolved().train_split == "train-fold0"
    assert held_out_split("train-fold3[:90%]") == "test-fold3" and held_out_split("train") == "test"
    assert held_out_split("test-fold3") is None and held_out_split("train-fold12") is None
    card = {"dataset": "ck+", "config": {"train_split": "train-fold3"}}
    assert default_test_splits("ck+", card) == ("test-fold3",)
    assert default_test_splits("synthface-ck+", card) == ("test",)  # another dataset: its own test split
    assert default_test_splits("raf-db", {"dataset": "raf-db", "config": {"train_split": "train"}}) == (
        "test",
    )
    with pytest.raises(ConfigError, match="the folds are 0..9"):
        DoEConfig(weights="none", fold=10).resolved()
    with pytest.raises(ConfigError, match="--fold 2: raf-db has no folds"):
        DDoEStep1Config(dataset="raf-db", identity_weights="none", fold=2).resolved()
    with pytest.raises(ConfigError, match="name different training folds"):
        DoEConfig(weights="none", fold=2, train_split="train-fold3").resolved()
    with pytest.raises(ConfigError, match="--backbone-weights is needed: DoE's encoder is frozen"):
        DoEConfig().resolved()  # demo preset: no weights
    assert DoEConfig(preset="paper").resolved().weights == "imagenet"  # the original's
    with pytest.raises(ConfigError, match="--identity-weights is needed"):
        DDoEStep1Config().resolved()
    with pytest.raises(ConfigError, match="dataset must be one of ck\\+, synthface-ck\\+"):
        DDoEStep2Config(dataset="raf-db", step1="s1.keras").resolved()


# --- end to end through the CLIs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny SynthFaces folder (its CK+ tree: 10 subjects, one per fold) and a ResNet-18 saved as a
    .keras file, the kind of file a face-id model is (``--backbone-weights PATH``)."""
    from kdface.data import synthfaces

    root = tmp_path_factory.mktemp("doe")
    synthfaces.generate(root / "synthfaces", synthfaces.SynthFacesConfig.tiny())
    keras.utils.set_random_seed(5)
    create_backbone("resnet18", image_size=SIZE).save(root / "resnet18.keras")
    return root


def _train(root, method, run, *flags):
    from kdface.cli import training_main

    out = root / "models" / f"{run}.keras"
    training_main("teacher", "", ["--method", method, "--data-dir", str(root / "synthfaces"), "--tfds-dir",
                                  str(root / "tfds"), "--image-size", str(SIZE), "--batch-size", "4", "--epochs", "1",
                                  "--out", str(out), "--run-dir", str(root / "runs" / run), *map(str, flags)])  # fmt: skip
    return out


def _test_py(root, out, *models):
    spec = importlib.util.spec_from_file_location("kdface_test_py", ROOT / "test.py")
    test_py = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_py)
    argv = [
        "--data-dir",
        str(root / "synthfaces"),
        "--tfds-dir",
        str(root / "tfds"),
        "--out",
        str(root / out),
    ]
    test_py.main([*argv, *(a for m in models for a in ("--model", str(m)))])
    return json.loads((root / out / "report.json").read_text())


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def _assert_same_weights(a, b):
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_doe_and_its_target_only_ablation_train_test_and_predict_on_pairs(tiny):
    from kdface import predict_expressions

    weights = tiny / "resnet18.keras"
    doe = _train(tiny, "doe", "doe", "--backbone", "resnet18", "--backbone-weights", weights)
    alone = _train(
        tiny, "doe", "alone", "--backbone", "resnet18", "--backbone-weights", weights, "--target-only"
    )
    cards = [json.loads(m.with_suffix(".json").read_text()) for m in (doe, alone)]
    assert [c["input"] for c in cards] == ["pair", "image"] and cards[0]["config"][
        "train_split"
    ] == "train-fold0"

    model = keras.saving.load_model(doe, safe_mode=True)
    assert tuple(model.input_shape) == (None, 2, SIZE, SIZE, 3)
    # through a real run the frozen encoder is still exactly the weights file's network (BN statistics too)
    _assert_same_weights(model.get_layer("encoder"), keras.saving.load_model(weights))
    single = keras.saving.load_model(alone, safe_mode=True)
    assert tuple(single.input_shape) == (None, SIZE, SIZE, 3)
    _assert_same_weights(single.get_layer("encoder"), keras.saving.load_model(weights))

    report = _test_py(tiny, "test_doe", doe, alone)
    assert report["doe"]["input"] == "pair" and report["alone"]["input"] == "image"
    assert list(report["doe"]["splits"]) == list(report["alone"]["splits"]) == ["test-fold0"]  # held-out fold
    counts = [report[name]["splits"]["test-fold0"]["count"] for name in ("doe", "alone")]
    assert counts[0] == counts[1] > 0  # the pairs, and their targets alone

    rng = np.random.default_rng(0)
    neutral, target = (rng.integers(0, 256, (50, 40, 3), dtype=np.uint8) for _ in range(2))
    (result,) = predict_expressions(doe, [(neutral, target)])
    assert result["expression"] in result["probabilities"] and len(result["probabilities"]) == 8
    expected = model.predict(np.stack([_crop_both(neutral, target)]), verbose=0)[0]
    np.testing.assert_allclose(list(result["probabilities"].values()), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(neutral, target\) pairs"):
        predict_expressions(doe, [target])
    (alone_result,) = predict_expressions(alone, [target])
    assert len(alone_result["probabilities"]) == 8
    with pytest.raises(ValueError, match="classifies single faces"):
        predict_expressions(alone, [(neutral, target)])
    from kdface.tasks.expressions.evaluation import predict_photo

    with pytest.raises(ConfigError, match="a photo does not give"):
        predict_photo(doe, tiny / "no-photo-needed.jpg")


def _crop_both(neutral, target):
    import tensorflow as tf

    from kdface.tasks.expressions.pipeline import prepare_eval

    def crop(face):
        box = tf.constant([0.0, 0.0, face.shape[1], face.shape[0]])
        return prepare_eval(tf.io.encode_png(face), box, SIZE).numpy()

    return np.stack([crop(neutral), crop(target)])


@pytest.mark.slow
def test_ddoe_step1_then_step2_on_its_frozen_emotion_encoder_then_test(tiny, capsys):
    weights = tiny / "resnet18.keras"
    step1 = _train(tiny, "ddoe-step1", "step1", "--fold", 4, "--identity-backbone", "resnet18",
                   "--identity-weights", weights, "--backbone-weights", "none")  # fmt: skip
    loaded1 = keras.saving.load_model(step1, safe_mode=True)
    assert tuple(loaded1.input_shape) == (None, SIZE, SIZE, 3)
    _assert_same_weights(loaded1.get_layer("identity_encoder"), keras.saving.load_model(weights))

    with pytest.raises(SystemExit):  # step 1 held out fold 4: its subjects include fold 0's
        _train(tiny, "ddoe-step2", "step2_wrong_fold", "--step1", step1)
    assert "train step 1 with the same --fold" in capsys.readouterr().err
    assert not (tiny / "runs" / "step2_wrong_fold").exists()

    step2 = _train(tiny, "ddoe-step2", "step2", "--step1", step1, "--fold", 4)
    card = json.loads(step2.with_suffix(".json").read_text())
    assert card["input"] == "pair" and card["step1"] == str(step1) and card["config"]["image_size"] == SIZE
    loaded2 = keras.saving.load_model(step2, safe_mode=True)
    assert tuple(loaded2.input_shape) == (None, 2, SIZE, SIZE, 3)
    assert "identity_encoder" not in [layer.name for layer in loaded2.layers]
    _assert_same_weights(loaded2.get_layer("encoder"), loaded1.get_layer("emotion_encoder"))  # frozen copy

    report = _test_py(tiny, "test_ddoe", step1, step2)
    assert list(report["step1"]["splits"]) == list(report["step2"]["splits"]) == ["test-fold4"]
    assert (
        report["step2"]["splits"]["test-fold4"]["count"] == report["step1"]["splits"]["test-fold4"]["count"]
    )


@pytest.mark.slow
def test_doe_training_errors_on_or_skips_a_bad_frame(tiny, capsys):
    """A truncated onset frame of a training subject (S009, fold 4, which keeps its other sequence):
    training stops naming it (exit 2), or under --on-bad-sample skip trains on the other pairs and
    lists the lost ones."""
    import shutil

    from kdface.cli import training_main

    bad = tiny / "bad"
    shutil.copytree(tiny / "synthfaces", bad / "raw")
    victim = bad / "raw/ckplus/cohn-kanade-images/S009/001/S009_001_00000001.png"
    victim.write_bytes(victim.read_bytes()[:200])
    flags = ["--backbone", "resnet18", "--backbone-weights", tiny / "resnet18.keras"]

    def train(run, *extra):
        argv = ["--method", "doe", "--data-dir", bad / "raw", "--tfds-dir", bad / "tfds", "--image-size", SIZE,
                "--batch-size", 4, "--epochs", 1, "--out", bad / f"{run}.keras", "--run-dir", bad / run, *flags, *extra]  # fmt: skip
        training_main("teacher", "", list(map(str, argv)))

    with pytest.raises(SystemExit) as stopped:
        train("error")
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and victim.name in last, last
    train("skip", "--on-bad-sample", "skip")
    listing = json.loads((bad / "skip" / "skipped_samples.json").read_text())
    assert listing["count"] >= 1 and all(victim.name in r["path"] + r["reason"] for r in listing["skipped"])
    assert "skipped" in capsys.readouterr().out


# --- CK+'s optional 8th class: --neutral-class ------------------------------------------------------------

NEUTRAL = CLASS_NAMES.index("neutral")


def _pairs_of(tiny, split, neutral_pairs=True):
    from kdface.tasks.expressions.sources import PairOptions, load_pair_split

    source = load_pair_split("synthface-ck+", split, tiny / "synthfaces", tiny / "tfds",
                             options=PairOptions(neutral_pairs=neutral_pairs))  # fmt: skip
    return source, list(source.dataset.as_numpy_iterator())


def _sequences(tiny, folds):
    """The number of sequences of the tiny tree's subjects in ``folds`` (one neutral pair each)."""
    from kdface.tasks.expressions.ckplus import dataset_folds

    root = tiny / "synthfaces" / "ckplus"
    return sum(len(list((root / "cohn-kanade-images" / s).iterdir())) for s, f in dataset_folds(root).items()
               if f in folds)  # fmt: skip


def test_neutral_class_is_a_pair_dataset_option():
    config = DoEConfig(weights="none", neutral_class=True, fold=3).resolved()
    assert config.pair_options().neutral_pairs and config.neutral_tag() == "_neutral"
    assert not DDoEStep2Config(step1="s1.keras").resolved().pair_options().neutral_pairs
    with pytest.raises(ConfigError, match="--neutral-class: raf-db has no neutral pairs"):
        DDoEStep1Config(dataset="raf-db", identity_weights="none", neutral_class=True).resolved()


@pytest.mark.slow
def test_doe_with_the_neutral_class_trains_and_tests_on_neutral_pairs(tiny):
    weights = tiny / "resnet18.keras"
    doe = _train(tiny, "doe", "doe_neutral", "--backbone", "resnet18", "--backbone-weights", weights,
                 "--neutral-class")  # fmt: skip
    card = json.loads(doe.with_suffix(".json").read_text())
    assert card["class_names"] == list(CLASS_NAMES) and card["num_classes"] == 8
    assert card["pair_options"]["neutral_pairs"] and card["config"]["neutral_class"]
    assert card["train_class_counts"][NEUTRAL] > 0  # neutral pairs were trained on
    model = keras.saving.load_model(doe, safe_mode=True)
    assert tuple(model.output_shape) == (None, 8)

    # the pairs: each sequence's onset with the next one's of the same subject, labelled neutral
    for split, folds in (("train-fold0", range(1, 10)), ("test-fold0", (0,))):
        source, pairs = _pairs_of(tiny, split)
        neutral = [p for p in pairs if p["label"] == NEUTRAL]
        assert len(neutral) == _sequences(tiny, folds) > 0 and source.class_counts[NEUTRAL] == len(neutral)
        _, default = _pairs_of(tiny, split, neutral_pairs=False)
        assert len(pairs) == len(default) + len(neutral)  # what the flag adds
        for pair in pairs:  # never two people: both frames are the pair's subject's
            subject = pair["subject"].decode()
            assert all(name.startswith(subject + "_") for name in pair["key"].decode().split("+"))

    report = _test_py(tiny, "test_doe_neutral", doe)["doe_neutral"]
    assert report["class_names"] == list(CLASS_NAMES)
    test = report["splits"]["test-fold0"]
    source, _ = _pairs_of(tiny, "test-fold0")
    assert test["count"] == source.size  # the expression and the neutral pairs of fold 0
    assert test["per_class"]["neutral"]["count"] == _sequences(tiny, (0,))


def _fake_step1(tiny, name, card):
    """A file that passes as a step-1 model up to its card (a zip holding config.json), and the card."""
    import zipfile

    path = tiny / "fake" / f"{name}.keras"
    path.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    path.with_suffix(".json").write_text(json.dumps({"task": "expressions", "method": "ddoe-step1",
                                                     "image_size": SIZE, **card}))  # fmt: skip
    return path


@pytest.mark.parametrize("step1_neutral", [True, False])
def test_ddoe_step2_refuses_a_step1_with_other_classes(tiny, capsys, step1_neutral):
    pair_options = {"folds": 10, "peak_frames": 3, "neutral_pairs": step1_neutral}
    step1 = _fake_step1(tiny, f"neutral_{step1_neutral}", {"dataset": "synthface-ck+", "pair_options": pair_options,
                                                           "config": {"train_split": "train-fold0"}})  # fmt: skip
    flags = [] if step1_neutral else ["--neutral-class"]
    with pytest.raises(SystemExit) as stopped:
        _train(tiny, "ddoe-step2", f"mismatch_{step1_neutral}", "--step1", step1, *flags)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    with_it, without = "with --neutral-class (8 classes: ", "without --neutral-class (7 classes: "
    first, second = (with_it, without) if step1_neutral else (without, with_it)
    assert f"was trained {first}" in err[0] and f"this run is {second}" in err[0], err[0]
    assert "give both steps the same --neutral-class" in err[0]
    assert not (tiny / "runs" / f"mismatch_{step1_neutral}").exists()
    # a step 1 trained on single-image data (its head is dropped) is not a mismatch
    other = _fake_step1(tiny, "raf", {"dataset": "raf-db", "config": {"train_split": "train"}})
    DDoEStep2Config(step1=str(other), data_dir=str(tiny / "synthfaces"), tfds_dir=str(tiny / "tfds"),
                    image_size=SIZE, neutral_class=True).resolved().check_inputs()  # fmt: skip


def test_ddoe_step1_with_the_neutral_class_trains_on_the_neutral_onsets(tiny):
    from kdface.tasks.expressions.training import training_data

    config = DDoEStep1Config(identity_weights="none", data_dir=str(tiny / "synthfaces"), tfds_dir=str(tiny / "tfds"),
                             image_size=SIZE, batch_size=4, neutral_class=True).resolved()  # fmt: skip
    data = training_data(config)
    assert data.card["pair_options"]["neutral_pairs"] and data.class_names == CLASS_NAMES
    source, pairs = _pairs_of(tiny, "train-fold0[:90%]")
    assert data.card["train_class_counts"] == source.class_counts and source.class_counts[NEUTRAL] > 0
    neutral_keys = {p["key"] for p in pairs if p["label"] == NEUTRAL}
    labels = dict(zip(data.split.keys, data.split.labels, strict=True))
    assert neutral_keys and all(labels[key] == NEUTRAL for key in neutral_keys)  # their targets: onsets
