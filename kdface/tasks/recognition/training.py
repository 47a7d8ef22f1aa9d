"""What every recognition method's training shares: the config and presets, the identity training data,
the margin-head model (teachers, no-KD low-resolution baselines, face-id pretraining) and the
low-resolution distiller (students), the deployable embedding model and the model card.

A method either trains a network on identities (:func:`train_recognizer`: margin-head cross-entropy on
the HR or low-resolution view) or distils a frozen HR teacher into a student that sees the
low-resolution view (:func:`train_lowres_student` with a :class:`Distillation`: its loss over the two
networks' named outputs). Spec: ``fskd_lowres_fr.md`` §2.4.
"""

from __future__ import annotations

import dataclasses
import fractions
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from kdface.backbones import check_backbone_weights, create_backbone
from kdface.backbones.contract import BACKBONE_OUTPUTS
from kdface.backbones.registry import backbone_entry
from kdface.config import ExperimentConfig, option
from kdface.errors import ConfigError, DataFormatError
from kdface.heads.margin import MARGIN_DEFAULTS, MarginHead
from kdface.io.atomic import atomic_path
from kdface.tasks.recognition.pipeline import DEGRADATIONS, FLIP_ORDERS, Resolution, identity_training_stream
from kdface.tasks.recognition.sources import check_identity_inputs, identity_datasets, load_identity_split
from kdface.training.distribute import per_replica_share
from kdface.training.optimizers import CoupledSGD
from kdface.training.run import TrainingData

# F-SKD v1 (spec §4): batch 256, 47,001 iterations ~ 24.5 CASIA epochs, SGD Nesterov lr 0.1 / 5e-4,
# x0.1 at iterations 18k/28k/36k/44k, CosFace s 30 m 0.25, GAP embedding ("Option A"), iResNet-50.
# The demo keeps the recipe with an iResNet-18 at 32 px (its ladder 4/8/16/32 keeps v1's ratios 1/8..1):
# 146 img/s for a CBAM teacher step on 2 CPU cores, so a teacher and six students fit in minutes.
PRESETS = {
    "paper": dict(image_size=112, batch_size=256, epochs=25, learning_rate=0.1, weight_decay=5e-4,
                  backbone="iresnet50", head="pool", margin="cosface"),
    "demo": dict(image_size=32, batch_size=64, epochs=5, learning_rate=0.1, weight_decay=5e-4,
                 backbone="iresnet18", head="pool", margin="cosface"),
}  # fmt: skip
ATTENTION = {"ir": "none", "cbam": {"fskd": "cbam_fskd", "askd": "cbam_askd"}}


def _fraction_list(text: str) -> list[float]:
    try:
        values = [float(fractions.Fraction(part.strip())) for part in str(text).split(",") if part.strip()]
    except (ValueError, ZeroDivisionError):
        raise ConfigError(
            f"--lr-milestones {text!r}: comma-separated fractions of the run, e.g. 18/47,28/47"
        ) from None
    if any(not 0 < v < 1 for v in values) or values != sorted(values):
        raise ConfigError(f"--lr-milestones {text!r}: increasing fractions of the run, each in (0, 1)")
    return values


@dataclasses.dataclass
class RecognitionConfig(ExperimentConfig):
    """One recognition experiment (teacher, no-KD baseline or face-id pretraining). ``None`` fields take
    the preset's value (:data:`PRESETS`)."""

    PRESETS: ClassVar[dict] = PRESETS

    dataset: str = option(
        "synthface", "identity folders: synthface (generated here) or casia-webface (verification sets are "
        "for test.py)", choices=("casia-webface", "synthface"),
    )  # fmt: skip
    data_dir: str | None = option(
        None, "raw dataset folder (SynthFaces: generated there; default datasets/synthfaces/faceid)"
    )
    backbone: str | None = option(
        None, "network (any registered backbone; the originals: iresnet50)", backbone=True
    )
    backbone_weights: str | None = option(
        None,
        "backbone initialisation: none (scratch), an .npz from `python -m kdface.convert`, or a kdface "
        ".keras model whose backbone is taken",
        flags=("--backbone-weights", "--weights"),
    )
    mode: str = option(
        "ir", "iResNet attention: ir (none) or cbam (a CBAM in every block)", choices=("ir", "cbam")
    )
    cbam: str = option(
        "fskd",
        "which CBAM with --mode cbam: fskd (F-SKD repo: 7x7 spatial conv + BN, post-sigmoid maps) or askd "
        "(A-SKD/Face_Pytorch: 3x3 conv, pre-sigmoid maps)",
        choices=("fskd", "askd"),
    )
    head: str | None = option(
        None, "iResNet embedding head: pool (F-SKD v1 'Option A', GAP) or fc (A-SKD 'Option E': BN-Dropout-FC-BN)",
        choices=("pool", "fc"),
    )  # fmt: skip
    dropout: float = option(0.0, "dropout of the fc head (A-SKD: 0.4)")
    margin: str | None = option(
        None, "margin head: cosface (F-SKD v1), arcface (A-SKD) or softmax (scaled cosine, no margin)",
        choices=tuple(MARGIN_DEFAULTS),
    )  # fmt: skip
    margin_scale: float | None = option(None, "margin head scale s (default: cosface 30, arcface 32)")
    margin_value: float | None = option(None, "margin m (default: cosface 0.25, arcface 0.5)")
    easy_margin: bool = option(False, "ArcFace easy margin (phi only where cos > 0)")
    down_size: int = option(
        0,
        "training resolution: 0 HR only; 1 multi-resolution (each sample drawn from 1/8, 1/4, 1/2, 1 of "
        "the image size: 14/28/56/112 at 112 px); any other value a fixed side in pixels",
    )
    equal: bool = option(True, "with --down-size 1: uniform over the four sizes (else HR with p 1/2)")
    degradation: str = option(
        "nearest",
        "down-then-up method: nearest (F-SKD v1), askd (nearest + A-SKD's vertical blur), random "
        "(F-SKD later: random cv2 interpolations), linear",
        choices=DEGRADATIONS,
    )
    flip_order: str = option(
        "fskd", "fskd: degrade then flip (v1); askd: flip then degrade", choices=FLIP_ORDERS
    )
    weight_decay: float | None = option(None, "coupled L2 on every parameter (torch SGD weight_decay)")
    momentum: float = option(0.9, "SGD momentum (Nesterov)")
    lr_milestones: str = option(
        "18/47,28/47,36/47,44/47",
        "learning rate x0.1 at these fractions of the run (v1: 18k/28k/36k/44k of 47k)",
    )
    bn_momentum: float | None = option(
        None, "BatchNorm moving-average momentum for every layer (unset: the network's own, torch's: iResNet 0.9, "
        "the F-SKD CBAM's spatial BN 0.99)",
    )  # fmt: skip
    val_fraction: float = option(
        0.0, "fraction of the training images held out for best-epoch selection (0: publish the last epoch, "
        "as the originals)",
    )  # fmt: skip

    def resolved(self, role=None):
        config = super().resolved(role)
        scale, value = MARGIN_DEFAULTS[config.margin]
        return dataclasses.replace(
            config,
            margin_scale=scale if config.margin_scale is None else config.margin_scale,
            margin_value=value if config.margin_value is None else config.margin_value,
        )

    def validate(self) -> None:
        super().validate()
        if self.dataset not in identity_datasets():
            from kdface.registry import unknown_name_message

            raise ConfigError(unknown_name_message("identity dataset", self.dataset, identity_datasets()))
        if self.down_size < 0 or (self.image_size and self.down_size > self.image_size):
            raise ConfigError(
                f"--down-size {self.down_size}: 0, 1, or a side up to the image size {self.image_size}"
            )
        if self.down_size > 1 and self.image_size and self.image_size % self.down_size:
            raise ConfigError(
                f"--down-size {self.down_size} must divide the image size {self.image_size} (nearest "
                "down-then-up samples one pixel of each block)"
            )
        if self.image_size and self.down_size == 1 and self.image_size % 8:
            raise ConfigError(f"--down-size 1 needs an image size divisible by 8, got {self.image_size}")
        if self.mode == "cbam" and backbone_entry(self.backbone).family != "iresnet":
            raise ConfigError(f"--mode cbam is an iResNet option; --backbone {self.backbone} has no CBAM")
        _fraction_list(self.lr_milestones)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")

    def check_inputs(self) -> None:
        super().check_inputs()
        check_identity_inputs(self.dataset, self.data_dir, self.tfds_dir)
        check_backbone_weights(self.backbone_weights, self.backbone, "--backbone-weights")

    def attention(self) -> str:
        return "none" if self.mode == "ir" else ATTENTION["cbam"][self.cbam]

    def resolution(self) -> Resolution:
        return Resolution(self.image_size, self.down_size, self.equal, self.degradation, self.flip_order)

    def backbone_options(self) -> dict:
        """The builder options of ``backbone`` this config sets (iResNets: attention, head, dropout)."""
        if backbone_entry(self.backbone).family != "iresnet":
            return {}
        return {"attention": self.attention(), "head": self.head, "dropout": self.dropout}

    def resolution_tag(self) -> str:
        return {0: "hr", 1: "multires"}.get(self.down_size, f"lr{self.down_size}")


# --- data -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class IdentityData(TrainingData):
    """:class:`TrainingData` plus the number of identities and the training images."""

    num_classes: int = 0
    train_size: int = 0


def training_data(
    config: RecognitionConfig, on_bad_sample: str = "error", *, pairs: bool = False
) -> IdentityData:
    """The endless stream over the identity folders (``pairs``: ``{"hr", "lr"}`` inputs for a student)
    and, with ``val_fraction``, a validation set of held-out images of the same identities."""
    split = load_identity_split(config.dataset, config.data_dir, config.tfds_dir, on_bad_sample=on_bad_sample)
    train_idx, val_idx = split.holdout(config.val_fraction, config.seed)
    read = split.store.reader()
    resolution = config.resolution()
    labels = split.labels

    def stream(start_epoch: int = 0, skip_batches: int = 0):
        return identity_training_stream(
            lambda i: read(tf.gather(tf.constant(train_idx), i)), labels[train_idx], resolution=resolution,
            batch_size=config.batch_size, pairs=pairs, seed=config.seed, start_epoch=start_epoch,
            skip_batches=skip_batches,
        )  # fmt: skip

    val = None
    if len(val_idx):
        from kdface.tasks.recognition.pipeline import identity_eval_dataset

        val_size = None if config.down_size in (0, 1) else config.down_size
        val = identity_eval_dataset(lambda i: read(tf.gather(tf.constant(val_idx), i)), labels[val_idx],
                                    image_size=config.image_size, batch_size=config.batch_size, size=val_size)  # fmt: skip
        if pairs:
            val = val.map(lambda x, y: ({"hr": x, "lr": x}, y))
    batches = len(train_idx) // config.batch_size
    if batches < 1:
        raise ConfigError(
            f"{config.dataset}: {len(train_idx)} training images, fewer than --batch-size {config.batch_size}"
        )
    card = {
        "task": "recognition",
        "image_size": config.image_size,
        "num_identities": split.num_classes,
        "train_images": int(len(train_idx)),
        "embedding": "raw (B, D) backbone embedding; compare after mean subtraction and L2 normalisation",
        "resolution": {"down_size": config.down_size, "equal": config.equal, "degradation": config.degradation,
                       "flip_order": config.flip_order, "sizes": list(resolution.choices)},
        "architecture": {"backbone": config.backbone, **config.backbone_options()},
        "channel_order": "RGB",
    }  # fmt: skip
    return IdentityData(
        stream=stream, steps_per_epoch=config.steps_per_epoch or batches, batches_per_pass=batches, val=val,
        monitor="val_accuracy", mode="max", skipped=split.skipped, card=card,
        publish="best" if val is not None else "last", num_classes=split.num_classes, train_size=len(train_idx),
    )  # fmt: skip


