"""Plain expression classifier (cross-entropy): IGKD's "Baseline" row and SCN's plain-CE baseline.

``python train_teacher.py --method fer --backbone resnet18 --dataset raf-db --data-dir …`` trains a
backbone on face crops with softmax cross-entropy. ``--masked-view`` trains it on the clean **and**
a randomly erased view of every image (both in every batch), the fair baseline for occlusion: the
inputs IGKD's student sees, without distillation.

Saved models are Functional: ``(B, S, S, 3)`` RGB faces in ``[0, 1]`` -> class probabilities
``(B, K)`` in kdface's class order (:mod:`kdface.tasks.expressions.labels`), the names in the card.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras

from kdface.backbones import check_backbone_weights, create_backbone
from kdface.config import option
from kdface.heads import linear_head
from kdface.methods import Method, Role, register_method
from kdface.tasks.expressions.training import (
    ExpressionClassifier,
    ExpressionConfig,
    group_adam,
    training_data,
)
from kdface.training import prepare_built_model, train_run


@dataclasses.dataclass
class FERConfig(ExpressionConfig):
    backbone: str = option(
        "resnet18",
        "backbone network (any registered: resnet18, resnet50, iresnet18, "
        "mobilenet_v2, ...; IResNets need an image size that is a multiple of 16)",
        backbone=True,
    )
    weights: str | None = option(
        None,
        "backbone initialisation: none (scratch), an .npz from `python -m kdface.convert`, "
        "or a trained kdface model (.keras) whose backbone is taken",
        flags=("--backbone-weights", "--weights"),
    )
    masked_view: bool = option(
        False, "train on each image's clean and randomly erased view (IGKD's inputs, no distillation)"
    )

    def check_inputs(self) -> None:
        super().check_inputs()
        check_backbone_weights(self.weights, self.backbone, "--backbone-weights")


def build_classifier(config: FERConfig, num_classes: int, name: str = "fer_classifier") -> keras.Model:
    """Backbone -> embedding -> Dense(K) logits (with bias, as torchvision's fc)."""
    backbone = create_backbone(config.backbone, image_size=config.image_size, weights=config.weights,
                               bn_momentum=config.bn_momentum)  # fmt: skip
    images = keras.Input((config.image_size, config.image_size, 3), name="image")
    logits = linear_head(num_classes, name="classifier")(backbone(images)["embedding"])
    return keras.Model(images, logits, name=name)


def train_classifier(config: FERConfig, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()

    def load_data(run):
        return training_data(config, run.options.on_bad_sample, erasing=config.masked_view, run=run)

    def build(data, run):
        network = prepare_built_model(build_classifier(config, data.num_classes), run)
        model = ExpressionClassifier(network)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch))
        return model

    name = f"fer_{config.backbone}{'_masked' if config.masked_view else ''}{config.noise_tag()}"
    return train_run(config, method="fer", role="teacher", name=name, load_data=load_data, build=build, out=out,
                     run_dir=run_dir, options=options)  # fmt: skip


register_method(Method(
    name="fer", task="expressions", summary="plain expression classifier (cross-entropy); IGKD's and SCN's baseline",
    roles={"teacher": Role(FERConfig, train_classifier)},
    instead="the plain expression classifier has no teacher and student: python train_teacher.py --method fer",
))  # fmt: skip
