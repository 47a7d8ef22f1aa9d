"""Disentangled Difference of Embeddings, in two steps (spec ``vitse_doe_fer.md`` §3), each a method.

``python train_teacher.py --method ddoe-step1 --dataset ck+ --data-dir CK+ --fold 3 --identity-weights resnet50_vggface2.npz``
then ``python train_teacher.py --method ddoe-step2 --step1 models/teachers/ck+_ddoe_step1_…_fold3.keras
--dataset ck+ --data-dir CK+ --fold 3``.

* **Step 1** (``ddoe-step1``, :func:`kdface.models.build_ddoe_step1`): single images -> a **trained**
  emotion encoder (MobileNetV3-Large) beside a **frozen** identity encoder (ResNet-50 with VGGFace2
  weights in the original; ``--identity-backbone``, ``--identity-weights``) -> ``concat[e_emotion,
  e_identity]`` -> MLP 256-128-64-32-C -> logits; cross-entropy. Nothing else pushes the two apart
  (the original has no disentangling loss): the emotion encoder is free to learn what the identity
  features lack. On a pair dataset it trains on the target images of the fold's training pairs
  (``--fold``); any expression dataset works.
* **Step 2** (``ddoe-step2 --step1 MODEL``, :func:`kdface.models.build_ddoe_step2`): step 1's saved
  model; its emotion encoder is copied and **frozen** (weights and BatchNorm statistics), the identity
  encoder and step-1 head are dropped, and DoE's head trains on pairs ``(B, 2, S, S, 3)`` as
  ``--method doe``. The input size is step 1's. On the dataset step 1 was trained on, step 2 must use
  the same fold: step 1's training subjects would otherwise include step 2's test subjects.

``--neutral-class`` (both steps, pair datasets only): CK+'s optional 8th class, neutral pairs (step 1:
their targets, the subjects' onset frames, labelled neutral). Step 2 on a step 1 trained on a pair
dataset must use the same setting (refused otherwise, one error line naming both).

Both save Functional models (probabilities): step 1 takes images, step 2 pairs (card
``"input": "pair"``, ``model.predict(np.stack([neutral, target], axis=1))``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from kdface.backbones import freeze
from kdface.config import option
from kdface.errors import ConfigError
from kdface.io.cards import read_model_card
from kdface.io.safe_load import check_model_file, load_keras_model
from kdface.methods import Method, Role, register_method
from kdface.models import build_ddoe_step1, build_ddoe_step2
from kdface.tasks.expressions.labels import CLASS_NAMES
from kdface.tasks.expressions.sources import held_out_split, is_pair_dataset, pair_datasets
from kdface.tasks.expressions.training import (
    ExpressionClassifier,
    FoldConfig,
    check_encoder_weights,
    create_encoder,
    group_adam,
    pair_training_data,
    require_frozen_weights,
    training_data,
)
from kdface.training import prepare_built_model, train_run

# Spec §3.4: the same settings as DoE (§2.3: cross-entropy, Adam, batch 32, 30 epochs, 224 px; the
# learning rate 1e-3 is torch Adam's default, which the spec infers; no weight decay, schedule or
# augmentation given) for both steps. `demo`: 96 px and the standard augmentation (once per pair).
_COMMON = {
    "paper": dict(image_size=224, batch_size=32, epochs=30, learning_rate=1e-3, lr_gamma=1.0, weight_decay=0.0,
                  balanced_sampler=False, augment=False, augment_style="standard"),
    "demo": dict(image_size=96, batch_size=32, epochs=30, learning_rate=1e-3, lr_gamma=1.0, weight_decay=0.0,
                 balanced_sampler=False, augment=True, augment_style="standard"),
}  # fmt: skip
STEP1_PRESETS = {"paper": dict(_COMMON["paper"], weights="imagenet"), "demo": dict(_COMMON["demo"])}
# step 2's input size is step 1's (read from its card), so no preset sets it
STEP2_PRESETS = {
    name: {k: v for k, v in values.items() if k != "image_size"} for name, values in _COMMON.items()
}

IDENTITY_HINT = (
    "the original's VGGFace2 ResNet-50: `python -m kdface.convert resnet --depth 50 --checkpoint "
    "resnet50_ft_weight.pkl`; or a kdface face-id model, e.g. `make pretrain`'s "
    "models/pretrained/synthface_faceid_resnet18.keras with --identity-backbone resnet18"
)


@dataclasses.dataclass
class DDoEStep1Config(FoldConfig):
    PRESETS: ClassVar[dict] = STEP1_PRESETS

    backbone: str = option(
        "mobilenet_v3_large",
        "the emotion encoder, trained (the original's: MobileNetV3-Large)",
        backbone=True,
    )
    weights: str | None = option(
        None,
        "the emotion encoder's initial weights: imagenet (the original's; downloaded once), a file (a kdface "
        ".keras model holding this backbone, an .npz from `python -m kdface.convert`), or none (random)",
        flags=("--backbone-weights", "--weights"),
    )
    identity_backbone: str = option(
        "resnet50", "the frozen identity encoder (the original's: ResNet-50, VGGFace2 weights)", backbone=True
    )
    identity_weights: str | None = option(
        None,
        "the identity encoder's weights (frozen): an .npz from `python -m kdface.convert resnet` (VGGFace2's "
        "resnet50_ft_weight.pkl), a kdface face-id model (.keras), or none (random)",
    )

    def validate(self) -> None:
        super().validate()
        require_frozen_weights(
            self.identity_weights, "--identity-weights", "the identity encoder", IDENTITY_HINT
        )

    def check_inputs(self) -> None:
        super().check_inputs()
        check_encoder_weights(self.weights, self.backbone, "--backbone-weights")
        check_encoder_weights(self.identity_weights, self.identity_backbone, "--identity-weights")


def build_step1_network(config: DDoEStep1Config, num_classes: int):
    emotion = create_encoder(config.backbone, image_size=config.image_size, weights=config.weights,
                             bn_momentum=config.bn_momentum, flag="--backbone-weights")  # fmt: skip
    identity = create_encoder(config.identity_backbone, image_size=config.image_size, weights=config.identity_weights,
                              bn_momentum=config.bn_momentum, flag="--identity-weights")  # fmt: skip
    return build_ddoe_step1(emotion, freeze(identity), num_classes, image_size=config.image_size)


def train_step1(config: DDoEStep1Config, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()

    def load_data(run):
        return training_data(config, run.options.on_bad_sample, run=run)

    def build(data, run):
        network = prepare_built_model(build_step1_network(config, data.num_classes), run)
        model = ExpressionClassifier(network)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch))
        return model

    tags = f"{config.neutral_tag()}{config.fold_tag()}{config.noise_tag()}"
    name = f"ddoe_step1_{config.backbone}_{config.identity_backbone}{tags}"
    return train_run(config, method="ddoe-step1", role="teacher", name=name, load_data=load_data, build=build,
                     out=out, run_dir=run_dir, options=options)  # fmt: skip


@dataclasses.dataclass
class DDoEStep2Config(FoldConfig):
    PRESETS: ClassVar[dict] = STEP2_PRESETS

    dataset: str = option(
        "synthface-ck+",
        "a dataset of neutral/target pairs of one subject (CK+'s sequences; synthface-ck+ is generated here)",
        choices=tuple(pair_datasets()),
    )
    step1: str | None = option(
        None,
        "step 1's saved model (train_teacher.py --method ddoe-step1): its emotion encoder is copied and frozen",
        required=True,
    )
    image_size: int | None = option(
        None, "square input size of the face crop (default and only value: step 1's)"
    )

    def validate(self) -> None:
        super().validate()
        if not self.step1:
            raise ConfigError("--step1 is needed: step 1's model (train_teacher.py --method ddoe-step1)")

    def step1_card(self) -> dict:
        check_model_file(self.step1, "--step1", hint="train it with train_teacher.py --method ddoe-step1")
        return read_model_card(self.step1)

    def check_inputs(self) -> None:
        super().check_inputs()
        card = self.step1_card()
        if card and card.get("task", "expressions") != "expressions":
            raise ConfigError(f"--step1 {self.step1} is a model of the {card['task']} task; step 2 takes a "
                              "ddoe-step1 model")  # fmt: skip
        if card.get("method") not in (None, "ddoe-step1"):
            raise ConfigError(f"--step1 {self.step1} was trained by --method {card['method']}; step 2 takes a "
                              "ddoe-step1 model (its emotion encoder)")  # fmt: skip
        if card.get("image_size") not in (None, self.image_size):
            raise ConfigError(f"--image-size {self.image_size}: step 1's encoder takes {card['image_size']} px "
                              "(its card); leave --image-size out")  # fmt: skip
        trained_on = (card.get("config") or {}).get("train_split")
        if card.get("dataset") == self.dataset and trained_on is not None:
            theirs, ours = held_out_split(trained_on), held_out_split(self.train_split)
            if theirs != ours:
                raise ConfigError(
                    f"--step1 {self.step1} was trained on {self.dataset} {trained_on}, whose subjects include "
                    f"those of {ours}, which this run tests on; train step 1 with the same --fold"
                )
        if is_pair_dataset(card.get("dataset") or ""):
            theirs = bool((card.get("pair_options") or {}).get("neutral_pairs", False))
            if theirs != self.neutral_class:
                raise ConfigError(
                    f"--step1 {self.step1} was trained {_trained_classes(theirs)}, but this run is "
                    f"{_trained_classes(self.neutral_class)}: give both steps the same --neutral-class"
                )


def _trained_classes(neutral_class: bool) -> str:
    """What a pair dataset trains with or without ``--neutral-class``, for the step-2 mismatch error."""
    names = [n for n in CLASS_NAMES if neutral_class or n != "neutral"]
    without = "" if neutral_class else "; the neutral output has no examples"
    flag = "with" if neutral_class else "without"
    return f"{flag} --neutral-class ({len(names)} classes: {', '.join(names)}{without})"


def train_step2(config: DDoEStep2Config, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()
    if config.image_size is None:
        size = config.step1_card().get("image_size")
        if size is None:
            raise ConfigError(
                f"--step1 {config.step1} has no model card naming its image size; give --image-size"
            )
        config = dataclasses.replace(config, image_size=int(size))

    def load_data(run):
        return pair_training_data(config, run.options.on_bad_sample, run=run)

    def build(data, run):
        step1 = load_keras_model(config.step1, unsafe=run.options.unsafe_load_model)
        network = prepare_built_model(
            build_ddoe_step2(step1, data.num_classes, image_size=config.image_size), run
        )
        model = ExpressionClassifier(network)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch))
        return model

    name = f"ddoe_step2{config.neutral_tag()}{config.fold_tag()}{config.noise_tag()}"
    return train_run(config, method="ddoe-step2", role="teacher", name=name, load_data=load_data, build=build,
                     out=out, run_dir=run_dir, options=options, card={"step1": str(config.step1)})  # fmt: skip


_INSTEAD = (
    "Disentangled DoE has no teacher and student: python train_teacher.py --method ddoe-step1, "
    "then --method ddoe-step2 --step1 MODEL"
)
register_method(Method(
    name="ddoe-step1", task="expressions",
    summary="Disentangled DoE step 1: a trained emotion encoder beside a frozen identity encoder, on single images",
    roles={"teacher": Role(DDoEStep1Config, train_step1)}, instead=_INSTEAD,
))  # fmt: skip
register_method(Method(
    name="ddoe-step2", task="expressions",
    summary="Disentangled DoE step 2: DoE's head on (neutral, target) pairs over step 1's frozen emotion encoder",
    roles={"teacher": Role(DDoEStep2Config, train_step2)}, instead=_INSTEAD,
))  # fmt: skip
