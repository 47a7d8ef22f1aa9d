"""ViT-SE as an expression method (``--method vit-se``, docs/vit_se.md): the built models' parameter counts
against the spec at ViT-B/16, the ``--no-se`` ablation differing by the SE block alone, AdamW + StepLR
against torch, the deployable model on ``[0, 1]`` crops, and end to end through train_teacher.py and
test.py on a tiny SynthFaces (every model), with a bad training image stopping or skipped.

The heads' own counts and gates are in tests/test_fer_pair_models.py; exact resume after SIGKILL is in
tests/test_resume_kill.py and the 2-replica step in tests/test_distributed.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.data import synthfaces
from kdface.io import load_model
from kdface.methods.vit_se import ViTSEConfig, adamw, build_network
from kdface.tasks.expressions.training import ExpressionClassifier

ROOT = Path(__file__).resolve().parents[1]
SE_LAYERS = {"se.fc1", "se.fc2", "se.scale"}


def _layer_names(model):
    return {layer.name for layer in model.layers}


def test_paper_models_match_the_spec_counts_at_vit_b16():
    """Spec §1.1: ViT-B/16 with the pooler 86,389,248 (the spec's 86.39 M) + SE 295,872 + 769 C (variant A);
    §1.3: the final-LN CLS token (85,798,656, no pooler) + SE r = 2 (590,976) + 769 C (variant B)."""
    counts = {}
    for variant in ("A", "B"):
        config = ViTSEConfig(preset="paper", se_variant=variant).resolved()
        assert (config.backbone, config.image_size) == ("vit_b16", 224)
        network = build_network(config, 7)
        counts[variant] = network.count_params()
        backbone = network.get_layer("vit_b16")
        # only the variant that reads the pooler carries one (a pooler without gradient would be dead weight)
        assert ("pooler.dense" in _layer_names(backbone)) == (variant == "A")
        del network, backbone
        keras.backend.clear_session()
    assert counts == {"A": 86_389_248 + 295_872 + 769 * 7, "B": 85_798_656 + 590_976 + 769 * 7}


@pytest.mark.parametrize("variant", ["A", "B"])
def test_no_se_is_the_same_vit_and_feature_without_the_se_block(variant):
    config = ViTSEConfig(backbone="vit_tiny", image_size=32, se_variant=variant)
    with_se, without = build_network(config, 7), build_network(dataclasses.replace(config, no_se=True), 7)
    assert _layer_names(with_se) - _layer_names(without) == SE_LAYERS
    assert not SE_LAYERS & _layer_names(without)
    backbone = without.get_layer("vit_tiny")
    assert [w.shape for w in backbone.weights] == [w.shape for w in with_se.get_layer("vit_tiny").weights]
    reduction = {"A": 4, "B": 2}[variant]
    se = 2 * 192 * (192 // reduction) + 192 // reduction + 192
    assert with_se.count_params() - without.count_params() == se
    assert without.count_params() == backbone.count_params() + 193 * 7
    # the classifier reads the variant's feature: the pooler (A) or the final-LN CLS token (B)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    feature = backbone(x)["pooled" if variant == "A" else "embedding"]
    w, b = (np.asarray(v) for v in without.get_layer("classifier").weights)
    np.testing.assert_allclose(np.asarray(without(x)), np.asarray(feature) @ w + b, atol=1e-5)


@pytest.mark.parametrize("weight_decay", [0.1, 0.0])
def test_adamw_with_step_lr_matches_torch(weight_decay):
    """torch ``AdamW(lr, weight_decay)`` + ``StepLR(step_size=2, gamma=0.2)`` stepped per epoch, 3 steps per
    epoch for 6 epochs (two drops); weight decay 0 is torch's plain ``Adam``."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)]
    steps_per_epoch, epochs = 3, 6
    grads = [
        [rng.normal(size=w.shape).astype(np.float32) for w in init] for _ in range(steps_per_epoch * epochs)
    ]
    params = [torch.nn.Parameter(torch.tensor(w)) for w in init]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=weight_decay)
    if not weight_decay:
        opt = torch.optim.Adam(params, lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.2)
    for epoch in range(epochs):
        for step in grads[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]:
            for p, g in zip(params, step, strict=True):
                p.grad = torch.tensor(g)
            opt.step()
        scheduler.step()
    config = ViTSEConfig(learning_rate=1e-2, weight_decay=weight_decay, lr_gamma=0.2, lr_step_epochs=2)
    optimizer = adamw(config, steps_per_epoch)
    variables = [keras.Variable(w) for w in init]
    for step in grads:
        optimizer.apply([tf.constant(g) for g in step], variables)
    # the next (7th) epoch's rate: dropped after epochs 2, 4 and 6, as torch's after its 6 scheduler steps
    assert float(optimizer.learning_rate) == pytest.approx(opt.param_groups[0]["lr"]) == pytest.approx(8e-5)
    for p, v in zip(params, variables, strict=True):
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), atol=1e-6)


def test_deploy_model_gives_probabilities_on_unit_range_crops_and_loads_safely(tmp_path):
    config = ViTSEConfig(backbone="vit_tiny", image_size=32, se_variant="A")
    model = ExpressionClassifier(build_network(config, 7))
    model.compile(
        optimizer=adamw(ViTSEConfig(learning_rate=1e-3, weight_decay=0.01, lr_gamma=0.2, lr_step_epochs=1), 2)
    )
    crops = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    logs = model.train_on_batch(crops, np.array([0, 1, 2, 3]), return_dict=True)
    assert np.isfinite(logs["loss"])
    probabilities = model.deploy_model.predict(crops, verbose=0)
    assert probabilities.shape == (4, 7) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    model.deploy_model.save(tmp_path / "vit_se.keras")
    loaded = load_model(tmp_path / "vit_se.keras")  # test.py's loader: safe mode, built-in layers only
    np.testing.assert_allclose(loaded.predict(crops, verbose=0), probabilities, atol=1e-5)
    assert loaded.get_layer("se.fc2").activation.__name__ == "relu"  # variant A's gate


