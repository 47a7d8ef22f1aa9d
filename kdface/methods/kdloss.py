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
import typing
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdface import training
from kdface.backbones import build_backbone
from kdface.cli import add_config_arguments, config_from_args
from kdface.data.sources import LandmarkSource, load_landmark_split
from kdface.errors import RunError
from kdface.io import load_keras_model
from kdface.losses.kd_loss import kd_loss
from kdface.metrics.keras_metrics import LandmarkNME
from kdface.tasks.landmarks.asm import ActiveShapeModel
from kdface.tasks.landmarks.pipeline import (
    AugmentConfig,
    CropConfig,
    landmark_dataset,
    landmark_training_stream,
)
from kdface.training import distribute
from kdface.training.distribute import per_replica_share

TEACHER_BACKBONE = "efficientnet_b3"
STUDENT_BACKBONE = "mobilenet_v2"

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


@dataclasses.dataclass
class KDLossConfig:
    """One experiment. ``None`` fields take the preset's value (see :data:`PRESETS`)."""

    dataset: str = "synthface"
    data_dir: str | None = None
    tfds_dir: str = "datasets/tfds"
    preset: str = "demo"
    image_size: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    lr_schedule: str | None = None  # "inverse_time" (the original's Keras 2 decay) or "cosine" (to 0)
    lr_decay: float | None = None
    pad_px: float | None = None
    pad_frac: float | None = None
    augment: bool | None = None
    max_rotation: float | None = None  # radians
    val_fraction: float = 0.05
    seed: int = 0
    steps_per_epoch: int | None = None
    weights: str | None = None  # None (scratch), "imagenet", or a backbone weights file
    bn_momentum: float | None = None  # None: each network's own (MobileNetV2 0.999, EfficientNet 0.99)
    teacher_backbone: str | None = None
    student_backbone: str = STUDENT_BACKBONE
    teacher_dropout: float | None = None
    asm_variance: float = 0.9
    asm_fit_epochs: int = 2  # passes over the augmented training set the ASM is fitted on
    cache_teachers: bool | None = None
    main_weight: float = 2.0
    tough_weight: float = 1.0
    tolerant_weight: float = 1.0

    def resolved(self, role: str) -> KDLossConfig:
        """A copy with preset values filled in; ``role`` is ``teacher`` or ``student`` (for epochs)."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; known: {sorted(PRESETS)}")
        preset = PRESETS[self.preset]
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in preset:
                value = preset[field.name]
            values[field.name] = value
        if values["epochs"] is None:
            values["epochs"] = preset[f"{role}_epochs"]
        if values["augment"] and values["cache_teachers"]:
            if self.cache_teachers is None:  # the preset's cache cannot hold augmented views: live teachers
                values["cache_teachers"] = False
            else:
                raise ValueError(
                    "--cache-teachers needs --no-augment: cached predictions are of the un-augmented crop"
                )
        return dataclasses.replace(self, **values)


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


def _steps_per_epoch(config: KDLossConfig, source) -> int:
    """Full batches per epoch (the training stream drops the remainder)."""
    return config.steps_per_epoch or source.size // config.batch_size


def build_regressor(backbone: str, num_points: int, image_size: int, dropout: float = 0.0, weights=None,
                    name: str = "landmark_regressor", bn_momentum=None) -> keras.Model:  # fmt: skip
    """Backbone -> global average pooling -> (Dropout) -> Dense(2N) named ``landmarks``."""
    features = build_backbone(backbone, image_size, weights=weights, bn_momentum=bn_momentum)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = features(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(2 * num_points, name="landmarks")(x)
    return keras.Model(inputs, outputs, name=name)


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
        size = teacher.input_shape[1]
        if size != images.shape[1]:
            images = tf.image.resize(images, (size, size), antialias=True)
        return tf.stop_gradient(teacher(images, training=False))

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


# --- data -----------------------------------------------------------------------------------------


def _splits(config: KDLossConfig):
    if not 0 <= config.val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {config.val_fraction}")
    if config.val_fraction == 0:
        return "train", None
    cut = int(round(100 * (1 - config.val_fraction)))
    return f"train[:{cut}%]", f"train[{cut}%:]"


def _source(config: KDLossConfig, split: str, on_bad_sample: str = "error"):
    return load_landmark_split(
        config.dataset, split, config.data_dir, config.tfds_dir, on_bad_sample=on_bad_sample
    )


def _crop(config: KDLossConfig) -> CropConfig:
    # COFW and WFLW ship a face box; the original united it with the landmark box (spec §4.2, §4.3).
    return CropConfig(pad_px=config.pad_px, pad_frac=config.pad_frac,
                      union_dataset_box=config.dataset in ("cofw", "wflw"))  # fmt: skip


def _augment(config: KDLossConfig) -> AugmentConfig:
    return AugmentConfig(rotation=config.max_rotation) if config.augment else AugmentConfig.none()


@dataclasses.dataclass
class TrainData:
    """The training stream factory, its epoch length, the validation set and the training source."""

    stream: typing.Callable  # (start_epoch, skip_batches) -> endless tf.data stream
    steps_per_epoch: int
    val: tf.data.Dataset | None
    source: LandmarkSource
    skipped: list


def train_data(
    config: KDLossConfig, target_transform=None, on_bad_sample="error", extra=None, source=None
) -> TrainData:
    """The training stream and validation set of ``config``.

    ``target_transform`` applies to the training targets only: validation is never augmented and
    always measures against the hard ground truth. ``extra`` (aligned with the training split)
    is attached to the inputs (cached teacher predictions). ``source``: the training split, if the
    caller loaded it already.
    """
    train_split, val_split = _splits(config)
    source = source or _source(config, train_split, on_bad_sample)
    common = dict(image_size=config.image_size, batch_size=config.batch_size, crop=_crop(config))

    def stream(start_epoch: int = 0, skip_batches: int = 0):
        return landmark_training_stream(source.dataset, augment=_augment(config), seed=config.seed,
                                        target_transform=target_transform, start_epoch=start_epoch,
                                        skip_batches=skip_batches, extra=extra, **common)  # fmt: skip

    val = None
    if val_split is not None:
        val = landmark_dataset(_source(config, val_split, on_bad_sample).dataset, cache=True, **common)
    return TrainData(stream, _steps_per_epoch(config, source), val, source, source.skipped)


def fit_asm(config: KDLossConfig, on_bad_sample="error") -> ActiveShapeModel:
    """Fit the ASM on the training targets as the teacher sees them (augmented, like the original's
    offline-augmented set), so rotated and flipped shapes are inside the model's span."""
    data = train_data(config, on_bad_sample=on_bad_sample)
    epochs = config.asm_fit_epochs if config.augment else 1
    batches = data.stream(0, 0).take(epochs * max(1, data.steps_per_epoch))
    vectors = np.concatenate([y.numpy() for _, y in batches])
    return ActiveShapeModel.fit(vectors, config.asm_variance)


