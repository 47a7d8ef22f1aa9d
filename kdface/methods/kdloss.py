"""KD-Loss (Fard & Mahoor, CVIU 2022): facial landmarks with Tough and Tolerant teachers.

* Tough-Teacher: EfficientNet-B3 regressing the hard (ground-truth) landmarks with L2.
* Tolerant-Teacher: the same network regressing ASM soft landmarks (PCA, 90 % variance).
* Student: MobileNetV2 trained with KD-Loss (main loss + ALoss_Tou + ALoss_Tol); ``--no-kd`` trains
  the same student with plain L2 on the same budget, as the baseline.

Models take RGB images in ``[0, 1]`` of shape ``(S, S, 3)`` (a face crop) and return the flat,
interleaved, crop-normalised landmark vector ``(B, 2N)``; see
:func:`kdface.tasks.landmarks.points.landmarks_to_pixels`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from kdface.backbones import check_backbone_weights
from kdface.config import option
from kdface.errors import ConfigError, RunError
from kdface.io import load_keras_model
from kdface.io.cards import LEGACY_TASK, read_model_card
from kdface.io.safe_load import check_model_file
from kdface.losses.kd_loss import kd_loss
from kdface.methods import Method, Role, register_method
from kdface.metrics.keras_metrics import LandmarkNME
from kdface.tasks.landmarks.asm import ActiveShapeModel
from kdface.tasks.landmarks.pipeline import landmark_dataset
from kdface.tasks.landmarks.points import NUM_POINTS
from kdface.tasks.landmarks.training import LandmarkConfig, build_regressor, load_split, training_data
from kdface.training import prepare_built_model, teacher_cache, train_run
from kdface.training.distribute import per_replica_share

TEACHER_BACKBONE = "efficientnet_b3"
STUDENT_BACKBONE = "mobilenet_v2"
TEACHERS = ("tough", "tolerant")

# The original's sizes (spec §1, §3.1), and a small budget that learns on 2 CPU cores. The demo's
# teachers are MobileNetV2s trained longer than the students: EfficientNet-B3 from scratch does not
# get past the mean face within a CPU budget (docs/results.md has the measurements).
PRESETS = {
    "paper": dict(
        image_size=224, batch_size=70, teacher_epochs=150, student_epochs=150,
        learning_rate=1e-3, lr_schedule="inverse_time", lr_decay=1e-4, pad_px=10.0, pad_frac=0.0,
        augment=True, max_rotation=0.5, teacher_backbone=TEACHER_BACKBONE, cache_teachers=False,
        teacher_dropout=0.5,
    ),
    "demo": dict(
        image_size=64, batch_size=16, teacher_epochs=8, student_epochs=5,
        learning_rate=2e-3, lr_schedule="cosine", lr_decay=1e-4, pad_px=0.0, pad_frac=0.08,
        augment=False, max_rotation=0.25, bn_momentum=0.9, teacher_backbone=STUDENT_BACKBONE,
        cache_teachers=True, teacher_dropout=0.0,
    ),
}  # fmt: skip
TEACHER, STUDENT = ("teacher",), ("student",)


@dataclasses.dataclass
class KDLossConfig(LandmarkConfig):
    """One experiment. ``None`` fields take the preset's value (see :data:`PRESETS`)."""

    PRESETS: ClassVar[dict] = PRESETS

    teacher: str | None = option(
        None,
        "tough: hard landmarks; tolerant: ASM soft landmarks",
        choices=TEACHERS,
        roles=TEACHER,
        required=True,
    )
    tough: str | None = option(
        None, "Tough-Teacher .keras (default models/teachers/<dataset>_tough.keras)", roles=STUDENT
    )
    tolerant: str | None = option(
        None, "Tolerant-Teacher .keras (default models/teachers/<dataset>_tolerant.keras)", roles=STUDENT
    )
    no_kd: bool = option(False, "train the plain student with L2 instead (the baseline)", roles=STUDENT)
    learning_rate: float | None = option(None, "Adam learning rate")
    lr_schedule: str | None = option(
        None,
        "inverse_time: lr / (1 + lr_decay * step), the original's; cosine: to zero over the run",
        choices=("inverse_time", "cosine"),
    )
    lr_decay: float | None = option(None, "inverse-time decay per step (Keras 2 legacy 'decay')")
    weights: str | None = option(
        None,
        "backbone initialisation: none (scratch, as the paper), 'imagenet' (needs "
        "internet), or a weights file",
        flags=("--backbone-weights", "--weights"),
    )
    bn_momentum: float | None = option(
        None,
        "BatchNorm moving-average momentum for every backbone layer (unset: each "
        "network's own, MobileNetV2 0.999, EfficientNet 0.99)",
    )
    teacher_backbone: str | None = option(
        None, "teacher network (the paper: efficientnet_b3)", roles=TEACHER, backbone=True
    )
    student_backbone: str = option(
        STUDENT_BACKBONE, "student network (the paper: mobilenet_v2)", roles=STUDENT, backbone=True
    )
    teacher_dropout: float | None = option(None, "dropout before the teacher's landmark layer", roles=TEACHER)
    asm_variance: float = option(0.9, "shape variance the Tolerant-Teacher's ASM keeps", roles=TEACHER)
    asm_fit_epochs: int = option(
        2, "passes over the augmented training set used to fit the ASM", roles=TEACHER
    )
    cache_teachers: bool | None = option(
        None, "compute teacher predictions once per image (needs --no-augment)", roles=STUDENT
    )
    main_weight: float = option(2.0, "KD-Loss weight of the main loss", roles=STUDENT)
    tough_weight: float = option(1.0, "KD-Loss weight of ALoss_Tou", roles=STUDENT)
    tolerant_weight: float = option(1.0, "KD-Loss weight of ALoss_Tol", roles=STUDENT)

    def check_inputs(self) -> None:
        super().check_inputs()
        backbone = self.teacher_backbone if self.teacher else self.student_backbone  # the role's network
        check_backbone_weights(self.weights, backbone, "--backbone-weights")
        if not self.teacher and not self.no_kd:
            for which in TEACHERS:
                path = getattr(self, which)
                if path is None:
                    continue
                train = f"python train_teacher.py --teacher {which} --dataset {self.dataset}"
                check_model_file(path, f"--{which}", hint=f"train it first: {train}")
                card = read_model_card(path)  # a model of another task or landmark layout: say so now
                task, points = card.get("task", LEGACY_TASK), card.get("num_points")
                if task != "landmarks":
                    raise ConfigError(f"--{which} {path} is a model of the {task} task (its model card); "
                                      f"KD-Loss distils landmark teachers: {train}")  # fmt: skip
                if points is not None and points != NUM_POINTS[self.dataset]:
                    raise ConfigError(f"--{which} {path} predicts {points} landmarks (its model card) but "
                                      f"{self.dataset} has {NUM_POINTS[self.dataset]}: {train}")  # fmt: skip

    def resolved(self, role: str | None = None) -> KDLossConfig:
        """A copy with preset values filled in; ``role`` is ``teacher`` or ``student`` (for epochs)."""
        explicit_cache = self.cache_teachers
        config = super().resolved(role)
        if config.augment and config.cache_teachers:
            if explicit_cache is not None:
                raise ConfigError(
                    "--cache-teachers needs --no-augment: cached predictions are of the un-augmented crop"
                )
            # the preset's cache cannot hold augmented views: the teachers run live
            config = dataclasses.replace(config, cache_teachers=False)
        return config