# --- end to end --------------------------------------------------------------------------------------------

# file name -> (flags, the method's default model name)
MODELS = {
    "vit_se_b": ([], "vit_se_b_vit_tiny"),
    "vit_se_a": (["--se-variant", "A"], "vit_se_a_vit_tiny"),
    "no_se": (["--no-se"], "vit_se_b_no_se_vit_tiny"),
}


@pytest.mark.slow
def test_every_model_trains_through_the_cli_and_test_py_evaluates_it(tmp_path):
    """Variant B (default), variant A and the --no-se baseline, each one epoch of the tiny SynthFaces at 16 px
    (started together, each with its own TFDS folder), then test.py on all three."""
    data = tmp_path / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    processes = {}
    for name, (flags, _) in MODELS.items():
        command = [sys.executable, ROOT / "train_teacher.py", "--method", "vit-se", *flags, "--dataset", "synthface",
                   "--data-dir", data, "--tfds-dir", tmp_path / f"tfds-{name}", "--image-size", "16",
                   "--batch-size", "6", "--epochs", "1", "--val-fraction", "0.2",
                   "--out", tmp_path / "models" / f"{name}.keras", "--run-dir", tmp_path / "runs" / name]  # fmt: skip
        processes[name] = subprocess.Popen(list(map(str, command)), cwd=tmp_path, env=env, text=True,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    for name, process in processes.items():
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
        assert f"vit-se teacher {MODELS[name][1]} on synthface" in output

    models = {name: tmp_path / "models" / f"{name}.keras" for name in MODELS}
    cards = {name: json.loads(path.with_suffix(".json").read_text()) for name, path in models.items()}
    for name, card in cards.items():
        assert card["method"] == "vit-se" and card["task"] == "expressions" and card["image_size"] == 16
        assert card["config"]["backbone"] == "vit_tiny" and card["config"]["weight_decay"] == 0.01
        assert (tmp_path / "runs" / name / "history.csv").is_file()
    assert [cards[n]["config"]["se_variant"] for n in MODELS] == ["B", "A", "B"]
    assert [cards[n]["feature"] for n in MODELS] == ["embedding", "pooled", "embedding"]
    assert "no SE" in cards["no_se"]["head"] and cards["no_se"]["config"]["no_se"]

    loaded = {name: load_model(path) for name, path in models.items()}
    assert loaded["vit_se_b"].get_layer("se.fc2").activation.__name__ == "sigmoid"
    assert loaded["vit_se_a"].get_layer("se.fc2").activation.__name__ == "relu"
    assert not SE_LAYERS & _layer_names(loaded["no_se"])
    reduction_2 = 2 * 192 * 96 + 96 + 192
    assert loaded["vit_se_b"].count_params() - loaded["no_se"].count_params() == reduction_2
    crops = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    for model in loaded.values():
        probabilities = model.predict(crops, verbose=0)
        assert probabilities.shape == (3, 7) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    # test.py, in-process (loaded by path: "test" is also a stdlib package)
    spec = importlib.util.spec_from_file_location("kdface_test_cli", ROOT / "test.py")
    test_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_cli)
    out = tmp_path / "test"
    argv = [a for path in models.values() for a in ("--model", str(path))]
    test_cli.main([*argv, "--dataset", "synthface", "--data-dir", str(data),
                   "--tfds-dir", str(tmp_path / "tfds-vit_se_b"), "--out", str(out)])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    for name in MODELS:
        test = report[name]["splits"]["test"]
        assert test["count"] == 12 and 0.0 <= test["accuracy"] <= 100.0  # percent
    assert all(name in (out / "report.md").read_text() for name in MODELS)


@pytest.mark.slow
def test_training_on_raf_db_errors_on_or_skips_a_bad_image(tmp_path, capsys, monkeypatch):
    """RAF-DB in its own layout with a truncated training image: the run stops naming the file and the
    label line (exit 2, nothing trained), or under --on-bad-sample skip trains on the rest and lists it."""
    from fer_fixtures import rafdb_samples, write_rafdb_scn

    from kdface.cli import training_main

    data = tmp_path / "raf"
    write_rafdb_scn(data, rafdb_samples(n_train=12, n_test=2))
    victim = data / "Image/aligned/train_00003_aligned.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    monkeypatch.chdir(tmp_path)
    argv = ["--method", "vit-se", "--dataset", "raf-db", "--data-dir", str(data), "--tfds-dir", str(tmp_path / "tfds"),
            "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--val-fraction", "0"]  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        training_main(
            "teacher", "", [*argv, "--out", str(tmp_path / "a.keras"), "--run-dir", str(tmp_path / "a")]
        )
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "list_patition_label.txt:3 -> " in last and victim.name in last, (
        last
    )
    assert not (tmp_path / "a.keras").exists()
    training_main("teacher", "", [*argv, "--out", str(tmp_path / "b.keras"), "--run-dir", str(tmp_path / "b"),
                                  "--on-bad-sample", "skip"])  # fmt: skip
    listing = json.loads((tmp_path / "b" / "skipped_samples.json").read_text())
    assert listing["count"] == 1 and victim.name in listing["skipped"][0]["path"]
    card = json.loads((tmp_path / "b.json").read_text())
    assert card["method"] == "vit-se" and sum(card["train_class_counts"]) == 11