# --- models -----------------------------------------------------------------------------------------


def build_teacher(config: KDLossConfig, num_points: int, which: str) -> keras.Model:
    model = build_regressor(config.teacher_backbone, num_points, config.image_size, config.teacher_dropout,
                            config.weights, name=f"{which}_teacher", bn_momentum=config.bn_momentum)  # fmt: skip
    return model


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


def teacher_predictions(config: KDLossConfig, tough, tolerant, source) -> tf.data.Dataset:
    """Teacher outputs for every image of ``source``, in its order, computed once (``--cache-teachers``).

    Only offered without augmentation: the cache holds the teachers' view of the un-augmented
    crop, and distilling from a view the student does not see hurts (big_vision's finding).
    """
    if config.augment:
        raise ValueError(
            "cache_teachers needs augment=False: cached predictions are of the un-augmented crop"
        )
    plain = landmark_dataset(source.dataset, image_size=config.image_size, batch_size=config.batch_size,
                             crop=_crop(config)).map(lambda x, y: x)  # fmt: skip
    return tf.data.Dataset.from_tensor_slices(
        {"tough": tough.predict(plain, verbose=0), "tolerant": tolerant.predict(plain, verbose=0)}
    )


# --- entry points used by train_teacher.py / train_student.py --------------------------------------


def model_card(config: KDLossConfig, role: str, num_points: int, normaliser, **extra) -> dict:
    """What test.py and users need to use a saved model: written beside it as ``<model>.json``."""
    return {
        "method": "kdloss",
        "task": "landmarks",
        "role": role,
        "dataset": config.dataset,
        "num_points": num_points,
        "normaliser": list(normaliser),
        "image_size": config.image_size,
        "crop": dataclasses.asdict(_crop(config)),
        "config": dataclasses.asdict(config),
        **extra,
    }