def _optimizer(config: KDLossConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    if config.lr_schedule == "inverse_time":
        # Keras 2's legacy ``decay`` (lr / (1 + decay * step)), as the original used.
        schedule = keras.optimizers.schedules.InverseTimeDecay(config.learning_rate, 1, config.lr_decay)
    elif config.lr_schedule == "cosine":
        # to zero over the run: a short run ends on settled weights (and BatchNorm statistics)
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, config.epochs * steps_per_epoch
        )
    else:
        raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected 'inverse_time' or 'cosine'")
    return keras.optimizers.Adam(schedule)


@keras.saving.register_keras_serializable("kdface")
class KDLossDistiller(keras.Model):
    """The student trained with KD-Loss against frozen Tough and Tolerant teachers.

    Inputs are images, or dicts ``{"image", "tough", "tolerant"}`` holding teacher predictions
    cached once per image (valid only when the student sees exactly the cached view, i.e. without
    augmentation). Otherwise the teachers run in inference mode on the student's exact batch.
    ``deploy_model`` is the student: that is what gets saved.
    """

    def __init__(self, student, tough, tolerant, loss_weights=(2.0, 1.0, 1.0), **kwargs):
        super().__init__(**kwargs)
        self.student, self.tough, self.tolerant = student, tough, tolerant
        self.tough.trainable = False
        self.tolerant.trainable = False
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.main_tracker = keras.metrics.Mean(name="main")
        self.tough_tracker = keras.metrics.Mean(name="aloss_tough")
        self.tolerant_tracker = keras.metrics.Mean(name="aloss_tolerant")

    @property
    def deploy_model(self):
        return self.student

    def call(self, inputs, training=False):
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.student(images, training=training)

    def _teacher(self, teacher, images):
        return tf.stop_gradient(teacher(teacher_view(teacher, images), training=False))

    def teacher_predictions(self, inputs):
        if isinstance(inputs, dict) and "tough" in inputs:
            return inputs["tough"], inputs["tolerant"]
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        return self._teacher(self.tough, images), self._teacher(self.tolerant, images)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        tough, tolerant = self.teacher_predictions(x)
        main_weight, tough_weight, tolerant_weight = self.loss_weights
        terms = kd_loss(y, y_pred, tough, tolerant, main_weight=main_weight, tough_weight=tough_weight,
                        tolerant_weight=tolerant_weight)  # fmt: skip
        self.main_tracker.update_state(terms.main)
        self.tough_tracker.update_state(terms.aloss_tough)
        self.tolerant_tracker.update_state(terms.aloss_tolerant)
        # Keras sums the replicas' gradients: each replica contributes its share of the global mean.
        return per_replica_share(terms.total)

    def get_config(self):
        return {
            **super().get_config(),
            "student": keras.saving.serialize_keras_object(self.student),
            "tough": keras.saving.serialize_keras_object(self.tough),
            "tolerant": keras.saving.serialize_keras_object(self.tolerant),
            "loss_weights": list(self.loss_weights),
        }

    @classmethod
    def from_config(cls, config):
        for key in ("student", "tough", "tolerant"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


# --- teachers ---------------------------------------------------------------------------------------


def fit_asm(config: KDLossConfig, on_bad_sample="error") -> ActiveShapeModel:
    """Fit the ASM on the training targets as the teacher sees them (augmented, like the original's
    offline-augmented set), so rotated and flipped shapes are inside the model's span."""
    data = training_data(config, on_bad_sample)
    epochs = config.asm_fit_epochs if config.augment else 1
    batches = data.stream(0, 0).take(epochs * max(1, data.batches_per_pass))
    vectors = np.concatenate([y.numpy() for _, y in batches])
    return ActiveShapeModel.fit(vectors, config.asm_variance)


def build_teacher(config: KDLossConfig, num_points: int, which: str) -> keras.Model:
    return build_regressor(config.teacher_backbone, num_points, config.image_size, config.teacher_dropout,
                           config.weights, name=f"{which}_teacher", bn_momentum=config.bn_momentum)  # fmt: skip


def build_student(config: KDLossConfig, num_points: int) -> keras.Model:
    return build_regressor(config.student_backbone, num_points, config.image_size, 0.0, config.weights,
                           name="student", bn_momentum=config.bn_momentum)  # fmt: skip


def compile_regressor(
    model: keras.Model, config: KDLossConfig, normaliser, steps_per_epoch: int
) -> keras.Model:
    model.compile(
        optimizer=_optimizer(config, steps_per_epoch), loss="mse", metrics=[LandmarkNME(normaliser)]
    )
    return model


def load_teacher(path, unsafe: bool = False) -> keras.Model:
    path = Path(path)
    if not path.exists():
        raise RunError(f"teacher model {path} does not exist; train it with train_teacher.py first")
    return load_keras_model(path, unsafe=unsafe)


def teacher_view(teacher: keras.Model, images):
    """The student's images as ``teacher`` takes them: resized (anti-aliased) to its input size."""
    size = teacher.input_shape[1]
    if size == images.shape[1]:
        return images
    # tf.image.resize(antialias=True) as two matrix products: its op (ScaleAndTranslate) has no XLA
    # kernel, so --jit-compile could not compile a step with live teachers of another input size.
    rows = tf.constant(_resize_matrix(int(images.shape[1]), size), images.dtype)
    cols = tf.constant(_resize_matrix(int(images.shape[2]), size), images.dtype)
    return tf.einsum("jq,biqc->bijc", cols, tf.einsum("ip,bpqc->biqc", rows, images))


@functools.cache
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)``: tf.image.resize(antialias=True) along one axis (it is separable), found by
    resizing the unit impulses."""
    with tf.init_scope():  # eager even while a step is being traced
        impulses = tf.eye(n_in)[:, :, None]
        return tf.image.resize(impulses, (n_out, n_in), antialias=True)[:, :, 0].numpy()


def teacher_predictions(config: KDLossConfig, tough, tolerant, source, *, files=None, folder=None,
                        write: bool = True) -> tf.data.Dataset:  # fmt: skip
    """Teacher outputs for every image of ``source``, in its order, computed once (``--cache-teachers``).

    Only offered without augmentation: the cache holds the teachers' view of the un-augmented
    crop, and distilling from a view the student does not see hurts (big_vision's finding). With
    ``files`` (``{"tough": path, "tolerant": path}``, the teachers' model files) and ``folder`` the
    outputs are kept on disk and reused by any run with the same teachers, data and crop
    (:mod:`kdface.training.teacher_cache`); without, they are computed in memory.
    """
    if config.augment:
        raise ConfigError(
            "cache_teachers needs augment=False: cached predictions are of the un-augmented crop"
        )
    plain = landmark_dataset(source.dataset, image_size=config.image_size, batch_size=config.batch_size,
                             crop=config.crop()).map(lambda x, y: x)  # fmt: skip
    teachers = {"tough": tough, "tolerant": tolerant}

    def views(teacher):
        return plain.map(lambda images: teacher_view(teacher, images))

    if files is None or folder is None:
        outputs = {name: teacher.predict(views(teacher), verbose=0) for name, teacher in teachers.items()}
    else:
        preprocessing = {"task": "landmarks", "dataset": source.name, "split": source.split,
                         "image_size": config.image_size, "crop": dataclasses.asdict(config.crop()), "augment": False,
                         "teacher_input": "resized to the teacher's input size, antialiased"}  # fmt: skip
        key, description = teacher_cache.cache_key(
            files, teacher_cache.dataset_fingerprint(source.dataset), preprocessing
        )
        outputs = teacher_cache.cached_teacher_outputs(teachers, views, key=key, description=description,
                                                       folder=folder, write=write)  # fmt: skip
    return tf.data.Dataset.from_tensor_slices(outputs)


# --- entry points used by train_teacher.py / train_student.py --------------------------------------


def train_teacher(config: KDLossConfig, out=None, run_dir=None, options=None) -> Path:
    """The Tough- (``config.teacher == "tough"``) or Tolerant-Teacher (ASM soft landmarks)."""
    config = config.resolved("teacher")
    if config.teacher not in TEACHERS:
        raise ConfigError(f"--teacher must be one of {', '.join(TEACHERS)}; got {config.teacher!r}")
    name = config.teacher
    out = Path(out or f"models/teachers/{config.dataset}_{name}.keras")
    card = {}

    def load_data(run):
        transform = None
        if name == "tolerant":
            asm = _tolerant_asm(config, run, out)
            transform = asm.project_tf
            card["asm"] = {"file": str(out.with_suffix(".asm.npz")), "components": asm.num_components,
                           "variance": asm.variance}  # fmt: skip
        return training_data(config, run.options.on_bad_sample, target_transform=transform)

    def build(data, run):
        model = prepare_built_model(build_teacher(config, data.source.num_points, name), run)
        return compile_regressor(model, config, data.source.normaliser, data.steps_per_epoch)

    return train_run(config, method="kdloss", role="teacher", name=name, load_data=load_data, build=build, out=out,
                     run_dir=run_dir or f"runs/kdloss/{config.dataset}_{name}", options=options, card=card)  # fmt: skip


def _tolerant_asm(config: KDLossConfig, run, out: Path) -> ActiveShapeModel:
    """The Tolerant-Teacher's ASM: fitted once per run (a resumed run keeps the shapes it started with),
    and saved beside the published model."""
    asm_path = run.path / "asm.npz"
    if run.state is not None and asm_path.exists():
        asm = ActiveShapeModel.load(asm_path)
    else:
        asm = fit_asm(config, run.options.on_bad_sample)
        if run.chief:
            asm.save(asm_path)
    if run.chief:
        asm.save(out.with_suffix(".asm.npz"))
    print(f"ASM: {asm.num_components} components keep {100 * asm.variance:.0f}% of the shape variance")
    return asm


def train_student(config: KDLossConfig, out=None, run_dir=None, options=None) -> Path:
    """The student with KD-Loss against the Tough and Tolerant teachers, or with plain L2 (``no_kd``)."""
    config = config.resolved("student")
    name = "no_kd" if config.no_kd else "kd"
    if not config.no_kd:
        config = dataclasses.replace(config, tough=str(config.tough or f"models/teachers/{config.dataset}_tough.keras"),
                                     tolerant=str(config.tolerant or f"models/teachers/{config.dataset}_tolerant.keras"))  # fmt: skip
    teachers = {}

    def load_data(run):
        on_bad_sample = run.options.on_bad_sample
        if config.no_kd:
            return training_data(config, on_bad_sample)
        from kdface.training import distribute

        with distribute.scope(run.strategy):
            teachers["tough"] = load_teacher(config.tough, run.options.unsafe_load_model)
            teachers["tolerant"] = load_teacher(config.tolerant, run.options.unsafe_load_model)
        source = load_split(config, config.splits()[0], on_bad_sample)
        for teacher in teachers.values():
            if teacher.output_shape[-1] != 2 * source.num_points:
                raise RunError(f"teacher {teacher.name} predicts {teacher.output_shape[-1] // 2} points but "
                               f"{config.dataset} has {source.num_points}")  # fmt: skip
        cached = None
        if config.cache_teachers:  # on disk, keyed by the teacher files, the data and the crop
            cached = teacher_predictions(config, teachers["tough"], teachers["tolerant"], source,
                                         files={"tough": config.tough, "tolerant": config.tolerant},
                                         folder=run.options.teacher_cache_dir or run.path / teacher_cache.FOLDER,
                                         write=run.chief)  # fmt: skip
        return training_data(config, on_bad_sample, extra=cached, source=source)

    def build(data, run):
        student = prepare_built_model(build_student(config, data.source.num_points), run)
        if config.no_kd:
            return compile_regressor(student, config, data.source.normaliser, data.steps_per_epoch)
        model = KDLossDistiller(student, teachers["tough"], teachers["tolerant"],
                                (config.main_weight, config.tough_weight, config.tolerant_weight))  # fmt: skip
        model.compile(
            optimizer=_optimizer(config, data.steps_per_epoch), metrics=[LandmarkNME(data.source.normaliser)]
        )
        return model

    return train_run(config, method="kdloss", role="student", name=name, load_data=load_data, build=build, out=out,
                     run_dir=run_dir or f"runs/kdloss/{config.dataset}_student_{name}", options=options)  # fmt: skip


register_method(Method(
    name="kdloss", task="landmarks",
    summary="KD-Loss: Tough and Tolerant teachers distilled into a MobileNetV2 landmark student",
    roles={"teacher": Role(KDLossConfig, train_teacher), "student": Role(KDLossConfig, train_student)},
    default=True,
))  # fmt: skip
