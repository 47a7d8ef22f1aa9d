"""Task heads put on a backbone's ``"embedding"`` (see :mod:`kdface.backbones`).

* :func:`linear_head`: a classifier ``Dense`` initialised like torch's ``nn.Linear`` kernel (what the
  expression methods use: ``fer``'s classifier, IGKD's and SCN's heads);
* :func:`landmark_head`: KD-Loss's regressor head, ``(Dropout) -> Dense(2N)`` named ``landmarks``;
* :class:`MarginHead`: the CosFace / ArcFace margin classifier of face recognition (:mod:`kdface.heads.margin`).
"""

from __future__ import annotations

import keras

from kdface.heads.margin import MarginHead

__all__ = ["MarginHead", "landmark_head", "linear_head", "torch_bias_init", "torch_linear_init"]


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


class _LandmarkHead:
    """``(B, D) features -> (B, 2N) landmarks``: the layers are applied in the caller's Functional graph
    (not wrapped in a nested model), so a regressor has the top-level layers ``dropout`` (when
    ``dropout`` > 0) and ``landmarks``, as KD-Loss regressors always had."""

    def __init__(self, num_points: int, dropout: float = 0.0):
        self.num_points = int(num_points)
        self.layers = [keras.layers.Dropout(dropout, name="dropout")] if dropout else []
        # float32: the landmark vector stays float32 under a mixed-precision policy (docs/speed.md)
        self.layers.append(keras.layers.Dense(2 * self.num_points, name="landmarks", dtype="float32"))

    def __call__(self, features):
        x = features
        for layer in self.layers:
            x = layer(x)
        return x


def landmark_head(num_points: int, dropout: float = 0.0) -> _LandmarkHead:
    """KD-Loss's head: ``Dropout(dropout)`` (left out at 0) then ``Dense(2 * num_points)`` named
    ``landmarks`` (Keras' default init). Call it on the backbone's ``"embedding"``::

        outputs = landmark_head(68, dropout=0.2)(backbone(images)["embedding"])
    """
    return _LandmarkHead(num_points, dropout)