# --- models ---------------------------------------------------------------------------------------------


def build_backbone(config: RecognitionConfig, name: str | None = None, weights=None) -> keras.Model:
    return create_backbone(config.backbone, image_size=config.image_size, weights=weights,
                           bn_momentum=config.bn_momentum, name=name, **config.backbone_options())  # fmt: skip


def margin_head(config: RecognitionConfig, num_classes: int, name: str = "margin_head") -> MarginHead:
    return MarginHead(num_classes, margin=config.margin, scale=config.margin_scale, margin_value=config.margin_value,
                      easy_margin=config.easy_margin, name=name)  # fmt: skip


def embedding_model(backbone: keras.Model, name: str | None = None) -> keras.Model:
    """The deployable model: ``(B, S, S, 3)`` RGB in ``[0, 1]`` -> the backbone's raw embedding ``(B, D)``
    (layer ``embedding``; verification normalises it, after subtracting the mean feature)."""
    size = backbone.input_shape[1]
    images = keras.Input((size, size, 3), name="image")
    embedding = keras.layers.Identity(name="embedding", dtype="float32")(backbone(images)["embedding"])
    return keras.Model(images, embedding, name=name or f"{backbone.name}_embedder")


def nested_backbone(saved: keras.Model, source) -> keras.Model:
    """The backbone inside a saved recognition model (the one nested model with the backbone outputs)."""
    found = [layer for layer in saved.layers if isinstance(layer, keras.Model)
             and isinstance(layer.output, dict) and set(BACKBONE_OUTPUTS) <= set(layer.output)]  # fmt: skip
    if len(found) != 1:
        raise DataFormatError(
            source, "a kdface recognition model holding one backbone", got=f"{len(found)} backbones"
        )
    return found[0]


def step_schedule(config: RecognitionConfig, steps_per_epoch: int):
    """Piecewise-constant learning rate: ``learning_rate`` x 0.1 at each milestone of the run's steps."""
    total = steps_per_epoch * config.epochs
    drops = sorted({max(1, int(round(f * total))) for f in _fraction_list(config.lr_milestones)})
    values = [config.learning_rate * 0.1**k for k in range(len(drops) + 1)]
    # Keras keeps a value up to and including its boundary: step ``drop`` (0-based) is the first at the lower rate
    return keras.optimizers.schedules.PiecewiseConstantDecay([d - 1 for d in drops], values)


def sgd(config: RecognitionConfig, steps_per_epoch: int) -> CoupledSGD:
    return CoupledSGD(step_schedule(config, steps_per_epoch), momentum=config.momentum, nesterov=True,
                      coupled_weight_decay=config.weight_decay)  # fmt: skip


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))


