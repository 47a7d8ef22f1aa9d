"""The margin classifier of a face-recognition model (spec F-SKD §1.4) as a Keras layer.

:class:`MarginHead` holds the class weights ``W`` ``(K, D)`` (torch's ``(n_cls, 512)`` layout, so
weights convert without a transpose) and computes the logits with :mod:`kdface.losses.recognition`.
It only exists for training: the deployable model is the backbone's embedding; evaluation compares
embeddings, never logits.
"""

from __future__ import annotations

import keras

from kdface.errors import ConfigError, UnknownNameError
from kdface.losses.recognition import (
    ARCFACE_MARGIN,
    ARCFACE_SCALE,
    COSFACE_MARGIN,
    COSFACE_SCALE,
    arcface_logits,
    cosface_logits,
    cosine_logits,
)
from kdface.registry import unknown_name_message

# margin -> (default scale s, default margin m)
MARGIN_DEFAULTS = {
    "cosface": (COSFACE_SCALE, COSFACE_MARGIN),
    "arcface": (ARCFACE_SCALE, ARCFACE_MARGIN),
    "softmax": (COSFACE_SCALE, 0.0),
}


@keras.saving.register_keras_serializable(package="kdface")
class MarginHead(keras.layers.Layer):
    """Margin logits over ``num_classes`` identities from ``(B, D)`` embeddings.

    Parameters
    ----------
    num_classes:
        ``K``, the number of training identities (10,572 for CASIA-WebFace).
    margin:
        ``"cosface"`` (F-SKD v1's default: s = 30, m = 0.25), ``"arcface"`` (A-SKD: s = 32, m = 0.5)
        or ``"softmax"`` (no margin: ``s cos`` always; a baseline).
    scale, margin_value:
        ``s`` and ``m``; ``None`` takes the margin's default. ``"softmax"`` takes no margin value.
    easy_margin:
        ArcFace only: apply the margin only where ``cos > 0`` (Face_Pytorch's option).

    ``call(embeddings, labels=None)``: with integer ``labels`` ``(B,)`` the margin logits (training);
    without them the plain scaled cosine ``s cos`` (what inference and evaluation use, since a margin
    needs the true class). The kernel ``W`` ``(K, D)`` is Glorot-uniform, the same bound
    ``sqrt(6 / (K + D))`` as torch's ``xavier_uniform_`` on ``(n_cls, D)``. Logits are float32 under
    any precision policy.
    """

    def __init__(
        self,
        num_classes: int,
        margin: str = "cosface",
        scale: float | None = None,
        margin_value: float | None = None,
        easy_margin: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        margin = str(margin).lower()
        if margin not in MARGIN_DEFAULTS:
            raise UnknownNameError(unknown_name_message("margin", margin, MARGIN_DEFAULTS))
        if int(num_classes) < 1:
            raise ConfigError(f"MarginHead: num_classes must be at least 1, got {num_classes}")
        default_scale, default_margin = MARGIN_DEFAULTS[margin]
        scale = default_scale if scale is None else float(scale)
        if not scale > 0:
            raise ConfigError(f"MarginHead: scale must be positive, got {scale}")
        if margin == "softmax":
            if margin_value not in (None, 0, 0.0):
                raise ConfigError(f"MarginHead: margin 'softmax' has no margin value, got {margin_value}")
            margin_value = 0.0
        margin_value = default_margin if margin_value is None else float(margin_value)
        if margin == "arcface" and not 0.0 <= margin_value < 3.141592653589793 / 2:
            raise ConfigError(f"MarginHead: an ArcFace margin must be in [0, pi/2), got {margin_value}")
        if margin == "cosface" and not 0.0 <= margin_value <= 2.0:
            raise ConfigError(f"MarginHead: a CosFace margin must be in [0, 2], got {margin_value}")
        if easy_margin and margin != "arcface":
            raise ConfigError(f"MarginHead: easy_margin is an ArcFace option, not {margin!r}")
        self.num_classes = int(num_classes)
        self.margin = margin
        self.scale = scale
        self.margin_value = margin_value
        self.easy_margin = bool(easy_margin)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError("MarginHead: the embedding size (last axis) must be known when building")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_classes, int(dim)),
            initializer=keras.initializers.GlorotUniform(),
            trainable=True,
        )

    def call(self, embeddings, labels=None):
        if labels is None or self.margin == "softmax":
            return cosine_logits(embeddings, self.kernel, self.scale)
        if self.margin == "cosface":
            return cosface_logits(embeddings, self.kernel, labels, self.scale, self.margin_value)
        return arcface_logits(
            embeddings, self.kernel, labels, self.scale, self.margin_value, easy_margin=self.easy_margin
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            margin=self.margin,
            scale=self.scale,
            margin_value=self.margin_value,
            easy_margin=self.easy_margin,
        )
        return config
