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
import tensorflow as tf

from kdface.backbones import check_backbone_weights, create_backbone
from kdface.config import option
from kdface.heads import linear_head
from kdface.methods import Method, Role, register_method
from kdface.tasks.expressions.training import (
    ExpressionConfig,
    group_adam,
    probabilities_model,
    training_data,
)
from kdface.training import prepare_built_model, train_run
from kdface.training.distribute import per_replica_share


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


@keras.saving.register_keras_serializable("kdface")
class ExpressionClassifier(keras.Model):
    """A network (images -> logits) trained with softmax cross-entropy.

    Training inputs are images, or ``{"image", "masked"}`` (the clean and the erased view; both go
    through the network in one batch of ``2B`` and both are classified). ``deploy_model`` maps images
    to probabilities; that is what gets saved.
    """

    def __init__(self, network: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.deploy_model = probabilities_model(network.input, network.output, name=network.name)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def call(self, inputs, training=False):
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.network(images, training=training)

    def _batch(self, x, y):
        if isinstance(x, dict) and "masked" in x:
            return tf.concat([x["image"], x["masked"]], axis=0), tf.concat([y, y], axis=0)
        return (x["image"] if isinstance(x, dict) else x), y

    def _loss(self, images, labels, training):
        logits = tf.cast(self.network(images, training=training), tf.float32)  # float32 under mixed precision
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
        )
        return logits, loss

    def train_step(self, data):
        images, labels = self._batch(*keras.utils.unpack_x_y_sample_weight(data)[:2])
        with tf.GradientTape() as tape:
            logits, loss = self._loss(images, labels, training=True)
            # Keras sums the replicas' gradients: each replica contributes its share of the global mean;
            # scale_loss: float16 loss scaling (apply() unscales), a no-op otherwise.
            scaled = self.optimizer.scale_loss(per_replica_share(loss))
        grads = tape.gradient(scaled, self.network.trainable_variables)
        self.optimizer.apply(grads, self.network.trainable_variables)
        return self._track(loss, labels, logits)

    def test_step(self, data):
        images, labels = self._batch(*keras.utils.unpack_x_y_sample_weight(data)[:2])
        logits, loss = self._loss(images, labels, training=False)
        return self._track(loss, labels, logits)

    def _track(self, loss, labels, logits):
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config):
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


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
