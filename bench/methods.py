"""Each method's model, built and compiled the way its ``train_*`` entry point does, on its real data.

The methods' ``train_*`` functions build their compiled model in a closure handed to
:func:`kdface.training.train_run` (``build(data, run)``), which the suite cannot call without training.
:func:`build` repeats those few lines per method, calling the same public build functions
(``build_teacher``/``build_student``, ``build_classifier``, ``build_igkd``, ``build_scn``, the recognition
task's ``build_backbone``/``margin_head``) and the same optimizers, on the task's ``training_data(config,
...)`` over a SynthFaces tree (recognition: its own identity-folder tree, :func:`identities_config`). Keep it in step with
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
    "fskd_teacher": "F-SKD HR teacher (CBAM-iResNet, CosFace head, SGD)",
    "fskd_student": "F-SKD multi-resolution student (CBAM-iResNet) against a frozen teacher of its architecture",
}
TASKS = {"kdloss_teacher": "landmarks", "kdloss_student": "landmarks", "fer": "expressions", "igkd": "expressions",
         "scn": "expressions", "fskd_teacher": "recognition", "fskd_student": "recognition"}  # fmt: skip
# The paper presets' batches (KD-Loss 70, expressions 64, recognition 256) do not fit a CPU step in seconds.
PAPER_BATCH = {"kdloss_teacher": 16, "kdloss_student": 16, "fer": 32, "igkd": 16, "scn": 32, "fskd_teacher": 16,
               "fskd_student": 16}  # fmt: skip
# Deployable models the inference benchmark measures: F-SKD's student is its teacher's network (same
# backbone, same embedding model), so one row stands for both.
INFERENCE_METHODS = ("kdloss_teacher", "kdloss_student", "fer", "igkd", "scn", "fskd_teacher")
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


def data_root_for(method: str, data: dict) -> str:
    """The SynthFaces tree ``method`` trains on, from :func:`prepare_data`'s result (recognition methods
    have their own identity-folder tree)."""
    return data["identities_root"] if TASKS[method] == "recognition" else data["data_root"]


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
               "igkd": _igkd, "scn": _scn, "fskd_teacher": _fskd_teacher, "fskd_student": _fskd_student}[method]  # fmt: skip
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


# --- recognition: F-SKD ------------------------------------------------------------------------------


def _recognition_config(cls, method, size, options, quick, **extra):
    from kdface.tasks.recognition.training import PRESETS

    batch = batch_for(method, size, PRESETS[size]["batch_size"], quick)
    # The F-SKD demo (make demo-fskd) and paper teachers are CBAM-iResNets (--mode cbam, the F-SKD CBAM).
    return cls(preset=size, batch_size=batch, mode="cbam", cbam="fskd", **options, **extra)


def _fskd_teacher(method, size, options, quick, seed_models):
    import tensorflow as tf

    from kdface.tasks.recognition.training import (
        FaceRecognizer,
        RecognitionConfig,
        build_backbone,
        margin_head,
        sgd,
        training_data,
    )

    # train_teacher.py --method fskd --mode cbam --down-size 0: the HR teacher (train_recognizer's build).
    config = _recognition_config(RecognitionConfig, method, size, options, quick, down_size=0)
    config = config.resolved("teacher")
    data = training_data(config)
    seed_models(config.seed)
    model = FaceRecognizer(build_backbone(config), margin_head(config, data.num_classes))
    model.compile(optimizer=sgd(config, data.steps_per_epoch))
    forward = [("network + margin head", lambda x: model.head(tf.cast(model(x, training=True), tf.float32)))]
    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"CBAM-{config.backbone} + {config.margin} head ({data.num_classes} identities)",
                     _family(config.backbone), forward, [],
                     [f"HR view (--down-size 0), {config.image_size} px"])  # fmt: skip


def _with_batch_statistics(network, images):
    """``network`` with each BatchNorm's moving statistics set to those of one training-mode pass over
    ``images``, as a trained teacher has statistics of its data. An untrained network runs in inference
    mode on mean 0 / variance 1, and a deep iResNet's activations then grow without bound (an untrained
    iResNet-50 reaches ~1e18 at stage 4), where the F-SKD cosines overflow and the first step is NaN."""
    import keras

    from kdface.backbones.contract import leaf_layers

    norms = [layer for layer in leaf_layers(network) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # moving statistics := this batch's
    network(images, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    return network


def _fskd_student(method, size, options, quick, seed_models):
    import tensorflow as tf

    from kdface.methods.fskd import FSKD, FSKD_WEIGHT
    from kdface.tasks.recognition.training import (
        LowResolutionDistiller,
        StudentConfig,
        build_backbone,
        margin_head,
        sgd,
        training_data,
    )

    # train_student.py --method fskd --down-size 1 (train_lowres_student's build). The student config is
    # what resolve_student makes of a CBAM teacher of the preset's backbone; the teacher (a .keras file
    # there, loaded frozen) is an untrained network of the same architecture (it costs the same) with the
    # BatchNorm statistics of one HR batch.
    config = _recognition_config(StudentConfig, method, size, options, quick, teacher="(untrained, built here)",
                                 down_size=1, distill_weight=FSKD_WEIGHT).resolved("student")  # fmt: skip
    data = training_data(config, pairs=True)
    seed_models(config.seed + 1)
    teacher = _with_batch_statistics(build_backbone(config), next(iter(data.stream(0, 0)))[0]["hr"])
    seed_models(config.seed)
    backbone = build_backbone(config)
    model = LowResolutionDistiller(backbone, margin_head(config, data.num_classes), teacher, FSKD,
                                   config.distill_weight)  # fmt: skip
    model.compile(optimizer=sgd(config, data.steps_per_epoch))
    trained = [("student + margin head",
                lambda x: model.head(tf.cast(backbone(x, training=True)["embedding"], tf.float32)))]  # fmt: skip
    frozen = [("teacher", lambda x: teacher(x, training=False))]
    notes = ["multi-resolution view (--down-size 1: "
             f"{'/'.join(map(str, config.resolution().choices))} px, {config.degradation} down-then-up), "
             f"F-SKD weight {config.distill_weight:g}, teacher {config.backbone} run live on the HR view"]  # fmt: skip
    return Contender(method, size, config, model, data, config.batch_size, config.image_size,
                     f"CBAM-{config.backbone} student + frozen CBAM-{config.backbone} teacher",
                     _family(config.backbone), trained, frozen, notes)  # fmt: skip


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


def identities_config(quick: bool):
    """The recognition methods' SynthFaces tree: a small ``faceid`` (identity folders of 112 px crops,
    the training identities x ``images_per_identity``; no 300W images, the fewest RAF-DB images the
    config allows). The stream is endless; a pass needs a few batches at the largest batch (64)."""
    from kdface.data.synthfaces import SynthFacesConfig

    if quick:  # 13 training identities x 4 images
        return SynthFacesConfig.faceid(num_identities=16, num_identity_folders=16, images_per_identity=4,
                                       verification_pairs=20, rafdb_train=26, rafdb_test=6)  # fmt: skip
    # 48 training identities x 8 images = 384 (6 batches of 64)
    return SynthFacesConfig.faceid(num_identities=60, num_identity_folders=60, images_per_identity=8,
                                   verification_pairs=20, rafdb_train=96, rafdb_test=24)  # fmt: skip


def prepare_data(root, quick: bool = False) -> dict:
    """Generate the SynthFaces trees (a no-op when they are there) and prepare their TFDS records once, so
    the measurement processes find them ready."""
    import time

    from kdface.data import synthfaces

    start = time.perf_counter()
    root = Path(root)
    data_root = synthfaces.generate(root / "synthfaces", synthfaces_config(quick))
    from kdface.tasks.expressions.sources import load_expression_split
    from kdface.tasks.landmarks.sources import load_landmark_split

    landmarks = load_landmark_split("synthface", "train", data_root, root / "tfds")
    expressions = load_expression_split("synthface", "train", data_root, root / "tfds")
    identities_root = synthfaces.generate(root / "synthfaces-faceid", identities_config(quick))
    from kdface.tasks.recognition.sources import load_identity_split

    identities = load_identity_split("synthface", identities_root, root / "tfds")
    return {"data_root": str(data_root), "tfds_dir": str(root / "tfds"), "w300_train": landmarks.size,
            "rafdb_train": expressions.size, "identities_root": str(identities_root),
            "identities_train": len(identities.labels), "identities": identities.num_classes,
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