FLAG_HELP = {
    "dataset": "synthface (generated here), 300w, cofw or wflw",
    "data_dir": "raw dataset folder (SynthFaces: generated there; default datasets/synthfaces/demo)",
    "tfds_dir": "where prepared TFDS records are kept",
    "preset": "paper: the original's sizes and schedule (for GPUs); demo: small and quick (CPU)",
    "image_size": "square input size of the face crop",
    "batch_size": "batch size",
    "epochs": "training epochs",
    "learning_rate": "Adam learning rate",
    "lr_schedule": "inverse_time: lr / (1 + lr_decay * step), the original's; cosine: to zero over the run",
    "max_rotation": "augmentation rotation range, +- radians",
    "lr_decay": "inverse-time decay per step (Keras 2 legacy 'decay')",
    "pad_px": "crop padding around the landmark box, pixels per side",
    "pad_frac": "crop padding around the landmark box, fraction of its size per side",
    "augment": "online augmentation (flip with landmark relabelling, rotation, zoom, shift, colour)",
    "val_fraction": "fraction of the training split held out for validation / best-model selection",
    "seed": "random seed (data order, augmentation, initialisation)",
    "steps_per_epoch": "steps per epoch (default: one pass over the training split)",
    "weights": "backbone initialisation: none (scratch, as the paper), 'imagenet' (needs internet), or a weights file",
    "bn_momentum": "BatchNorm moving-average momentum for every backbone layer (unset: each network's own)",
    "teacher_backbone": "teacher network (the paper: efficientnet_b3)",
    "student_backbone": "student network (the paper: mobilenet_v2)",
    "teacher_dropout": "dropout before the teacher's landmark layer",
    "asm_variance": "shape variance the Tolerant-Teacher's ASM keeps",
    "asm_fit_epochs": "passes over the augmented training set used to fit the ASM",
    "cache_teachers": "compute teacher predictions once per image (needs --no-augment)",
    "main_weight": "KD-Loss weight of the main loss",
    "tough_weight": "KD-Loss weight of ALoss_Tou",
    "tolerant_weight": "KD-Loss weight of ALoss_Tol",
}


def add_teacher_arguments(parser) -> None:
    parser.add_argument("--teacher", choices=("tough", "tolerant"), required=True,
                        help="tough: hard landmarks; tolerant: ASM soft landmarks")  # fmt: skip
    skip = ("cache_teachers", "main_weight", "tough_weight", "tolerant_weight", "student_backbone")
    add_config_arguments(parser, KDLossConfig, PRESETS, skip=skip, help_texts=FLAG_HELP)


def add_student_arguments(parser) -> None:
    parser.add_argument(
        "--tough", help="Tough-Teacher .keras (default models/teachers/<dataset>_tough.keras)"
    )
    parser.add_argument(
        "--tolerant", help="Tolerant-Teacher .keras (default models/teachers/<dataset>_tolerant.keras)"
    )
    parser.add_argument(
        "--no-kd", action="store_true", help="train the plain MobileNetV2 baseline with L2 instead"
    )
    skip = ("teacher_dropout", "asm_variance", "asm_fit_epochs", "teacher_backbone")
    add_config_arguments(parser, KDLossConfig, PRESETS, skip=skip, help_texts=FLAG_HELP)


def _fit(model, data: TrainData, config: KDLossConfig, run):
    monitor = "val_nme" if data.val is not None else "loss"
    return training.fit(model, data.stream, data.val, run=run, epochs=config.epochs,
                        steps_per_epoch=data.steps_per_epoch, monitor=monitor)  # fmt: skip


