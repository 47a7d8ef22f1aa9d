"""Each method's model, built and compiled the way its ``train_*`` entry point does, on its real data.

The methods' ``train_*`` functions build their compiled model in a closure handed to
:func:`kdface.training.train_run` (``build(data, run)``), which the suite cannot call without training.
:func:`build` repeats those few lines per method, calling the same public build functions
(``build_teacher``/``build_student``, ``build_classifier``, ``build_igkd``, ``build_scn``) and the same
optimizers, on the task's ``training_data(config, ...)`` over a SynthFaces tree. Keep it in step with
``kdface/methods/*.py`` (bench/README.md lists the library hook that would remove the copy).

Sizes: ``demo`` is each method's demo preset (its image size and batch); ``paper`` is the paper preset's
image size at a batch a CPU can take (:data:`PAPER_BATCH`), with everything else from the preset.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

# method -> (task, backbone family for the FLOP/s target, what is trained)
METHODS = {
    "kdloss_teacher": "KD-Loss Tough-Teacher (landmark regressor, L2)",
    "kdloss_student": "KD-Loss student (MobileNetV2) against two frozen teachers",
    "fer": "plain expression classifier (ResNet-18, cross-entropy)",
    "igkd": "IGKD: teacher and ResNet-18 student trained jointly, clean + erased views",
    "scn": "SCN: ResNet-18, importance weights, rank regularisation, relabelling",
}
# The paper presets' batches (KD-Loss 70, expressions 64) do not fit a CPU step in seconds.
PAPER_BATCH = {"kdloss_teacher": 16, "kdloss_student": 16, "fer": 32, "igkd": 16, "scn": 32}
QUICK_BATCH = 8
SIZES = ("demo", "paper")


@dataclasses.dataclass
class Contender:
    """One method at one size: its compiled training model, data and what the report needs."""

    method: str
    size: str
    config: object
    model: object  # the compiled keras.Model kdface's trainer fits
    data: object  # the task's TrainingData
    batch_size: int
    image_size: int
    networks: str  # the backbones, in words
    family: str  # "resnet", "mobilenet" or "efficientnet": which FLOP/s target applies
    trained_forward: list  # [(name, fn(images) -> outputs)] run forward and backward each step
    frozen_forward: list  # [(name, fn(images))] run forward only each step (live teachers)
    notes: list = dataclasses.field(default_factory=list)

    def deploy_model(self):
        from kdface.training import deployable

        return deployable(self.model)


def data_options(data_root, tfds_dir) -> dict:
    return {"dataset": "synthface", "data_dir": str(data_root), "tfds_dir": str(tfds_dir)}


def batch_for(method: str, size: str, preset_batch: int, quick: bool) -> int:
    if quick:
        return QUICK_BATCH
    return preset_batch if size == "demo" else PAPER_BATCH[method]


def run_options(speed: dict | None = None):
    """kdface's ``RunOptions`` with the speed options (``jit_compile``, ``mixed_precision``,
    ``steps_per_execution``; docs/speed.md) the suite was asked for; the defaults otherwise."""
    from kdface.training.trainer import RunOptions

    return RunOptions(**(speed or {}))


def build(
    method: str, size: str, data_root, tfds_dir, quick: bool = False, speed: dict | None = None
) -> Contender:
    """Build ``method``'s compiled model at ``size`` (``demo``/``paper``) on the SynthFaces tree, as
    ``train_run`` does: the strategy, the seeds, the dtype policy of ``--mixed-precision`` (set for the
    rest of the process: one measurement per process), the method's build, then the speed options."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(SIZES)}")
    import keras

    from kdface.training import distribute
    from kdface.training import speed as speed_options
    from kdface.training.trainer import configure_determinism, seed_models

    options = run_options(speed)
    strategy = distribute.make_strategy("auto")  # what open_run does first
    builder = {"kdloss_teacher": _kdloss_teacher, "kdloss_student": _kdloss_student, "fer": _fer,
               "igkd": _igkd, "scn": _scn}[method]  # fmt: skip
    configure_determinism(0, False)
    policy = speed_options.PRECISION_POLICIES[options.mixed_precision]
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    with distribute.scope(strategy):
        contender = builder(method, size, data_options(data_root, tfds_dir), quick, seed_models)
        contender.model = speed_options.apply_speed_options(contender.model, options)
    contender.notes.append(speed_options.describe(options))
    return contender


