"""The speed options (docs/speed.md) change how fast a step runs, not what it computes.

Every method's training step (KD-Loss's compute_loss path, the plain classifier, IGKD, SCN) on small
stand-in networks: with XLA it matches the step without; under float16 / bfloat16 mixed precision
its losses are finite, its loss-scaled update is the float32 one, and the model it deploys takes and
gives float32 and is saved as a float32 network; with several steps per execution the trainer ends
on the same weights, takes its backups and resumes exactly. Teacher-output caching: the cache holds
exactly what the live teachers compute, and its key changes with the teacher file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.errors import NonFiniteLossError, RunError
from kdface.heads import landmark_head, linear_head
from kdface.methods.fer import ExpressionClassifier
from kdface.methods.igkd import IGKD
from kdface.methods.kdloss import KDLossDistiller
from kdface.methods.scn import SCN
from kdface.training import RunDirectory, RunOptions, trainer
from kdface.training.optimizers import GroupAdam
from kdface.training.speed import apply_speed_options, float32_model, precision_policy

METHODS = ("kdloss", "fer", "igkd", "scn")
STEPS = 8
SIZE, BATCH, K, POINTS = 96, 4, 3, 5


@contextlib.contextmanager
def no_op_determinism():
    """Keras turns XLA off under op determinism (a process-wide switch other tests may have set)."""
    from tensorflow.python.framework import config

    was = config.is_op_determinism_enabled()
    if was:
        config.disable_op_determinism()
    try:
        yield
    finally:
        if was:
            config.enable_op_determinism()


def _backbone(name, channels, size=SIZE):
    """A stand-in backbone with the contract's keys. No parameter whose gradient is zero in exact
    arithmetic (Adam blows rounding noise up to +-lr): no conv bias (BatchNorm cancels it) and no
    BatchNorm offset (IGKD's mapping and fusion BatchNorms cancel the student's)."""
    inputs = keras.Input((size, size, 3))
    h = keras.layers.Conv2D(channels, 3, strides=32, padding="same", use_bias=False, name=f"{name}_conv")(
        inputs
    )
    h = keras.layers.BatchNormalization(momentum=0.9, center=False, name=f"{name}_bn")(h)
    return keras.Model(
        inputs, {"feature_map": h, "embedding": keras.layers.GlobalAveragePooling2D()(h)}, name=name
    )


def _regressor(name, size=SIZE):
    inputs = keras.Input((size, size, 3))
    return keras.Model(
        inputs, landmark_head(POINTS)(_backbone(f"{name}_net", 4, size)(inputs)["embedding"]), name=name
    )


def build(method, optimizer=None):
    """A compiled stand-in of ``method`` (seeded: two calls build equal weights)."""
    keras.utils.set_random_seed(1)
    if method == "kdloss":
        # a teacher of another input size sees the resized batch (its resize must compile with XLA)
        model = KDLossDistiller(_regressor("student"), _regressor("tough"), _regressor("tolerant", 64))
        model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3))
        return model
    inputs = keras.Input((SIZE, SIZE, 3))
    if method == "fer":
        network = keras.Model(inputs, linear_head(K)(_backbone("net", 8)(inputs)["embedding"]))
        model = ExpressionClassifier(network)
    elif method == "scn":
        features = _backbone("net", 8)(inputs)["embedding"]
        network = keras.Model(inputs, {
            "importance": keras.layers.Dense(1, activation="sigmoid", name="importance", dtype="float32")(features),
            "logits": keras.layers.Dense(K, name="classifier", dtype="float32")(features)})  # fmt: skip
        model = SCN(network, BATCH, margin=0.5, relabel_epoch=1, relabel_margin=0.0)
        model.set_labels([0, 1, 2, 0])
    else:
        model = IGKD(_backbone("teacher", 6), _backbone("student", 4), K, fusion_dropout=0.0)
    model.compile(optimizer=optimizer or GroupAdam(1e-3, coupled_weight_decay=1e-4))
    return model


def batch(method, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3)).astype("float32")
    if method == "kdloss":
        return images, rng.uniform(-0.3, 0.3, (BATCH, 2 * POINTS)).astype("float32")
    labels = np.array([0, 1, 2, 1], np.int32)
    if method == "igkd":
        return {"image": images, "masked": rng.uniform(0, 1, images.shape).astype("float32")}, labels
    if method == "scn":
        return {"image": images, "index": np.arange(BATCH, dtype=np.int32)}, labels
    return images, labels


def step(model, method, steps=1):
    """``steps`` training steps through ``fit`` (the path the trainer takes); returns the last logs."""
    history = model.fit(tf.data.Dataset.from_tensors(batch(method)).repeat(), epochs=1, steps_per_epoch=steps,
                        verbose=0, shuffle=False)  # fmt: skip
    return {k: v[-1] for k, v in history.history.items()}


# --- XLA ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_xla_step_matches_the_step_without(method):
    with no_op_determinism():
        plain, xla = build(method), build(method)
        apply_speed_options(xla, RunOptions(jit_compile=True))
        assert xla.jit_compile and not apply_speed_options(plain, RunOptions()).jit_compile
        before = [w.copy() for w in plain.get_weights()]
        logs_plain, logs_xla = step(plain, method), step(xla, method)
    for name, value in logs_plain.items():
        np.testing.assert_allclose(logs_xla[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    moved = 0
    for a, b, w0 in zip(xla.get_weights(), plain.get_weights(), before, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        moved += not np.array_equal(b, w0)
    assert moved > 3  # the step trained something


def test_the_teachers_resize_is_tf_image_resize_antialiased():
    """KD-Loss resizes the batch for a teacher of another input size with two matrix products (XLA has
    no kernel for the anti-aliased resize op): the same numbers."""
    from kdface.methods.kdloss import teacher_view

    images = tf.constant(np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32"))
    for size in (32, 48, 96, 224):
        teacher = keras.Model(inputs := keras.Input((size, size, 3)), inputs)
        expected = tf.image.resize(images, (size, size), antialias=True)
        np.testing.assert_allclose(teacher_view(teacher, images), expected, atol=1e-6)


# --- mixed precision ----------------------------------------------------------------------------------


def _images(x):
    return x["image"] if isinstance(x, dict) else x


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("method", METHODS)
def test_mixed_precision_steps_are_finite_and_the_deployed_model_is_float32(method, precision, tmp_path):
    options = RunOptions(mixed_precision=precision)
    with precision_policy(precision):
        model = apply_speed_options(build(method), options)
        assert model.dtype_policy.name == f"mixed_{precision}"
        logs = step(model, method, steps=STEPS)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert all(np.isfinite(v) for v in logs.values()), logs
    applied = int(model.optimizer.iterations.numpy())
    if precision == "float16":
        # dynamic loss scaling: a step whose scaled gradients overflow float16 is skipped and the scale
        # halved (IGKD's x1000 relation term overflows at Keras' initial 2^15), then steps apply
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        skipped = int(round(np.log2(2.0**15 / float(model.optimizer.dynamic_scale.numpy()))))
        assert applied + skipped == STEPS and applied >= 2, (applied, skipped)
    else:  # bfloat16 has float32's range: no loss scaling, no step skipped
        assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) and applied == STEPS
    if method == "scn":
        assert model.labels.dtype == "int32"
    images = _images(batch(method)[0])
    deploy = trainer.deployable(model)
    assert deploy.input.dtype == "float32"
    mixed_out = deploy(images)
    assert mixed_out.dtype == "float32"
    saved = float32_model(deploy)  # what the trainer saves
    assert saved is not deploy
    assert {layer.dtype_policy.name for layer in saved._flatten_layers()} == {"float32"}
    np.testing.assert_allclose(saved(images), mixed_out, atol=0.05)  # same weights, computed in float32
    trainer.save_model_atomically(saved, tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    out = loaded.predict(images, verbose=0)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, saved(images), atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_float16_loss_scaled_update_equals_the_float32_update(method):
    """One SGD step (learning rate 1: the update is minus the gradient). Under float16 the step takes
    the gradient of the scaled loss and the optimizer unscales it: forgetting either is off by the
    loss scale (2^8 here, low enough that no method's first step overflows)."""
    reference = build(method, keras.optimizers.SGD(1.0))
    start = [v.numpy() for v in reference.trainable_variables]
    step(reference, method)
    with precision_policy("float16"):
        scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(1.0), initial_scale=2.0**8)
        model = apply_speed_options(build(method, scaled), RunOptions(mixed_precision="float16"))
    assert model.optimizer is scaled
    for a, b in zip(model.trainable_variables, start, strict=True):
        np.testing.assert_array_equal(a.numpy(), b)
    step(model, method)
    assert int(model.optimizer.iterations.numpy()) == 1  # the scaled step was applied, not skipped
    d32 = np.concatenate(
        [(v.numpy() - s).ravel() for v, s in zip(reference.trainable_variables, start, strict=True)]
    )
    d16 = np.concatenate(
        [(v.numpy() - s).ravel() for v, s in zip(model.trainable_variables, start, strict=True)]
    )
    assert np.linalg.norm(d32) > 0
    assert np.linalg.norm(d16 - d32) < 0.05 * np.linalg.norm(d32), np.linalg.norm(d16 - d32) / np.linalg.norm(
        d32
    )