def train_teacher(config: KDLossConfig, teacher: str, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved("teacher")
    options = options or training.RunOptions()
    out = Path(out or f"models/teachers/{config.dataset}_{teacher}.keras")
    run = training.open_run(config, f"{teacher}_teacher", run_dir or f"runs/kdloss/{config.dataset}_{teacher}", out,
                    options)  # fmt: skip
    extra = {}
    transform = None
    if teacher == "tolerant":
        asm_path = run.path / "asm.npz"
        if run.state is not None and asm_path.exists():
            asm = ActiveShapeModel.load(asm_path)  # resuming: the shapes the run started with
        else:
            asm = fit_asm(config, options.on_bad_sample)
            if run.chief:
                asm.save(asm_path)
        if run.chief:
            asm.save(out.with_suffix(".asm.npz"))
        transform = asm.project_tf
        extra["asm"] = {"file": str(out.with_suffix(".asm.npz")), "components": asm.num_components,
                        "variance": asm.variance}  # fmt: skip
        print(f"ASM: {asm.num_components} components keep {100 * asm.variance:.0f}% of the shape variance")
    data = train_data(config, target_transform=transform, on_bad_sample=options.on_bad_sample)
    training.seed_models(config.seed)
    with distribute.scope(run.strategy):
        model = compile_regressor(training.prepare_built_model(build_teacher(config, data.source.num_points, teacher), run), config,
                                  data.source.normaliser, data.steps_per_epoch)  # fmt: skip
    result = _fit(model, data, config, run)
    run.write_skipped(data.skipped)
    card = model_card(config, f"{teacher}_teacher", data.source.num_points, data.source.normaliser,
                      train_seconds=round(result.seconds, 1), run_dir=str(run.path), **extra)  # fmt: skip
    training.publish(run, out, card)
    return out


def train_student(
    config: KDLossConfig, tough=None, tolerant=None, no_kd=False, out=None, run_dir=None, options=None
) -> Path:
    config = config.resolved("student")
    options = options or training.RunOptions()
    name = "no_kd" if no_kd else "kd"
    out = Path(out or f"models/students/{config.dataset}_{name}.keras")
    extra = {}
    if not no_kd:
        tough = str(tough or f"models/teachers/{config.dataset}_tough.keras")
        tolerant = str(tolerant or f"models/teachers/{config.dataset}_tolerant.keras")
        extra = {"tough": tough, "tolerant": tolerant}
    run = training.open_run(config, f"student_{name}", run_dir or f"runs/kdloss/{config.dataset}_student_{name}", out,
                    options, **extra)  # fmt: skip
    if no_kd:
        data = train_data(config, on_bad_sample=options.on_bad_sample)
        training.seed_models(config.seed)
        with distribute.scope(run.strategy):
            student = training.prepare_built_model(build_student(config, data.source.num_points), run)
            model = compile_regressor(student, config, data.source.normaliser, data.steps_per_epoch)
    else:
        with distribute.scope(run.strategy):
            tough_model = load_teacher(tough, options.unsafe_load_model)
            tolerant_model = load_teacher(tolerant, options.unsafe_load_model)
        source = _source(config, _splits(config)[0], options.on_bad_sample)
        cached = (
            teacher_predictions(config, tough_model, tolerant_model, source)
            if config.cache_teachers
            else None
        )
        data = train_data(config, on_bad_sample=options.on_bad_sample, extra=cached, source=source)
        for teacher in (tough_model, tolerant_model):
            if teacher.output_shape[-1] != 2 * data.source.num_points:
                raise RunError(
                    f"teacher {teacher.name} predicts {teacher.output_shape[-1] // 2} points but "
                    f"{config.dataset} has {data.source.num_points}"
                )
        training.seed_models(config.seed)
        with distribute.scope(run.strategy):
            student = training.prepare_built_model(build_student(config, data.source.num_points), run)
            model = KDLossDistiller(student, tough_model, tolerant_model,
                                    (config.main_weight, config.tough_weight, config.tolerant_weight))  # fmt: skip
            model.compile(optimizer=_optimizer(config, data.steps_per_epoch),
                          metrics=[LandmarkNME(data.source.normaliser)])  # fmt: skip
    result = _fit(model, data, config, run)
    run.write_skipped(data.skipped)
    card = model_card(config, f"student_{name}", data.source.num_points, data.source.normaliser,
                      train_seconds=round(result.seconds, 1), run_dir=str(run.path), **extra)  # fmt: skip
    training.publish(run, out, card)
    return out


def teacher_main(args) -> None:
    train_teacher(config_from_args(KDLossConfig, args), args.teacher, args.out, args.run_dir,
                  training.run_options_from_args(args))  # fmt: skip


def student_main(args) -> None:
    train_student(config_from_args(KDLossConfig, args), args.tough, args.tolerant, args.no_kd, args.out,
                  args.run_dir, training.run_options_from_args(args))  # fmt: skip