# --- landmarks: KD-Loss ------------------------------------------------------------------------------


def _kdloss_config(method, size, options, quick, role, **extra):
    from kdface.methods.kdloss import PRESETS, KDLossConfig

    batch = batch_for(method, size, PRESETS[size]["batch_size"], quick)
    return KDLossConfig(preset=size, batch_size=batch, **options, **extra).resolved(role)


def _family(backbone: str) -> str:
    return "resnet" if "resnet" in backbone else ("mobilenet" if "mobilenet" in backbone else "efficientnet")


def _kdloss_teacher(method, size, options, quick, seed_models):
    from kdface.methods.kdloss import build_teacher, compile_regressor
    from kdface.tasks.landmarks.training import training_data

    config = _kdloss_config(method, size, options, quick, "teacher", teacher="tough")
    data = training_data(config)
    seed_models(config.seed)
    model = compile_regressor(build_teacher(config, data.source.num_points, "tough"), config,
                              data.source.normaliser, data.steps_per_epoch)  # fmt: skip
    forward = [("teacher", lambda x: model(x, training=True))]
    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"{config.teacher_backbone} regressor", _family(config.teacher_backbone), forward, [],
                     [f"augment={config.augment}"])  # fmt: skip


def _kdloss_student(method, size, options, quick, seed_models):
    from kdface.methods.kdloss import (
        KDLossDistiller,
        _optimizer,
        build_student,
        build_teacher,
        teacher_predictions,
    )
    from kdface.metrics.keras_metrics import LandmarkNME
    from kdface.tasks.landmarks.training import load_split, training_data

    config = _kdloss_config(method, size, options, quick, "student")
    source = load_split(config, config.splits()[0])
    # train_student loads trained teachers (.keras); untrained ones of the same architecture cost the same.
    teacher_config = dataclasses.replace(config, teacher_dropout=config.teacher_dropout or 0.0)
    seed_models(config.seed + 1)
    tough = build_teacher(teacher_config, source.num_points, "tough")
    tolerant = build_teacher(teacher_config, source.num_points, "tolerant")
    cached = teacher_predictions(config, tough, tolerant, source) if config.cache_teachers else None
    data = training_data(config, extra=cached, source=source)
    seed_models(config.seed)
    student = build_student(config, source.num_points)
    model = KDLossDistiller(student, tough, tolerant, (config.main_weight, config.tough_weight,
                                                       config.tolerant_weight))  # fmt: skip
    model.compile(
        optimizer=_optimizer(config, data.steps_per_epoch), metrics=[LandmarkNME(source.normaliser)]
    )
    trained = [("student", lambda x: student(x, training=True))]
    frozen = [] if config.cache_teachers else [("tough", lambda x: tough(x, training=False)),
                                               ("tolerant", lambda x: tolerant(x, training=False))]  # fmt: skip
    notes = [f"teachers {config.teacher_backbone}, " + ("cached once per image (--cache-teachers)"
             if config.cache_teachers else "run live on every batch"), f"augment={config.augment}"]  # fmt: skip
    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"{config.student_backbone} student, 2x {config.teacher_backbone} teachers",
                     _family(config.student_backbone), trained, frozen, notes)  # fmt: skip


# --- expressions ---------------------------------------------------------------------------------------


def _expression_config(cls, method, size, options, quick, **extra):
    batch = batch_for(method, size, cls.PRESETS[size]["batch_size"], quick)
    return cls(preset=size, batch_size=batch, **options, **extra).resolved()


