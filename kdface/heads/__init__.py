"""Task heads put on a backbone's ``"embedding"`` (see :mod:`kdface.backbones`).

* :func:`linear_head`: a classifier ``Dense`` initialised like torch's ``nn.Linear`` kernel (what the
  expression methods use: ``fer``'s classifier, IGKD's and SCN's heads);
* :func:`landmark_head`: KD-Loss's regressor head, ``(Dropout) -> Dense(2N)`` named ``landmarks``;
* :class:`MarginHead`: the CosFace / ArcFace margin classifier of face recognition (:mod:`kdface.heads.margin`);
* :func:`vit_se_head` / :func:`squeeze_excitation`: ViT-SE's gate + classifier, variants A and B
  (:mod:`kdface.heads.se`);
* :func:`doe_head`, :func:`ddoe_step1_head`, :func:`mlp_classifier`: Difference of Embeddings and
  Disentangled DoE (:mod:`kdface.heads.doe`).

Heads are functions of tensors adding built-in layers to the caller's graph; the models that put them on
backbones are in :mod:`kdface.models`.
"""

from __future__ import annotations

import keras

from kdface.heads.doe import MLP_WIDTHS, ddoe_step1_head, difference_features, doe_head, mlp_classifier
from kdface.heads.linear import linear_head, torch_bias_init, torch_dense, torch_linear_init
from kdface.heads.margin import MarginHead
from kdface.heads.se import (
    DEFAULT_VIT_SE_VARIANT,
    VIT_SE_VARIANTS,
    SEVariant,
    squeeze_excitation,
    vit_se_head,
    vit_se_variant,
)

__all__ = [
    "DEFAULT_VIT_SE_VARIANT",
    "MLP_WIDTHS",
    "VIT_SE_VARIANTS",
    "MarginHead",
    "SEVariant",
    "ddoe_step1_head",
    "difference_features",
    "doe_head",
    "landmark_head",
    "linear_head",
    "mlp_classifier",
    "squeeze_excitation",
    "torch_bias_init",
    "torch_dense",
    "torch_linear_init",
    "vit_se_head",
    "vit_se_variant",
]


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