@keras.saving.register_keras_serializable("kdface")
class FaceRecognizer(keras.Model):
    """A backbone and a margin head trained with cross-entropy on the margin logits (F-SKD's
    ``train_teacher.py``: HR teachers and no-KD low-resolution networks; face-id pretraining).

    ``deploy_model`` (what is saved) maps images to the raw embedding. Accuracy is the closed-set
    identity accuracy of the plain cosine logits (no margin)."""

    def __init__(self, backbone: keras.Model, head: MarginHead, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.head = head
        if not head.built:
            head.build((None, backbone.output["embedding"].shape[-1]))
        self.deploy_model = embedding_model(backbone)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy]

    def build(self, input_shape=None):  # every part is built in __init__
        self.built = True

    def call(self, images, training=False):
        if isinstance(images, dict):  # a student's {"hr", "lr"} inputs: the student sees the LR view
            images = images["lr"]
        return self.backbone(images, training=training)["embedding"]

    def _logits(self, embedding, labels):
        embedding = tf.cast(embedding, tf.float32)
        return self.head(embedding, labels), self.head(embedding)

    def train_step(self, data):
        images, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        with tf.GradientTape() as tape:
            margin_logits, logits = self._logits(self(images, training=True), labels)
            loss = _cross_entropy(labels, margin_logits)
            scaled = self.optimizer.scale_loss(per_replica_share(loss))
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._track(loss, labels, logits)

    def test_step(self, data):
        images, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        margin_logits, logits = self._logits(self(images, training=False), labels)
        return self._track(_cross_entropy(labels, margin_logits), labels, logits)

    def _track(self, loss, labels, logits, **extra):
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(labels, logits)
        return {**{m.name: m.result() for m in self.metrics}, **extra}


def save_margin_head(head: MarginHead, path: Path) -> Path:
    """The margin head's class centres beside a published model (``<model>.margin.npz``): a student's
    logit distillation needs the teacher's head, as the originals keep it in a separate file."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, kernel=keras.ops.convert_to_numpy(head.kernel), **{
                k: np.asarray(v) for k, v in head.get_config().items() if k in ("scale", "margin_value")})  # fmt: skip
    return path


def margin_head_path(model_path) -> Path:
    return Path(model_path).with_suffix(".margin.npz")


def train_recognizer(
    config: RecognitionConfig, *, method: str, name: str, out=None, run_dir=None, options=None
):
    """Train a backbone + margin head on identity folders at ``config``'s resolution (no distillation)."""
    from kdface.training import prepare_built_model, train_run

    def load_data(run):
        return training_data(config, run.options.on_bad_sample)

    def build(data, run):
        backbone = prepare_built_model(build_backbone(config, weights=config.backbone_weights), run)
        model = FaceRecognizer(backbone, margin_head(config, data.num_classes))
        model.compile(optimizer=sgd(config, data.steps_per_epoch))
        return model

    published = {}

    def after_fit(model, data, run, result):
        path = save_margin_head(model.head, run.path / "margin_head.npz")
        published["head"] = path
        return {"margin": {"type": config.margin, "scale": config.margin_scale, "margin": config.margin_value,
                           "classes": data.num_classes}}  # fmt: skip

    model_path = train_run(config, method=method, role="teacher", name=name, load_data=load_data, build=build,
                           out=out, run_dir=run_dir, options=options, after_fit=after_fit)  # fmt: skip
    if "head" in published:  # the head of the published (last) epoch beside the model
        import shutil

        with atomic_path(margin_head_path(model_path)) as tmp:
            shutil.copyfile(published["head"], tmp)
    return model_path


# --- students -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Distillation:
    """A student method's distillation term: ``loss(student_outputs, teacher_outputs) -> scalar``
    over the two networks' output dicts (backbone outputs plus ``"logits"``, the margin logits, when
    the teacher's head is loaded), weighted by the config's ``distill_weight``.

    ``check(teacher_backbone)`` raises a :class:`ConfigError` when the teacher lacks what the loss reads.
    ``needs_teacher_head``: the teacher's margin head must be loaded (logit distillation)."""

    name: str
    loss: Callable
    summary: str
    check: Callable | None = None
    needs_teacher_head: bool = False


