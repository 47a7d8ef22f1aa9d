"""Keras metrics computed during ``fit`` (the final evaluation uses the NumPy metrics in pixels)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable("kdface")
class LandmarkNME(keras.metrics.Mean):
    """Mean NME over images, on flat interleaved normalised vectors ``(B, 2N)``.

    With square crops this equals the pixel NME in the crop, so it is the validation number to
    select checkpoints on. ``normaliser`` is the point pair whose ground-truth distance divides.
    """

    def __init__(self, normaliser=(36, 45), name="nme", **kwargs):
        super().__init__(name=name, **kwargs)
        self.normaliser = tuple(int(i) for i in normaliser)

    def update_state(self, y_true, y_pred, sample_weight=None):
        gt = ops.reshape(ops.cast(y_true, "float32"), (ops.shape(y_true)[0], -1, 2))
        pred = ops.reshape(ops.cast(y_pred, "float32"), (ops.shape(y_pred)[0], -1, 2))
        a, b = self.normaliser
        scale = ops.norm(gt[:, a] - gt[:, b], axis=-1)
        errors = ops.mean(ops.norm(pred - gt, axis=-1), axis=-1) / ops.maximum(scale, 1e-12)
        return super().update_state(errors, sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "normaliser": list(self.normaliser)}