# --- steps per execution --------------------------------------------------------------------------------


def _dense(seed, steps_per_execution=1):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dropout(0.2)(
        keras.layers.Dense(8, activation="relu")(inputs)
    )  # seed-generator state too
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    model.compile(keras.optimizers.Adam(1e-2), "mse", steps_per_execution=steps_per_execution)
    return model


def _stream(bad_step=None):
    """Epoch-indexed: global batch ``i`` is a function of ``i`` alone (a NaN target at ``bad_step``)."""
    rng = np.random.default_rng(0)
    x, y = (
        tf.constant(rng.normal(size=(64, 6)).astype("float32")),
        tf.constant(rng.normal(size=(64, 2)).astype("float32")),
    )

    def batch_at(i):
        rows = tf.cast((i * 8) % 56, tf.int32) + tf.range(8)
        target = tf.gather(y, rows)
        return tf.gather(x, rows), tf.where(i == (-1 if bad_step is None else bad_step), np.nan, target)

    return lambda start_pass, skip: tf.data.Dataset.counter(start_pass * 4 + skip).map(batch_at)


class Crash(keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            raise KeyboardInterrupt


def _fit(model, path, steps=(3, 4), callbacks=(), **options):
    run = RunDirectory(path, RunOptions(**options)).open({"name": "spe"})
    trainer.fit(model, _stream(), None, run=run, epochs=steps[0], steps_per_epoch=steps[1], verbose=0,
                callbacks=list(callbacks))  # fmt: skip
    return run


def test_two_steps_per_execution_end_on_the_weights_of_one(tmp_path):
    one, two = _dense(0), _dense(0, steps_per_execution=2)
    _fit(one, tmp_path / "one")
    _fit(two, tmp_path / "two", backup_every=2, steps_per_execution=2)
    assert int(two.optimizer.iterations.numpy()) == 12  # 3 epochs x 4 steps: no execution overran an epoch
    for a, b in zip(two.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("crash_every", "resume_every"), [(2, 2), (2, 1), (1, 2)])
def test_backups_taken_between_executions_resume_exactly(tmp_path, crash_every, resume_every):
    """A run with ``crash_every`` steps per execution (backups at every execution's end) stopped at
    step 6 or 5, resumed with ``resume_every``: a backup inside an execution of the resumed run (step
    5 of 2-step executions) finishes its epoch in executions that fit."""
    full = _dense(0)
    _fit(full, tmp_path / "full")
    crash_at = 6 if crash_every == 2 else 5
    crashed = _dense(0, crash_every)
    with pytest.raises(KeyboardInterrupt):
        _fit(crashed, tmp_path / "run", callbacks=[Crash(crash_at)], backup_every=crash_every,
             steps_per_execution=crash_every)  # fmt: skip
    state = trainer.read_state(tmp_path / "run" / "backup")
    assert (state["epoch"], state["step"], state["global_step"]) == (1, crash_at - 4, crash_at)
    resumed = _dense(7, resume_every)
    _fit(resumed, tmp_path / "run", resume=True, steps_per_execution=resume_every)
    assert resumed.steps_per_execution == resume_every
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_backups_land_on_multiples_of_backup_every_with_several_steps_per_execution(tmp_path, monkeypatch):
    saved = []
    save_backup = trainer.save_backup

    def recording(model, backup_dir, **kwargs):
        state = save_backup(model, backup_dir, **kwargs)
        saved.append(state["global_step"])
        return state

    monkeypatch.setattr(trainer, "save_backup", recording)
    _fit(_dense(0, 2), tmp_path / "run", steps=(2, 6), backup_every=4, steps_per_execution=2)
    assert saved == [4, 6, 8, 12]  # every 4 steps, and at both epoch ends (6, 12)


def test_steps_per_execution_is_checked_against_backups_and_epochs(tmp_path):
    with pytest.raises(RunError, match="--backup-every 3 is not a multiple of --steps-per-execution 2"):
        RunOptions(backup_every=3, steps_per_execution=2)
    with pytest.raises(RunError, match="--steps-per-execution must be >= 1"):
        RunOptions(steps_per_execution=0)
    with pytest.raises(RunError, match="--jit-compile and --deterministic"):
        RunOptions(jit_compile=True, deterministic=True)
    with pytest.raises(RunError, match="does not divide the 3 steps of an epoch"):
        _fit(_dense(0, 2), tmp_path / "run", steps=(1, 3), backup_every=2)


def test_a_nan_inside_an_execution_stops_at_its_end_and_saves_nothing_after(tmp_path):
    model = _dense(0, 2)
    run = RunDirectory(tmp_path / "run", RunOptions(backup_every=2, steps_per_execution=2)).open(
        {"name": "nan"}
    )
    with pytest.raises(NonFiniteLossError, match=r"one of steps 3\.\.4 \(--steps-per-execution 2\)") as info:
        trainer.fit(model, _stream(bad_step=2), None, run=run, epochs=2, steps_per_epoch=4, verbose=0)
    assert "backup at step 2" in str(info.value)
    assert trainer.read_state(run.backup_dir)["global_step"] == 2


# --- the options reach every run ------------------------------------------------------------------------


def test_cli_flags_reach_the_compiled_model_the_run_record_and_the_card(tmp_path, capsys):
    import argparse

    from kdface.cli import training_main
    from kdface.io.cards import read_model_card
    from kdface.training import TrainingData, add_run_arguments, run_options_from_args, train_run

    with pytest.raises(SystemExit):
        training_main("teacher", "train", ["--method", "fer", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--jit-compile", "--mixed-precision", "--steps-per-execution", "--teacher-cache-dir"):
        assert flag in help_text

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    args = [
        "--jit-compile",
        "--mixed-precision",
        "bfloat16",
        "--steps-per-execution",
        "2",
        "--backup-every",
        "2",
    ]
    options = run_options_from_args(parser.parse_args(args))

    @dataclasses.dataclass
    class Config:
        dataset: str = "toy"
        epochs: int = 2
        seed: int = 0

    built = {}

    def build(data, run):
        built["model"] = _dense(0)
        return built["model"]

    data = TrainingData(stream=_stream(), steps_per_epoch=4, batches_per_pass=4, val=None, monitor="loss",
                        mode="min", skipped=[], card={"task": "toy"})  # fmt: skip
    out = tmp_path / "toy.keras"
    with no_op_determinism():
        train_run(Config(), method="toy", role="teacher", name="t", load_data=lambda run: data, build=build,
                  out=out, run_dir=tmp_path / "run", options=options)  # fmt: skip
    model = built["model"]
    assert model.jit_compile and model.steps_per_execution == 2
    assert model.dtype_policy.name == "mixed_bfloat16"  # built under the run's policy
    assert keras.mixed_precision.global_policy().name == "float32"  # and the policy restored after
    assert "speed: XLA, mixed bfloat16, 2 step(s) per execution" in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["run"]["jit_compile"] and record["run"]["steps_per_execution"] == 2
    assert record["config"]["mixed_precision"] == "bfloat16"  # a resume must keep the precision
    card = read_model_card(out)
    assert card["speed"] == {"jit_compile": True, "mixed_precision": "bfloat16", "steps_per_execution": 2}
    published = keras.saving.load_model(out)
    assert {layer.dtype_policy.name for layer in published._flatten_layers()} == {"float32"}
    with pytest.raises(RunError, match="mixed_precision"):
        train_run(Config(), method="toy", role="teacher", name="t", load_data=lambda run: data, build=build,
                  out=out, run_dir=tmp_path / "run", options=RunOptions(resume=True))  # fmt: skip
