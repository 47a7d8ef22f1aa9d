"""Freezing a backbone: it receives no update, neither its weights nor its BatchNormalization statistics.

:func:`freeze` sets ``trainable = False`` on the model, which Keras passes down to every layer and
variable. That is enough for both halves, and it is Keras' own mechanism rather than a kdface one:

* the weights leave ``trainable_weights``, so no optimizer (nor a weight decay applied through it)
  ever sees them;
* a BatchNormalization whose ``trainable`` is ``False`` runs in inference mode even when called with
  ``training=True`` (Keras 3: batch statistics and moving-average updates only when
  ``training and self.trainable``), so a model that trains around a frozen encoder normalises with the
  encoder's moving statistics and leaves them as they are. This is the fix for the torch originals'
  frozen encoders whose BatchNorm drifts in ``train()`` mode (spec ``vitse_doe_fer.md`` §5, items 5-6);
* ``trainable`` is in every layer's saved config, so a ``.keras`` file loads frozen (``safe_mode`` and
  no kdface needed).

Freeze before ``compile``: Keras collects the trainable variables when the train step is built.
``Dropout`` inside a frozen model is still active under ``training=True`` (it has no state, so the
encoder is unchanged either way); the kdface backbones have none in their default configuration.
"""

from __future__ import annotations

import keras

from kdface.backbones.contract import leaf_layers


def freeze(model: keras.Model) -> keras.Model:
    """Make ``model`` receive no update (weights and BatchNormalization statistics, see the module
    docstring); returns it, frozen in place."""
    model.trainable = False
    return model


def is_frozen(model: keras.Model) -> bool:
    """Whether no layer of ``model`` (nested ones included) is trainable, i.e. it holds no trainable
    weight and its BatchNormalizations run in inference mode whatever ``training`` says."""
    return not model.trainable_weights and not any(
        layer.trainable for layer in leaf_layers(model) if layer.weights
    )
