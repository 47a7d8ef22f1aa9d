"""Difference of Embeddings (DoE) and Disentangled DoE (spec ``vitse_doe_fer.md`` §2, §3) as Functional
models over kdface backbones (their ``"embedding"`` output).

* :func:`build_doe`: pairs ``(B, 2, S, S, 3)`` in ``[0, 1]`` (one input, :data:`PAIR_INPUT_NAME`; the
  neutral face at index :data:`NEUTRAL` of axis 1, the target at :data:`TARGET`, the original's
  ``[B, 2, C, H, W]`` layout) -> :func:`split_pair` -> one encoder applied to both (one set of weights,
  nested once as ``encoder``) -> :func:`~kdface.heads.doe.doe_head` -> logits. The encoder is frozen by
  default, as DoE's is;
* :func:`build_target_only`: the ablation of DoE's README, the same encoder and MLP classifying the
  target image alone (``image`` ``(B, S, S, 3)`` -> logits; no neutral reference);
* :func:`build_ddoe_step1`: ``image`` -> a trainable emotion encoder (``emotion_encoder``) and a frozen
  identity encoder (``identity_encoder``) -> :func:`~kdface.heads.doe.ddoe_step1_head` -> logits. Each
  encoder normalises the ``[0, 1]`` image its own way inside (the original fed both one tensor, spec §5
  item 7);
* :func:`build_ddoe_step2`: DoE (pairs in) on a frozen copy of step 1's emotion encoder.

One pair tensor rather than two named inputs keeps ``model.predict(pairs)`` a call with one array and
gives the saved model and its LiteRT export the single input every kdface model has; the expression
pipeline builds that tensor (:mod:`kdface.tasks.expressions.pairs`, which takes the layout from here).

The encoders are nested under those fixed names (a Functional view of the same layers and weights, not
a copy), so step 2 finds step 1's emotion encoder in a model loaded from disk. Freezing is
:func:`kdface.backbones.freeze`: no weight update and BatchNorm in inference mode, also when the pair
model trains. Everything is built-in Keras layers and operations (the pair is split by Keras' own
slicing operation, saved as an operation node, not a ``Lambda``): the models save and load with
``safe_mode=True``.
"""

from __future__ import annotations

import keras

from kdface.backbones.freezing import freeze
from kdface.errors import ConfigError
from kdface.heads.doe import ddoe_step1_head, doe_head, mlp_classifier

PAIR_INPUT_NAME = "pairs"  # the pair models' one input, (B, 2, S, S, 3)
NEUTRAL, TARGET = 0, 1  # positions of a pair's images on axis 1 of that input
ENCODER = "encoder"
EMOTION_ENCODER = "emotion_encoder"
IDENTITY_ENCODER = "identity_encoder"


def _named(backbone: keras.Model, name: str) -> keras.Model:
    """``backbone`` under ``name``: a Functional model over the same layers (weights shared, nothing
    copied). A backbone whose output is not a dict with ``"embedding"`` is a ``ConfigError``."""
    if not isinstance(backbone.output, dict) or "embedding" not in backbone.output:
        raise ConfigError(f"{backbone.name} is not a kdface backbone: it has no 'embedding' output")
    if backbone.name == name:
        return backbone
    return keras.Model(backbone.input, backbone.output, name=name)


def split_pair(pairs):
    """``(B, 2, S, S, 3)`` pairs (tensors or Keras inputs) -> ``(neutral, target)``, each ``(B, S, S, 3)``."""
    return pairs[:, NEUTRAL], pairs[:, TARGET]


def _image_input(encoders, image_size, name, pair: bool = False):
    """A ``(B, S, S, 3)`` input (``(B, 2, S, S, 3)`` if ``pair``) with ``S`` from ``image_size`` or the
    encoders' own fixed size."""
    sizes = {int(e.input.shape[1]) for e in encoders if e.input.shape[1] is not None}
    if image_size is None:
        if len(sizes) > 1:
            raise ConfigError(f"the encoders take different image sizes {sorted(sizes)}; give image_size")
        size = next(iter(sizes), None)
    else:
        size = int(image_size)
        if sizes - {size}:
            raise ConfigError(f"image_size {size} differs from the encoders' own {sorted(sizes)}")
    return keras.Input((2, size, size, 3) if pair else (size, size, 3), name=name)


