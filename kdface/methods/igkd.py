"""IGKD: information-gap knowledge distillation for occluded expression recognition (spec A).

Trained jointly (spec A1): a teacher ``T`` on the clean view, one shared student ``S`` run twice
(clean view, then masked view: two calls, so BatchNorm sees each view's own batch statistics), a
channel mapping ``M`` (1x1 conv + BN + ReLU, shared by both student branches), a feature fusion
(SpatialDropout 0.5 + 3x3/2 conv, no padding, + BN + ReLU, clean branch only) and four bias-free
classifiers: ``W_t``, ``W_s0`` (clean student), ``W_s1`` (masked student) and ``W_ts = sg(W_t)``.

The loss is :func:`kdface.losses.igkd.igkd_loss` (baseline CE, FD, RD, knowledge learning and
knowledge feedback, with the r_up / r_down ramps over 1-based epochs). Learning rates per group as
the original (spec A4): teacher backbone 0.1x, mapping and fusion 0.2x, student backbone and
classifiers 1x the base rate, one Adam with coupled L2, x``lr_gamma`` per epoch.

What is saved is the clean student path only: ``S -> [F, M(F)] -> fusion -> GAP -> W_s0 -> softmax``.

``python train_student.py --method igkd --teacher-backbone resnet50 --student-backbone resnet18
--dataset raf-db --data-dir … [--t-checkpoint teacher.npz] [--s-checkpoint resnet18_msceleb.npz]``
(checkpoints converted with ``python -m kdface.convert resnet``, or a trained ``--method fer``
classifier's ``.keras``: the teacher then starts from a trained expression network, as the original
starts it from face-recognition weights).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import keras
import tensorflow as tf

from kdface.backbones import check_backbone_weights, create_backbone, embedding_size
from kdface.config import option
from kdface.errors import ConfigError, RunError
from kdface.heads import torch_linear_init
from kdface.losses.igkd import igkd_loss
from kdface.methods import Method, Role, register_method
from kdface.tasks.expressions.training import (
    AUGMENTATIONS,
    ExpressionConfig,
    group_adam,
    probabilities_model,
    register_augmentation,
    training_data,
)
from kdface.training import epoch_variable, prepare_built_model, train_run
from kdface.training.distribute import per_replica_share

# IGKD's own augmentation (spec A2.2-3) is the expression task's standard one.
register_augmentation("igkd", AUGMENTATIONS.get("standard"))

PRESETS = {
    "paper": dict(ExpressionConfig.PRESETS["paper"], teacher_backbone="resnet50"),
    "demo": dict(ExpressionConfig.PRESETS["demo"], teacher_backbone="resnet18"),
}


@dataclasses.dataclass
class IGKDConfig(ExpressionConfig):
    PRESETS: ClassVar[dict] = PRESETS

    teacher_backbone: str | None = option(
        None, "teacher network: resnet18 or resnet50 (the paper's best: resnet50)", backbone=True
    )
    student_backbone: str = option("resnet18", "student network (the paper: resnet18)", backbone=True)
    t_checkpoint: str | None = option(
        None,
        "teacher backbone weights: an .npz from `python -m kdface.convert resnet`, "
        "or a trained kdface model (.keras, e.g. from train_teacher.py --method fer) "
        "whose backbone is taken",
    )
    s_checkpoint: str | None = option(
        None,
        "student backbone weights: an .npz from `python -m kdface.convert resnet` "
        "(resnet18_msceleb), or a trained kdface model (.keras, e.g. a face-id backbone)",
        flags=("--s-checkpoint", "--backbone-weights"),
    )
    teacher_lr_factor: float = option(
        0.1, "teacher backbone learning rate, as a factor of --learning-rate (1e-4 / 1e-3)"
    )
    mapping_lr_factor: float = option(0.2, "channel-mapping learning rate, as a factor of --learning-rate")
    fusion_lr_factor: float = option(0.2, "feature-fusion learning rate, as a factor of --learning-rate")
    fusion_dropout: float = option(0.5, "SpatialDropout rate before the fusion conv")
    distill: bool = option(
        True,
        "the distillation terms (FD, RD, knowledge learning and feedback); --no-distill "
        "trains the joint CE only",
    )

    def check_inputs(self) -> None:
        super().check_inputs()
        check_backbone_weights(self.t_checkpoint, self.teacher_backbone, "--t-checkpoint")
        check_backbone_weights(self.s_checkpoint, self.student_backbone, "--s-checkpoint")


def _bn(name):
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _conv_init():
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@keras.saving.register_keras_serializable("kdface")
class IGKD(keras.Model):
    """The jointly trained teacher and student (spec A1); ``deploy_model`` is the clean student path.

    ``teacher`` and ``student`` are backbones returning ``(layer-4 map, pooled vector)``.
    The ramps read the 1-based epoch from ``epoch_index``, which the trainer sets at every epoch's
    start (so a resumed run continues the ramps exactly).
    """

    def __init__(self, teacher, student, num_classes: int, fusion_dropout: float = 0.5,
                 distill: bool = True, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.teacher, self.student = teacher, student
        self.num_classes = int(num_classes)
        self.fusion_dropout, self.distill = float(fusion_dropout), bool(distill)
        c_t = embedding_size(teacher)
        c_s = embedding_size(student)
        self.channel_mapping = keras.Sequential(
            [keras.Input(student.output["feature_map"].shape[1:]),
             keras.layers.Conv2D(c_t, 1, use_bias=False, kernel_initializer=_conv_init(), name="conv"),
             _bn("bn"), keras.layers.ReLU(name="relu")],
            name="channel_mapping",
        )  # fmt: skip
        size = int(student.output["feature_map"].shape[1])
        if size < 3:
            raise ConfigError(
                f"the student's layer-4 map is {size} x {size}; IGKD's fusion (3x3 conv, stride 2, no padding) "
                f"needs at least 3 x 3: use --image-size of at least 96"
            )
        self.fusion = keras.Sequential(
            [keras.Input((size, size, c_s + c_t)),
             keras.layers.SpatialDropout2D(fusion_dropout, name="dropout"),
             keras.layers.Conv2D(c_t, 3, strides=2, padding="valid", use_bias=False, kernel_initializer=_conv_init(),
                                 name="conv"),
             _bn("bn"), keras.layers.ReLU(name="relu")],
            name="feature_fusion",
        )  # fmt: skip
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        # float32 classifiers: logits (and the deployed probabilities) stay float32 under mixed precision
        head = dict(use_bias=False, kernel_initializer=torch_linear_init(), dtype="float32")
        self.classifier_t = keras.layers.Dense(num_classes, name="classifier_t", **head)
        self.classifier_s0 = keras.layers.Dense(num_classes, name="classifier_s0", **head)
        self.classifier_s1 = keras.layers.Dense(num_classes, name="classifier_s1", **head)
        for layer, width in ((self.classifier_t, c_t), (self.classifier_s0, c_t), (self.classifier_s1, c_t)):
            layer.build((None, width))
        self.deploy_model = self._clean_student_model()
        self.epoch_index = epoch_variable(self)
        names = ("loss", "baseline", "fd", "rd", "knowledge_learning", "knowledge_feedback")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.teacher_accuracy = keras.metrics.SparseCategoricalAccuracy(name="teacher_accuracy")

    def _clean_branch(self, feature_map, training):
        mapped = self.channel_mapping(feature_map, training=training)
        fused = self.fusion(tf.concat([feature_map, mapped], axis=-1), training=training)  # raw map first
        return self.pool(fused)

    def _clean_student_model(self) -> keras.Model:
        images = keras.Input(self.student.input_shape[1:], name="image")
        feature_map = self.student(images)["feature_map"]
        mapped = self.channel_mapping(feature_map)
        fused = self.fusion(keras.layers.Concatenate(name="concat")([feature_map, mapped]))
        logits = self.classifier_s0(self.pool(fused))
        return probabilities_model(images, logits, name="igkd_student")

    @property
    def metrics(self):
        return [*self.trackers.values(), self.accuracy, self.teacher_accuracy]

    def lr_groups(self, config: IGKDConfig):
        """The original's parameter groups as ``(variables, factor of the base learning rate)``."""
        return [
            (self.teacher.trainable_variables, config.teacher_lr_factor),
            (self.channel_mapping.trainable_variables, config.mapping_lr_factor),
            (self.fusion.trainable_variables, config.fusion_lr_factor),
        ]

    def call(self, inputs, training=False):
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        feature_map = self.student(images, training=training)["feature_map"]
        return tf.nn.softmax(self.classifier_s0(self._clean_branch(feature_map, training)))

    def epoch(self):
        """The 1-based epoch of the step being taken."""
        return tf.cast(self.epoch_index + 1, tf.float32)

    def losses_of(self, clean, masked, labels, epoch, training=True):
        """Every forward pass of a training step and :func:`igkd_loss` of them (spec A1, A3)."""
        teacher = self.teacher(clean, training=training)
        teacher_map, f_t = teacher["feature_map"], teacher["embedding"]
        logit_t = self.classifier_t(f_t)
        s1_map = self.student(masked, training=training)["feature_map"]  # masked branch
        s1_mapped = self.channel_mapping(s1_map, training=training)
        f_s1 = self.pool(s1_mapped)
        logit_s1 = self.classifier_s1(f_s1)
        s0_map = self.student(clean, training=training)["feature_map"]  # clean branch (a separate call)
        f_s0 = self._clean_branch(s0_map, training)
        logit_s0 = self.classifier_s0(f_s0)
        w_ts = tf.stop_gradient(self.classifier_t.kernel)
        terms = igkd_loss(
            labels, epoch, logit_t=logit_t, logit_s0=logit_s0, logit_s1=logit_s1, teacher_map=teacher_map,
            student_map_s1=s1_mapped, teacher_features=f_t, student_features_s1=f_s1,
            teacher_kernel=self.classifier_t.kernel, logit_ts_s1=tf.matmul(tf.cast(f_s1, w_ts.dtype), w_ts),
            logit_t_on_s0=self.classifier_t(f_s0), logit_s0_on_t=self.classifier_s0(f_t), distill=self.distill,
        )  # fmt: skip
        return terms, logit_t, logit_s0

    def train_step(self, data):
        x, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            terms, logit_t, logit_s0 = self.losses_of(x["image"], x["masked"], labels, self.epoch())
            # Keras sums the replicas' gradients: each replica contributes its share of the mean;
            # scale_loss: float16 loss scaling (apply() unscales), a no-op otherwise.
            scaled = self.optimizer.scale_loss(per_replica_share(terms.total))
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        for tracker, value in zip(self.trackers.values(), terms, strict=True):
            tracker.update_state(value)
        self.accuracy.update_state(labels, logit_s0)
        self.teacher_accuracy.update_state(labels, logit_t)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Validation measures what is deployed: the clean student path on clean images."""
        x, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        images = x["image"] if isinstance(x, dict) else x
        probabilities = self(images, training=False)
        labels = tf.cast(labels, tf.int32)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
        self.trackers["loss"].update_state(loss)
        self.accuracy.update_state(labels, probabilities)
        return {"loss": self.trackers["loss"].result(), "accuracy": self.accuracy.result()}

    def get_config(self):
        return {
            **super().get_config(),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "num_classes": self.num_classes,
            "fusion_dropout": self.fusion_dropout,
            "distill": self.distill,
        }

    @classmethod
    def from_config(cls, config):
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def build_igkd(config: IGKDConfig, num_classes: int) -> IGKD:
    for path, flag in ((config.t_checkpoint, "--t-checkpoint"), (config.s_checkpoint, "--s-checkpoint")):
        if path is not None and not Path(path).is_file():
            raise RunError(
                f"{flag} {path} does not exist (convert a PyTorch checkpoint with `python -m kdface.convert resnet`)"
            )
    teacher = create_backbone(config.teacher_backbone, image_size=config.image_size, weights=config.t_checkpoint,
                              bn_momentum=config.bn_momentum, name=f"teacher_{config.teacher_backbone}")  # fmt: skip
    student = create_backbone(config.student_backbone, image_size=config.image_size, weights=config.s_checkpoint,
                              bn_momentum=config.bn_momentum, name=f"student_{config.student_backbone}")  # fmt: skip
    return IGKD(teacher, student, num_classes, config.fusion_dropout, config.distill, name="igkd")


def train_igkd(config: IGKDConfig, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()

    def load_data(run):
        return training_data(config, run.options.on_bad_sample, erasing=True, run=run)

    def build(data, run):
        model = prepare_built_model(build_igkd(config, data.num_classes), run)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch, model.lr_groups(config)))
        return model

    name = (
        f"igkd_{config.teacher_backbone}_{config.student_backbone}{'' if config.distill else '_no_distill'}"
    )
    return train_run(config, method="igkd", role="student", name=name + config.noise_tag(), load_data=load_data,
                     build=build, out=out, run_dir=run_dir, options=options)  # fmt: skip


register_method(Method(
    name="igkd", task="expressions",
    summary="information-gap KD for occluded expressions: a teacher trained jointly with a ResNet student",
    roles={"student": Role(IGKDConfig, train_igkd)},
    instead="IGKD trains its teacher jointly with the student: python train_student.py --method igkd "
            "(initialise the teacher with --t-checkpoint)",
))  # fmt: skip