@keras.saving.register_keras_serializable("kdface")
class LowResolutionDistiller(FaceRecognizer):
    """A student (backbone + margin head) seeing the low-resolution view, and a frozen teacher seeing the
    HR view of the same sample (same flip): loss = CE(student margin logits) + weight x distillation.

    The teacher runs in inference mode (BatchNorm on its running statistics) and is never updated: its
    variables are not trainable and its outputs are behind ``stop_gradient`` (spec §2.4, §8)."""

    def __init__(self, backbone, head, teacher: keras.Model, distillation: Distillation, weight: float,
                 teacher_head: MarginHead | None = None, **kwargs):  # fmt: skip
        super().__init__(backbone, head, **kwargs)
        self.teacher = teacher
        self.teacher.trainable = False
        self.teacher_head = teacher_head
        if teacher_head is not None:
            teacher_head.trainable = False
        self.distillation = distillation
        self.weight = float(weight)
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.distill_tracker = keras.metrics.Mean(name="distill")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy, self.ce_tracker, self.distill_tracker]

    def _outputs(self, network, head, images, labels, training):
        outputs = dict(network(images, training=training))
        if head is not None:
            outputs["logits"] = head(tf.cast(outputs["embedding"], tf.float32), labels)
        return outputs

    def losses_of(self, inputs, labels, training=True):
        teacher = self._outputs(self.teacher, self.teacher_head, inputs["hr"], labels, False)
        teacher = tf.nest.map_structure(tf.stop_gradient, teacher)
        student = self._outputs(self.backbone, self.head, inputs["lr"], labels, training)
        ce = _cross_entropy(labels, tf.cast(student["logits"], tf.float32))
        distill = tf.cast(self.distillation.loss(student, teacher), tf.float32)
        return ce, distill, student

    def train_step(self, data):
        inputs, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        with tf.GradientTape() as tape:
            ce, distill, student = self.losses_of(inputs, labels)
            loss = ce + self.weight * distill
            scaled = self.optimizer.scale_loss(per_replica_share(loss))
        variables = self.backbone.trainable_variables + self.head.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._track_all(loss, ce, distill, labels, student)

    def test_step(self, data):
        inputs, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        ce, distill, student = self.losses_of(inputs, labels, training=False)
        return self._track_all(ce + self.weight * distill, ce, distill, labels, student)

    def _track_all(self, loss, ce, distill, labels, student):
        self.ce_tracker.update_state(ce)
        self.distill_tracker.update_state(distill)
        logits = self.head(tf.cast(student["embedding"], tf.float32))
        return self._track(
            loss, labels, logits, ce=self.ce_tracker.result(), distill=self.distill_tracker.result()
        )


@dataclasses.dataclass
class StudentConfig(RecognitionConfig):
    """A low-resolution student: the teacher file, the distillation weight, and the training resolution
    (the architecture is the teacher's unless ``--backbone`` etc. say otherwise: F-SKD's teacher and
    student are the same network)."""

    teacher: str | None = option(None, "the frozen HR teacher (.keras from train_teacher.py)", required=True)
    distill_weight: float | None = option(None, "weight of the distillation term (lambda)")
    down_size: int = option(
        1,
        "student resolution: 1 multi-resolution (1/8..1 of the image size per sample), or a fixed side in "
        "pixels (14 at 112 px)",
    )
    mode: str | None = option(None, "student attention (default: the teacher's)", choices=("ir", "cbam"))
    cbam: str | None = option(None, "student CBAM variant (default: the teacher's)", choices=("fskd", "askd"))

    def check_inputs(self) -> None:
        from kdface.io.paths import require_file

        require_file(self.teacher, "--teacher", hint="a teacher from python train_teacher.py --method fskd")
        super().check_inputs()


def _teacher_architecture(path) -> dict:
    from kdface.io.cards import read_model_card

    card = read_model_card(path)
    if card.get("task") != "recognition":
        raise ConfigError(
            f"--teacher {path}: a recognition model is needed (its card says task {card.get('task')!r})"
        )
    return card


