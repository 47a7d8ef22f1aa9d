"""Difference of Embeddings (DoE): an expression from a neutral and a target face of one person (spec
``vitse_doe_fer.md`` §2).

``python train_teacher.py --method doe --dataset ck+ --data-dir CK+ --fold 3 --backbone-weights imagenet``
(DoE has no teacher and student; it is trained like a teacher.)

Model (:func:`kdface.models.build_doe`): pairs ``(B, 2, S, S, 3)`` in ``[0, 1]``, the neutral face at
index 0 of axis 1 and the target at 1 -> **one frozen encoder** (MobileNetV3-Large's 960-d embedding
in the original; weights and BatchNorm statistics never change, :func:`kdface.backbones.freeze`)
embeds both -> ``concat[e_t - e_n, e_t]`` -> MLP 256-128-64-32-C -> logits; cross-entropy, and only the
MLP trains (:class:`~kdface.tasks.expressions.training.ExpressionClassifier`). Pairs come from CK+'s
sequences (``ck+``, ``synthface-ck+``; :mod:`kdface.tasks.expressions.ckplus`), one augmentation draw
for both images of a pair, subject-independent folds (``--fold k``: train on the other folds, test on
fold ``k``).

A frozen encoder is only as good as its weights, so ``--backbone-weights`` must be given (the
``paper`` preset's is ``imagenet``, the original's): ``imagenet``, a file (a kdface face-id model such
as ``make pretrain``'s ResNet-18 with ``--backbone resnet18``, a converted ``.npz``), or ``none``.

``--target-only`` trains the README's ablation instead: the same frozen encoder and MLP classifying
the target image alone (:func:`kdface.models.build_target_only`), on the same pairs' targets (the
same batches and augmentation draws; the neutral images are read and ignored). It saves a
single-image model.

``--neutral-class`` adds CK+'s optional 8th class (all three pair methods, pair datasets only): one
neutral pair per sequence, its onset with the next sequence's onset of the same subject, labelled
neutral (:class:`~kdface.tasks.expressions.sources.PairOptions` ``neutral_pairs``). The card's
``pair_options`` record it, so ``test.py`` tests on the same kind of pairs.

Saved model: pairs ``(B, 2, S, S, 3)`` -> class probabilities ``(B, K)`` in kdface's class order,
card ``"input": "pair"``: ``model.predict(np.stack([neutral, target], axis=1))``; ``test.py`` and
:func:`kdface.predict_expressions` (``(neutral, target)`` face pairs) take it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import keras

from kdface.config import option
from kdface.methods import Method, Role, register_method
from kdface.models import PAIR_INPUT_NAME, TARGET, build_doe, build_target_only, split_pair
from kdface.tasks.expressions.pairs import IMAGE_INPUT, PAIR_INPUT
from kdface.tasks.expressions.sources import pair_datasets
from kdface.tasks.expressions.training import (
    ExpressionClassifier,
    FoldConfig,
    check_encoder_weights,
    create_encoder,
    group_adam,
    pair_training_data,
    probabilities_model,
    require_frozen_weights,
)
from kdface.training import prepare_built_model, train_run

# Spec §2.3: cross-entropy, Adam, batch 32, 30 epochs, 224 px (the README's tables). Not given: the
# learning rate (1e-3 here, torch Adam's default, which the spec infers), weight decay, schedule and
# augmentation (none of them in `paper`). `demo`: 96 px (the face-id ResNet-18 of `make pretrain` is
# trained at 96 px) and the expression task's standard augmentation, drawn once per pair.
PRESETS = {
    "paper": dict(image_size=224, batch_size=32, epochs=30, learning_rate=1e-3, lr_gamma=1.0, weight_decay=0.0,
                  balanced_sampler=False, augment=False, augment_style="standard", weights="imagenet"),
    "demo": dict(image_size=96, batch_size=32, epochs=30, learning_rate=1e-3, lr_gamma=1.0, weight_decay=0.0,
                 balanced_sampler=False, augment=True, augment_style="standard"),
}  # fmt: skip

WEIGHTS_HINT = (
    "imagenet, the original's; a kdface face-id model, e.g. `make pretrain`'s "
    "models/pretrained/synthface_faceid_resnet18.keras with --backbone resnet18; or a converted .npz"
)


@dataclasses.dataclass
class DoEConfig(FoldConfig):
    PRESETS: ClassVar[dict] = PRESETS

    dataset: str = option(
        "synthface-ck+",
        "a dataset of neutral/target pairs of one subject (CK+'s sequences; synthface-ck+ is generated here)",
        choices=tuple(pair_datasets()),
    )
    backbone: str = option(
        "mobilenet_v3_large",
        "the frozen encoder (the original's: MobileNetV3-Large, 960-d); any registered backbone",
        backbone=True,
    )
    weights: str | None = option(
        None,
        "the frozen encoder's weights: imagenet (downloaded once), a file (a kdface .keras model holding "
        "this backbone, e.g. a face-id model; an .npz from `python -m kdface.convert`), or none (random)",
        flags=("--backbone-weights", "--weights"),
    )
    target_only: bool = option(
        False,
        "the ablation: the same frozen encoder and MLP classifying the target image alone, trained on "
        "the same pairs' targets (saves a single-image model)",
    )

    def validate(self) -> None:
        super().validate()
        require_frozen_weights(self.weights, "--backbone-weights", "DoE's encoder", WEIGHTS_HINT)

    def check_inputs(self) -> None:
        super().check_inputs()
        check_encoder_weights(self.weights, self.backbone, "--backbone-weights")


def build_network(config: DoEConfig, num_classes: int) -> tuple[keras.Model, keras.Model]:
    """``(network, deploy)``: the network trained on pairs (logits) and the model saved
    (probabilities). DoE: both take pairs. ``--target-only``: the network reads the target of each
    pair; the deployed model takes single images."""
    encoder = create_encoder(config.backbone, image_size=config.image_size, weights=config.weights,
                             bn_momentum=config.bn_momentum, flag="--backbone-weights")  # fmt: skip
    if not config.target_only:
        network = build_doe(encoder, num_classes, image_size=config.image_size)
        return network, probabilities_model(network.input, network.output, name=network.name)
    single = build_target_only(encoder, num_classes, image_size=config.image_size)
    pairs = keras.Input(PAIR_INPUT.shape(config.image_size), name=PAIR_INPUT_NAME)
    network = keras.Model(pairs, single(split_pair(pairs)[TARGET]), name="doe_target_only_on_pairs")
    return network, probabilities_model(single.input, single.output, name=single.name)


def train_doe(config: DoEConfig, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()

    def load_data(run):
        return pair_training_data(config, run.options.on_bad_sample, run=run)

    def build(data, run):
        network, deploy = build_network(config, data.num_classes)
        model = ExpressionClassifier(prepare_built_model(network, run), deploy)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch))
        return model

    ablation = "_target_only" if config.target_only else ""
    name = f"doe_{config.backbone}{ablation}{config.neutral_tag()}{config.fold_tag()}{config.noise_tag()}"
    card = IMAGE_INPUT.card() if config.target_only else None  # the ablation deploys a single-image model
    return train_run(config, method="doe", role="teacher", name=name, load_data=load_data, build=build, out=out,
                     run_dir=run_dir, options=options, card=card)  # fmt: skip


register_method(Method(
    name="doe", task="expressions",
    summary="Difference of Embeddings: a frozen encoder on (neutral, target) pairs of one person, MLP on "
            "[target - neutral, target]; --target-only: the target alone",
    roles={"teacher": Role(DoEConfig, train_doe)},
    instead="DoE has no teacher and student: python train_teacher.py --method doe",
))  # fmt: skip
