"""The heads of Difference of Embeddings (DoE) and Disentangled DoE (spec ``vitse_doe_fer.md`` §2, §3).

Both end in the same MLP, :func:`mlp_classifier`: Linear 256 -> 128 -> 64 -> 32 -> C with a ReLU after
each of the first four and raw logits out (no dropout, no BatchNorm; layers ``mlp.0`` .. ``mlp.3``
and ``classifier``). What goes in differs:

* :func:`doe_head` (DoE, and Disentangled DoE step 2): two embeddings of one shared encoder, neutral
  ``e_n`` and target ``e_t``; ``concat[e_t - e_n, e_t]``, **difference first** (layers
  ``difference``, ``doe_features``). 1920 inputs for MobileNetV3-Large's 960-d embeddings: 535,272
  parameters at C = 8 (491,776 + 32,896 + 8,256 + 2,080 + 33 C);
* :func:`ddoe_step1_head` (Disentangled DoE step 1): ``concat[e_emotion, e_identity]``, **emotion
  first** (layer ``ddoe_features``); 3008 inputs for 960 + 2048: 770,304 + 43,232 + 33 C parameters.

Built-in Keras layers applied in the caller's graph, so a saved model loads without kdface. The hidden
layers are initialised like torch's ``nn.Linear`` (the originals are torch); the last layer is kdface's
:func:`~kdface.heads.linear.linear_head` (float32 logits under mixed precision).
"""

from __future__ import annotations

import keras

from kdface.heads.linear import linear_head, torch_dense

MLP_WIDTHS = (256, 128, 64, 32)


def mlp_classifier(features, num_classes: int, widths=MLP_WIDTHS, name: str = "mlp"):
    """``features`` ``(B, D)`` -> Linear+ReLU for each of ``widths`` (layers ``{name}.0``, ...) -> Linear C
    (layer ``classifier``): logits ``(B, num_classes)``."""
    x = features
    for i, width in enumerate(widths):
        x = torch_dense(int(width), int(x.shape[-1]), f"{name}.{i}", activation="relu")(x)
    return linear_head(num_classes)(x)


def difference_features(neutral, target):
    """``concat[target - neutral, target]`` ``(B, 2D)`` from two ``(B, D)`` embeddings: the difference
    first, as the original concatenates them."""
    difference = keras.layers.Subtract(name="difference")([target, neutral])
    return keras.layers.Concatenate(name="doe_features")([difference, target])


def doe_head(neutral, target, num_classes: int):
    """DoE's logits ``(B, num_classes)`` from the neutral and target embeddings of one shared encoder."""
    return mlp_classifier(difference_features(neutral, target), num_classes)


def ddoe_step1_head(emotion, identity, num_classes: int):
    """Disentangled DoE step 1's logits from one image's emotion and identity embeddings
    (``concat[emotion, identity]``, emotion first)."""
    features = keras.layers.Concatenate(name="ddoe_features")([emotion, identity])
    return mlp_classifier(features, num_classes)