def _fer(method, size, options, quick, seed_models):
    from kdface.methods.fer import ExpressionClassifier, FERConfig, build_classifier
    from kdface.tasks.expressions.training import group_adam, training_data

    config = _expression_config(FERConfig, method, size, options, quick)
    data = training_data(config, erasing=config.masked_view)
    seed_models(config.seed)
    network = build_classifier(config, data.num_classes)
    model = ExpressionClassifier(network)
    model.compile(optimizer=group_adam(config, data.steps_per_epoch))
    forward = [("network", lambda x: network(x, training=True))]
    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"{config.backbone} classifier", _family(config.backbone), forward, [],
                     [f"augment {config.augment_style}, balanced sampler {config.balanced_sampler}"])  # fmt: skip


def _igkd(method, size, options, quick, seed_models):
    import tensorflow as tf

    from kdface.methods.igkd import IGKDConfig, build_igkd
    from kdface.tasks.expressions.training import group_adam, training_data

    config = _expression_config(IGKDConfig, method, size, options, quick)
    data = training_data(config, erasing=True)
    seed_models(config.seed)
    model = build_igkd(config, data.num_classes)
    model.compile(optimizer=group_adam(config, data.steps_per_epoch, model.lr_groups(config)))

    def everything(x):  # every forward pass of one step (teacher, student on both views, heads)
        labels = tf.zeros(tf.shape(x)[:1], tf.int32)
        return model.losses_of(x, x, labels, tf.constant(1.0), training=True)[0].total

    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"{config.teacher_backbone} teacher + {config.student_backbone} student (x2 views)",
                     _family(config.student_backbone), [("igkd step", everything)], [],
                     [f"augment {config.augment_style} + erased view"])  # fmt: skip


def _scn(method, size, options, quick, seed_models):
    from kdface.methods.scn import SCNConfig, build_scn
    from kdface.tasks.expressions.training import group_adam, training_data

    config = _expression_config(SCNConfig, method, size, options, quick)
    data = training_data(config, with_index=True)
    seed_models(config.seed)
    model = build_scn(config, data.num_classes, data.noise.noisy)
    model.compile(optimizer=group_adam(config, data.steps_per_epoch))
    forward = [("network", lambda x: model.network(x, training=True))]
    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"{config.backbone} + importance head", _family(config.backbone), forward, [],
                     [f"augment {config.augment_style}"])  # fmt: skip


# --- the data the contenders train on ------------------------------------------------------------------


def synthfaces_config(quick: bool):
    """The SynthFaces tree the suite trains on: small (the stream is endless; a pass needs only a few
    batches at the largest batch), with 300W images large enough that cropping is real work."""
    from kdface.data.synthfaces import SynthFacesConfig

    if quick:
        return SynthFacesConfig.tiny(w300_train=48, rafdb_train=48)
    return SynthFacesConfig.tiny(
        num_identities=24, image_size=256, w300_train=240, rafdb_train=320, rafdb_test=48
    )


def prepare_data(root, quick: bool = False) -> dict:
    """Generate the SynthFaces tree (a no-op when it is there) and prepare its TFDS records once, so the
    measurement processes find them ready."""
    import time

    from kdface.data import synthfaces

    start = time.perf_counter()
    root = Path(root)
    data_root = synthfaces.generate(root / "synthfaces", synthfaces_config(quick))
    from kdface.tasks.expressions.sources import load_expression_split
    from kdface.tasks.landmarks.sources import load_landmark_split

    landmarks = load_landmark_split("synthface", "train", data_root, root / "tfds")
    expressions = load_expression_split("synthface", "train", data_root, root / "tfds")
    return {"data_root": str(data_root), "tfds_dir": str(root / "tfds"), "w300_train": landmarks.size,
            "rafdb_train": expressions.size, "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
