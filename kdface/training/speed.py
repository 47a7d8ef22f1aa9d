"""The run options that change how fast a step runs, not what it computes (docs/speed.md).

* ``--jit-compile``: the training (and evaluation) step compiled with XLA;
* ``--mixed-precision float16|bfloat16``: Keras' ``mixed_float16`` / ``mixed_bfloat16`` policy, set
  before the models are built (weights stay float32; float16 adds dynamic loss scaling);
* ``--steps-per-execution N``: ``N`` training steps per call into the compiled graph.

:func:`kdface.training.train_run` sets the policy around a run (:func:`precision_policy`) and applies
the rest to whatever compiled model a method's ``build`` returns (:func:`apply_speed_options`), so every
method gets them without repeating a flag. A method's own ``train_step`` has one duty: take gradients
of ``self.optimizer.scale_loss(loss)`` (a no-op without loss scaling) and compute its losses in
float32. The model the run saves is float32 whatever the policy (:func:`float32_model`).
"""

from __future__ import annotations

import contextlib

import keras

# --mixed-precision -> Keras dtype policy ("none" leaves the global policy as it is: float32 by default)
PRECISION_POLICIES = {"none": None, "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@contextlib.contextmanager
def policy_scope(policy: str):
    """The global dtype policy set to ``policy`` (a Keras policy name) inside the block."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def precision_policy(mixed_precision: str = "none"):
    """Set the global dtype policy for ``--mixed-precision`` while the block runs (models built inside
    compute in it), and restore the previous one afterwards."""
    policy = PRECISION_POLICIES[mixed_precision]
    with policy_scope(policy) if policy else contextlib.nullcontext():
        yield


def apply_speed_options(model: keras.Model, options) -> keras.Model:
    """Apply ``options``' ``jit_compile``, ``steps_per_execution`` and float16 loss scaling to a compiled
    model (what ``compile(jit_compile=..., steps_per_execution=...)`` would have set)."""
    if not getattr(model, "compiled", False):
        raise ValueError(f"{model.name}: the run options apply to a compiled model; compile it in build()")
    model.jit_compile = bool(options.jit_compile)
    if options.jit_compile and not model.jit_compile:  # Keras' setter declined (e.g. a layer without XLA)
        print(f"warning: {model.name} cannot be compiled with XLA (Keras declined it); running without")
    model.steps_per_execution = int(options.steps_per_execution)
    if options.mixed_precision == "float16" and not isinstance(
        model.optimizer, keras.optimizers.LossScaleOptimizer
    ):
        # compile() wraps it when the model's own policy is mixed_float16; a model built otherwise
        # still gets loss scaling, so float16 gradients cannot underflow.
        model.optimizer = keras.optimizers.LossScaleOptimizer(model.optimizer)
    model.train_function = model.test_function = model.predict_function = None  # rebuilt with the above
    return model


def describe(options) -> str:
    """One line: the speed options in effect."""
    parts = [
        "XLA" if options.jit_compile else "no XLA",
        {"none": "float32", "float16": "mixed float16 (loss scaling)", "bfloat16": "mixed bfloat16"}[
            options.mixed_precision
        ],
        f"{options.steps_per_execution} step(s) per execution",
    ]
    return ", ".join(parts)


def card_fields(options) -> dict:
    """The speed options as recorded in the model card (the saved model is float32 either way)."""
    return {"jit_compile": bool(options.jit_compile), "mixed_precision": options.mixed_precision,
            "steps_per_execution": int(options.steps_per_execution)}  # fmt: skip


def _layers(model: keras.Model):
    yield model
    yield from model._flatten_layers(include_self=False, recursive=True)


def _float32_config(config):
    """``config`` with every mixed dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and isinstance(
            config.get("config"), dict
        ):
            name = config["config"].get("name", "")
            if name.startswith("mixed_"):
                return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    return config


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` if every layer computes in float32; else a float32 copy with the same weights.

    Mixed precision keeps the weights in float32, so the copy is the trained network computing in
    float32: what ``test.py``, export and users load, whatever precision it was trained in."""
    if all(layer.dtype_policy.name == "float32" for layer in _layers(model)):
        return model
    config = _float32_config(keras.saving.serialize_keras_object(model))
    with policy_scope("float32"):
        copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy
