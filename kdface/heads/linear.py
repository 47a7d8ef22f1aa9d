"""The linear classifier every kdface classification head ends with, and torch ``nn.Linear``'s init
(for heads ported from torch)."""

from __future__ import annotations

import keras


def torch_linear_init():
    """torch ``nn.Linear``'s default kernel init: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
    (``VarianceScaling(1/3, "fan_in", "uniform")``)."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
    """torch ``nn.Linear``'s default bias init, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (Keras bias
    initialisers do not see the fan-in, so it is given)."""
    bound = 1.0 / float(fan_in) ** 0.5
    return keras.initializers.RandomUniform(-bound, bound)


def linear_head(num_classes: int, name: str = "classifier", use_bias: bool = True) -> keras.layers.Dense:
    """``Dense(num_classes)`` with torch ``nn.Linear``'s kernel init; the bias (if any) starts at zero
    (Keras' default, as kdface's classifiers always had)."""
    # float32: logits stay float32 under a mixed-precision policy (docs/speed.md)
    return keras.layers.Dense(
        num_classes, use_bias=use_bias, kernel_initializer=torch_linear_init(), name=name, dtype="float32"
    )


def torch_dense(units: int, fan_in: int, name: str, activation=None) -> keras.layers.Dense:
    """A ``Dense`` initialised as torch's ``nn.Linear`` (kernel and bias ``U(+-1/sqrt(fan_in))``)."""
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=torch_linear_init(),
        bias_initializer=torch_bias_init(fan_in),
        name=name,
    )