def build_doe(
    encoder: keras.Model,
    num_classes: int,
    image_size: int | None = None,
    freeze_encoder: bool = True,
    name: str = "doe",
) -> keras.Model:
    """DoE: pairs ``(B, 2, S, S, 3)`` in ``[0, 1]`` (neutral at index 0 of axis 1, target at 1) ->
    logits ``(B, num_classes)``. ``encoder`` (any kdface backbone; DoE's is MobileNetV3-Large with ImageNet
    weights) embeds both images with one set of weights; ``freeze_encoder`` freezes it in place (the
    spec's DoE; ``False`` fine-tunes it). ``image_size`` defaults to the encoder's."""
    encoder = _named(encoder, ENCODER)
    if freeze_encoder:
        freeze(encoder)
    pairs = _image_input([encoder], image_size, PAIR_INPUT_NAME, pair=True)
    neutral, target = (encoder(image)["embedding"] for image in split_pair(pairs))
    return keras.Model(pairs, doe_head(neutral, target, num_classes), name=name)


def build_target_only(
    encoder: keras.Model,
    num_classes: int,
    image_size: int | None = None,
    freeze_encoder: bool = True,
    name: str = "doe_target_only",
) -> keras.Model:
    """DoE without the neutral reference: ``image`` ``(B, S, S, 3)`` in ``[0, 1]`` -> ``encoder``
    (nested as ``encoder``, frozen in place by default) -> its embedding -> the same MLP
    (:func:`~kdface.heads.doe.mlp_classifier`, 256-128-64-32-C) -> logits. What DoE's difference adds is
    what it gains over this model on the same encoder and targets."""
    encoder = _named(encoder, ENCODER)
    if freeze_encoder:
        freeze(encoder)
    image = _image_input([encoder], image_size, "image")
    return keras.Model(image, mlp_classifier(encoder(image)["embedding"], num_classes), name=name)


def build_ddoe_step1(
    emotion_encoder: keras.Model,
    identity_encoder: keras.Model,
    num_classes: int,
    image_size: int | None = None,
    name: str = "ddoe_step1",
) -> keras.Model:
    """Disentangled DoE step 1: ``image`` ``(B, S, S, 3)`` in ``[0, 1]`` -> logits. ``emotion_encoder``
    (MobileNetV3-Large in the original) is trained; ``identity_encoder`` (the VGGFace2 ResNet-50) is
    frozen in place. The two must be different models (no shared layers)."""
    emotion_layers = {id(layer) for layer in emotion_encoder.layers}
    if emotion_encoder is identity_encoder or any(
        id(layer) in emotion_layers for layer in identity_encoder.layers
    ):
        raise ConfigError("the emotion and identity encoders must be two models; these share layers")
    emotion = _named(emotion_encoder, EMOTION_ENCODER)
    identity = freeze(_named(identity_encoder, IDENTITY_ENCODER))
    image = _image_input([emotion, identity], image_size, "image")
    logits = ddoe_step1_head(emotion(image)["embedding"], identity(image)["embedding"], num_classes)
    return keras.Model(image, logits, name=name)


def emotion_encoder_of(step1: keras.Model) -> keras.Model:
    """The emotion encoder of a step-1 model (built here or loaded from a ``.keras`` file), or
    ``step1`` itself if it is an encoder (a kdface backbone)."""
    if isinstance(step1.output, dict) and "embedding" in step1.output:
        return step1
    try:
        return step1.get_layer(EMOTION_ENCODER)
    except ValueError:
        raise ConfigError(
            f"{step1.name} holds no {EMOTION_ENCODER!r}: give a Disentangled DoE step-1 model or its encoder"
        ) from None


def build_ddoe_step2(
    step1: keras.Model, num_classes: int, image_size: int | None = None, name: str = "ddoe_step2"
) -> keras.Model:
    """Disentangled DoE step 2: :func:`build_doe` on a frozen **copy** of ``step1``'s emotion encoder
    (``step1``: a step-1 model or its emotion encoder). The copy has the step-1 weights and BatchNorm
    statistics; ``step1`` itself stays trainable. The identity encoder and the step-1 head are not used."""
    source = emotion_encoder_of(step1)
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(source))
    copy.set_weights(source.get_weights())
    return build_doe(copy, num_classes, image_size=image_size, freeze_encoder=True, name=name)