def resolve_student(config: StudentConfig, defaults: dict) -> StudentConfig:
    """The student's config: preset values, then the teacher's architecture and image size for fields left
    unset, then the method's ``defaults`` (e.g. its distillation weight)."""
    from kdface.io.paths import require_file

    require_file(config.teacher, "--teacher", hint="a teacher from python train_teacher.py --method fskd")
    card = _teacher_architecture(config.teacher)
    arch = card.get("architecture", {})
    attention = arch.get("attention", "none")
    teacher_fields = {
        "backbone": arch.get("backbone"),
        "head": arch.get("head"),
        "image_size": card.get("image_size"),
        "mode": "ir" if attention == "none" else "cbam",
        "cbam": {"cbam_askd": "askd"}.get(attention, "fskd"),
    }
    values = {k: v for k, v in teacher_fields.items() if getattr(config, k) is None and v is not None}
    values.update({k: v for k, v in defaults.items() if getattr(config, k, None) is None})
    return dataclasses.replace(config, **values).resolved("student")


def load_teacher(config: StudentConfig, distillation: Distillation, unsafe: bool = False):
    """The teacher's backbone (frozen) and, for logit distillation, its margin head."""
    from kdface.io.safe_load import load_keras_model

    saved = load_keras_model(config.teacher, unsafe=unsafe)
    backbone = nested_backbone(saved, config.teacher)
    if backbone.input_shape[1] != config.image_size:
        raise ConfigError(f"--teacher {config.teacher} takes {backbone.input_shape[1]} px images; the student "
                          f"trains at --image-size {config.image_size}: use the teacher's size")  # fmt: skip
    if distillation.check is not None:
        distillation.check(backbone, config.teacher)
    head = None
    if distillation.needs_teacher_head:
        path = margin_head_path(config.teacher)
        if not path.is_file():
            raise ConfigError(f"{distillation.name} needs the teacher's margin head {path} (written beside teachers "
                              "by train_teacher.py)")  # fmt: skip
        with np.load(path) as data:
            kernel = data["kernel"]
        card = _teacher_architecture(config.teacher).get("margin", {})
        head = MarginHead(kernel.shape[0], margin=card.get("type", config.margin), scale=card.get("scale", config.margin_scale),
                          margin_value=card.get("margin", config.margin_value), name="teacher_margin_head")  # fmt: skip
        head.build((None, kernel.shape[1]))
        head.kernel.assign(kernel)
    return backbone, head


def train_lowres_student(config: StudentConfig, distillation: Distillation, *, method: str, defaults: dict,
                         out=None, run_dir=None, options=None) -> Path:  # fmt: skip
    """Distil ``config.teacher`` into a freshly initialised student on the low-resolution view."""
    from kdface.training import prepare_built_model, train_run

    config = resolve_student(config, defaults)
    teacher_parts = {}

    def load_data(run):
        data = training_data(config, run.options.on_bad_sample, pairs=True)
        teacher_parts["teacher"], teacher_parts["head"] = load_teacher(
            config, distillation, run.options.unsafe_load_model
        )
        if teacher_parts["head"] is not None and teacher_parts["head"].num_classes != data.num_classes:
            raise ConfigError(f"--teacher {config.teacher} was trained on {teacher_parts['head'].num_classes} "
                              f"identities, the data has {data.num_classes}")  # fmt: skip
        return data

    def build(data, run):
        backbone = prepare_built_model(build_backbone(config, weights=config.backbone_weights), run)
        model = LowResolutionDistiller(backbone, margin_head(config, data.num_classes), teacher_parts["teacher"],
                                       distillation, config.distill_weight, teacher_parts["head"])  # fmt: skip
        model.compile(optimizer=sgd(config, data.steps_per_epoch))
        return model

    from kdface.training.teacher_cache import file_sha256

    name = f"{method}_{config.backbone}_{config.resolution_tag()}"
    record = {"teacher_sha256": file_sha256(config.teacher)}
    card = {
        "teacher": str(config.teacher),
        "distillation": {"method": method, "weight": config.distill_weight},
    }
    return train_run(config, method=method, role="student", name=name, load_data=load_data, build=build, out=out,
                     run_dir=run_dir, options=options, record=record, card=card)  # fmt: skip
