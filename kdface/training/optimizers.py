"""Optimizers the originals use that Keras does not ship as such.

:class:`GroupAdam` is PyTorch's ``Adam(param_groups, weight_decay=wd)``: one Adam whose parameter
groups have their own learning rates, with **coupled** L2 (``wd * w`` added to the gradient before
the moments, as ``torch.optim.Adam`` does; not AdamW's decoupled decay). One optimizer, not one per
group, so its state is one set of variables that kdface's backups save and restore as usual.
"""

from __future__ import annotations

import keras


class GroupAdam(keras.optimizers.Adam):
    """Adam with per-group learning-rate multipliers and coupled L2 weight decay.

    ``groups`` is a list of ``(variables, factor)``: those variables train at ``factor`` times the
    base learning rate (or schedule); variables in no group get 1. Groups are matched by variable
    identity, not by name, so nested models with clashing layer names cannot be mixed up.
    ``coupled_weight_decay`` applies to every trainable variable, BatchNorm's included, as in the
    originals. The optimizer is not serialised with kdface's deployable models (they carry none).
    """

    def __init__(self, learning_rate=1e-3, *, groups=(), coupled_weight_decay=0.0, epsilon=1e-8, **kwargs):
        super().__init__(learning_rate=learning_rate, epsilon=epsilon, **kwargs)
        self.coupled_weight_decay = float(coupled_weight_decay)
        self._factors = {}
        for variables, factor in groups:
            for variable in variables:
                self._factors[self._var_key(variable)] = float(factor)
        self._factor_by_index: list[float] = []

    def build(self, var_list):
        super().build(var_list)
        self._factor_by_index = [self._factors.get(self._var_key(v), 1.0) for v in var_list]

    def learning_rate_factors(self) -> list[float]:
        """The factor of each variable the optimizer was built for, in its order."""
        return list(self._factor_by_index)

    def update_step(self, gradient, variable, learning_rate):
        factor = self._factor_by_index[self._get_variable_index(variable)]
        if self.coupled_weight_decay:
            gradient = gradient + self.coupled_weight_decay * keras.ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate * factor)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


class CoupledSGD(keras.optimizers.SGD):
    """SGD (momentum, Nesterov) with coupled L2 weight decay on every trainable variable: PyTorch's
    ``SGD(params, lr, momentum, nesterov=True, weight_decay=wd)`` as F-SKD and A-SKD train, BatchNorm,
    PReLU and the margin head's class centres included (``wd * w`` added to the gradient).

    Keras folds the learning rate into the velocity (``v = m v - lr g``) where torch keeps it outside
    (``b = m b + g``): identical while the rate is constant, slightly different just after a drop."""

    def __init__(self, learning_rate=0.1, *, momentum=0.9, nesterov=True, coupled_weight_decay=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, **kwargs)
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.coupled_weight_decay:
            gradient = gradient + self.coupled_weight_decay * keras.ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}
