"""Plain expression classifier (cross-entropy), and what every expression method shares.

``python train_teacher.py --method fer --backbone resnet18 --dataset raf-db --data-dir …`` trains a
ResNet on face crops with softmax cross-entropy: IGKD's "Baseline" row and SCN's plain-CE baseline.
``--masked-view`` trains it on IGKD's clean **and** randomly erased views (both in every batch),
the fair baseline for occlusion: the same inputs IGKD's student sees, without distillation.

Shared by the expression methods (IGKD, SCN, ...): :class:`ExpressionConfig` (data, schedule and
sampler fields with ``paper``/``demo`` presets), :func:`expression_data` (the epoch stream and the
validation set), :func:`expression_card` (the model card with the class names), the per-epoch
exponential learning-rate schedule with coupled L2 (:func:`group_adam`).

Saved models are Functional: ``(B, S, S, 3)`` RGB faces in ``[0, 1]`` -> class probabilities
``(B, K)`` in kdface's class order (:mod:`kdface.tasks.expressions.labels`), the names in the model card.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import keras
import tensorflow as tf

from kdface import training
from kdface.backbones.iresnet import build_iresnet
from kdface.backbones.resnet import build_resnet
from kdface.cli import add_config_arguments, config_from_args
from kdface.data.label_noise import LabelNoise
from kdface.data.sources import load_expression_split
from kdface.io.atomic import write_text
from kdface.tasks.expressions.pipeline import (
    ErasingConfig,
    ExpressionAugment,
    InMemorySplit,
    expression_dataset,
    expression_training_stream,
    resize_size,
)
from kdface.training import distribute
from kdface.training.distribute import per_replica_share
from kdface.training.optimizers import GroupAdam

RESNETS = {"resnet18": 18, "resnet50": 50}
IRESNETS = {
    "iresnet18": 18,
    "iresnet50": 50,
}  # insightface layout, embedding head (SCN's third-party variant)
BACKBONES = (*RESNETS, *IRESNETS)

# The originals' sizes (IGKD spec A4; SCN B3), and a budget that runs on 2 CPU cores in minutes.
# The demo's 96 px is the smallest input whose layer-4 map (3 x 3) still fits IGKD's fusion conv
# (3 x 3, stride 2, no padding).
PRESETS = {
    "paper": dict(image_size=224, batch_size=64, epochs=60, learning_rate=1e-3, lr_gamma=0.9,
                  weight_decay=1e-4, balanced_sampler=True, augment=True, augment_style="igkd"),
    "demo": dict(image_size=96, batch_size=32, epochs=6, learning_rate=1e-3, lr_gamma=0.9,
                 weight_decay=1e-4, balanced_sampler=True, augment=True, augment_style="igkd"),
}  # fmt: skip


AUGMENT_STYLES = ("igkd", "scn")


@dataclasses.dataclass
class ExpressionConfig:
    """One expression experiment. ``None`` fields take the preset's value (:data:`PRESETS`)."""

    dataset: str = "synthface"
    data_dir: str | None = None
    tfds_dir: str = "datasets/tfds"
    preset: str = "demo"
    num_classes: int | None = None  # None: the dataset's (7, or 8 with contempt)
    image_size: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    lr_gamma: float | None = None  # ExponentialLR, stepped once per epoch
    weight_decay: float | None = None  # coupled L2, as torch.optim.Adam(weight_decay=...)
    balanced_sampler: bool | None = None
    augment: bool | None = None
    augment_style: str | None = (
        None  # igkd: noise, random crop, flip; scn: one of flip/noise + random erasing
    )
    label_noise: float = (
        0.0  # fraction of training labels replaced by another class (kdface.data.label_noise)
    )
    noise_seed: int = 0
    train_split: str = "train"  # FERPlus' usual protocol trains on "train-valid"
    val_fraction: float = 0.1
    seed: int = 0
    steps_per_epoch: int | None = None
    bn_momentum: float = 0.9  # torch's 0.1
    max_memory_gb: float = 8.0  # the training split's encoded images are held in memory

    def resolved(self, presets: dict | None = None):
        presets = presets or PRESETS
        if self.preset not in presets:
            raise ValueError(f"unknown preset {self.preset!r}; known: {sorted(presets)}")
        preset = presets[self.preset]
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in values.items():
            if value is None and name in preset:
                values[name] = preset[name]
        if values.get("augment_style") not in AUGMENT_STYLES:
            raise ValueError(
                f"augment_style must be one of {AUGMENT_STYLES}, got {values.get('augment_style')!r}"
            )
        if not 0.0 <= values["label_noise"] < 1.0:
            raise ValueError(f"label_noise must be in [0, 1), got {values['label_noise']}")
        return dataclasses.replace(self, **values)


@dataclasses.dataclass
class FERConfig(ExpressionConfig):
    backbone: str = "resnet18"
    weights: str | None = None  # a backbone .npz from `python -m kdface.convert`, a kdface .keras, or None
    masked_view: bool = False  # train on the clean and the randomly erased view of every image


# --- data --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExpressionData:
    """The training stream factory, its epoch length, the validation set and what was loaded."""

    stream: typing.Callable  # (start_epoch, skip_batches) -> endless tf.data stream
    steps_per_epoch: int
    val: tf.data.Dataset | None
    class_names: tuple
    num_classes: int
    train_size: int
    class_counts: list
    skipped: list
    split: InMemorySplit | None = None  # the training split as trained on (noisy labels, if any)
    noise: LabelNoise | None = None  # the injected label noise (flipped nothing at --label-noise 0)


def _splits(config: ExpressionConfig):
    if not 0 <= config.val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {config.val_fraction}")
    base = config.train_split
    if config.val_fraction == 0:
        return base, None
    cut = int(round(100 * (1 - config.val_fraction)))
    return f"{base}[:{cut}%]", f"{base}[{cut}%:]"


def load_split(config: ExpressionConfig, split: str, on_bad_sample: str = "error"):
    return load_expression_split(config.dataset, split, config.data_dir, config.tfds_dir,
                                 on_bad_sample=on_bad_sample, num_classes=config.num_classes)  # fmt: skip


def augmentation(config: ExpressionConfig):
    """``(augment, view erasing)`` of ``config.augment_style``: IGKD's noise / random crop / flip, or
    SCN's one of flip / noise plus random erasing of the view (spec A2, B3)."""
    if not config.augment:
        return ExpressionAugment.none(), None
    if config.augment_style == "scn":
        return ExpressionAugment.scn(), ErasingConfig.scn()
    return ExpressionAugment(), None


def expression_data(
    config: ExpressionConfig, on_bad_sample: str = "error", erasing: bool = False, *, run=None, with_index: bool = False
) -> ExpressionData:  # fmt: skip
    """The epoch stream over the training split (IGKD's two views when ``erasing``) and the
    validation set held out of it (``val_fraction``; the originals selected epochs on the test set).

    ``config.label_noise`` replaces that fraction of the training labels (never the validation
    split's; :mod:`kdface.data.label_noise`); the draw is written to ``run``'s ``label_noise.csv``.
    ``with_index`` makes the inputs ``{"image", "index"}`` (SCN)."""
    train_split, val_split = _splits(config)
    source = load_split(config, train_split, on_bad_sample)
    split = InMemorySplit.load(source.dataset, int(config.max_memory_gb * 2**30))
    noise = LabelNoise.inject(
        split.keys, split.labels, config.label_noise, source.num_classes, config.noise_seed
    )
    if noise.count:
        split = dataclasses.replace(split, labels=noise.noisy)
        print(f"label noise: {noise.count} of {len(split)} training labels replaced by another class "
              f"(--label-noise {config.label_noise}, --noise-seed {config.noise_seed})")  # fmt: skip
        if run is not None and run.chief:
            write_text(run.path / "label_noise.csv", noise.csv(source.class_names))
    augment, view_erasing = augmentation(config)

    def stream(start_epoch: int = 0, skip_batches: int = 0):
        return expression_training_stream(
            split, image_size=config.image_size, batch_size=config.batch_size, num_classes=source.num_classes,
            augment=augment, erasing=ErasingConfig() if erasing else None, view_erasing=view_erasing,
            with_index=with_index, balanced=config.balanced_sampler, seed=config.seed, start_epoch=start_epoch,
            skip_batches=skip_batches,
        )  # fmt: skip

    val, skipped = None, list(source.skipped)
    if val_split is not None:
        val_source = load_split(config, val_split, on_bad_sample)
        val = expression_dataset(val_source.dataset, image_size=config.image_size, batch_size=config.batch_size,
                                 cache=True)  # fmt: skip
    steps = config.steps_per_epoch or len(split) // config.batch_size
    return ExpressionData(stream, steps, val, tuple(source.class_names), source.num_classes, len(split),
                          split.class_counts(source.num_classes).tolist(), skipped, split, noise)  # fmt: skip


# --- models --------------------------------------------------------------------------------------------


def torch_linear_init():
    """torch ``nn.Linear``'s default: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def backbone(name: str, config: ExpressionConfig, weights=None, model_name=None) -> keras.Model:
    """``[feature map, feature vector]``: a torchvision ResNet (pooled layer 4) or an insightface
    IResNet (its 512-d embedding; ArcFace input normalisation, see :mod:`kdface.backbones.iresnet`)."""
    if name in RESNETS:
        return build_resnet(RESNETS[name], image_size=config.image_size, weights=weights,
                            bn_momentum=config.bn_momentum, name=model_name or name)  # fmt: skip
    if name in IRESNETS:
        return build_iresnet(IRESNETS[name], image_size=config.image_size, weights=weights,
                             bn_momentum=config.bn_momentum, name=model_name or name)  # fmt: skip
    raise ValueError(f"unknown backbone {name!r}; known: {list(BACKBONES)}")


def probabilities_model(images, logits, name: str) -> keras.Model:
    """The deployable Functional model: images -> softmax probabilities (layer ``probabilities``)."""
    return keras.Model(images, keras.layers.Softmax(name="probabilities")(logits), name=name)


def group_adam(config: ExpressionConfig, steps_per_epoch: int, groups=()) -> GroupAdam:
    """Adam (eps 1e-8), coupled L2 ``weight_decay``, lr ``learning_rate * lr_gamma ** (epoch - 1)``."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=steps_per_epoch, decay_rate=config.lr_gamma, staircase=True
    )
    return GroupAdam(schedule, groups=groups, coupled_weight_decay=config.weight_decay)


@keras.saving.register_keras_serializable("kdface")
class ExpressionClassifier(keras.Model):
    """A backbone and a linear head trained with softmax cross-entropy.

    Training inputs are images, or ``{"image", "masked"}`` (IGKD's two views; both views go through
    the network in one batch of ``2B`` and both are classified). ``deploy_model`` maps images to
    probabilities; that is what gets saved.
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

    def train_step(self, data):
        images, labels = self._batch(*keras.utils.unpack_x_y_sample_weight(data)[:2])
        with tf.GradientTape() as tape:
            logits = self.network(images, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
            )
            # Keras sums the replicas' gradients: each replica contributes its share of the global mean.
            scaled = per_replica_share(loss)
        grads = tape.gradient(scaled, self.network.trainable_variables)
        self.optimizer.apply(grads, self.network.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, labels = self._batch(*keras.utils.unpack_x_y_sample_weight(data)[:2])
        logits = self.network(images, training=False)
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)
        )
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
    """Backbone -> pooled features -> Dense(K) logits (with bias, as torchvision's fc)."""
    features = backbone(config.backbone, config, config.weights)
    images = keras.Input((config.image_size, config.image_size, 3), name="image")
    _, pooled = features(images)
    logits = keras.layers.Dense(num_classes, kernel_initializer=torch_linear_init(), name="classifier")(
        pooled
    )
    return keras.Model(images, logits, name=name)


# --- model cards and entry points ------------------------------------------------------------------------


def expression_card(config: ExpressionConfig, method: str, role: str, data: ExpressionData, **extra) -> dict:
    """What test.py and users need to use a saved expression model: written beside it as ``<model>.json``."""
    return {
        "method": method,
        "task": "expressions",
        "role": role,
        "dataset": config.dataset,
        "class_names": list(data.class_names),
        "num_classes": data.num_classes,
        "image_size": config.image_size,
        "resize_size": resize_size(config.image_size),
        "train_class_counts": data.class_counts,
        **({"label_noise": data.noise.summary()} if data.noise is not None and data.noise.count else {}),
        "config": dataclasses.asdict(config),
        **extra,
    }


def fit_expression_model(model, data: ExpressionData, config: ExpressionConfig, run):
    monitor = "val_accuracy" if data.val is not None else "loss"
    return training.fit(model, data.stream, data.val, run=run, epochs=config.epochs, steps_per_epoch=data.steps_per_epoch,
                        monitor=monitor, mode="max" if data.val is not None else "min")  # fmt: skip


FLAG_HELP = {
    "dataset": "synthface (generated here), raf-db, ferplus or affectnet",
    "data_dir": "raw dataset folder (SynthFaces: generated there; default datasets/synthfaces/demo)",
    "tfds_dir": "where prepared TFDS records are kept",
    "preset": "paper: the original's sizes and schedule (for GPUs); demo: small and quick (CPU)",
    "num_classes": "7 basic expressions, or 8 with contempt (default: the dataset's)",
    "image_size": "square input size of the face crop (resized to 256/224 of it, then cropped)",
    "batch_size": "global batch size",
    "epochs": "training epochs",
    "learning_rate": "Adam base learning rate",
    "lr_gamma": "learning rate x this after every epoch (ExponentialLR)",
    "weight_decay": "coupled L2 on every parameter, BatchNorm's included (torch Adam's weight_decay)",
    "balanced_sampler": "draw each epoch with probability 1/class size (IGKD's ImbalancedDatasetSampler)",
    "augment": "training augmentation (see --augment-style)",
    "augment_style": "igkd: Gaussian noise, random crop and horizontal flip; scn: with p 0.5 one of flip / noise, "
    "then random erasing (p 0.5, ImageNet-mean fill)",
    "label_noise": "replace this fraction of the training labels by another class (exact count, --noise-seed); "
    "the validation split keeps its labels",
    "noise_seed": "seed of the label-noise draw (independent of --seed)",
    "train_split": "the split trained on (FERPlus: train-valid, FER2013Train + FER2013Valid, is the usual protocol)",
    "val_fraction": "fraction of the training split held out for best-epoch selection",
    "seed": "random seed (data order, augmentation, erasing, initialisation)",
    "steps_per_epoch": "steps per epoch (default: one pass over the training split)",
    "bn_momentum": "BatchNorm moving-average momentum (torch's default 0.1 = Keras 0.9)",
    "max_memory_gb": "the training split's encoded images are held in memory up to this size",
    "backbone": "resnet18 or resnet50 (torchvision), iresnet18 or iresnet50 (insightface; image size a multiple of 16)",
    "weights": "backbone initialisation: none (scratch), an .npz from `python -m kdface.convert resnet`, or a "
    "trained kdface expression model (.keras) whose backbone is taken",
    "masked_view": "train on each image's clean and randomly erased view (IGKD's inputs, no distillation)",
}


def add_teacher_arguments(parser) -> None:
    add_config_arguments(parser, FERConfig, PRESETS, help_texts=FLAG_HELP)


def noise_tag(config: ExpressionConfig) -> str:
    """``_noise20`` for ``--label-noise 0.2`` (in default model and run names), else ``""``."""
    return f"_noise{int(round(config.label_noise * 100))}" if config.label_noise else ""


def train_expression_method(config: ExpressionConfig, *, method: str, role: str, name: str, out, run_dir, options,
                            build, erasing: bool = False, with_index: bool = False, after_fit=None) -> Path:  # fmt: skip
    """What every expression method's entry point does around its model: open the run, load the data,
    ``build(data)`` the compiled model under the run's strategy, fit, then publish the best model with
    its card. ``role`` is ``"teacher"`` (-> ``models/teachers/``) or ``"student"`` (``models/students/``);
    ``after_fit(model, data, run, result) -> dict`` adds to the model card (chief only)."""
    options = options or training.RunOptions()
    folder = "models/students" if role == "student" else "models/teachers"
    out = Path(out or f"{folder}/{config.dataset}_{name}.keras")
    run = training.open_run(config, f"{method}_{role}", run_dir or f"runs/{method}/{config.dataset}_{name}", out,
                            options)  # fmt: skip
    data = expression_data(config, options.on_bad_sample, erasing=erasing, run=run, with_index=with_index)
    training.seed_models(config.seed)
    with distribute.scope(run.strategy):
        model = build(data, run)
    result = fit_expression_model(model, data, config, run)
    run.write_skipped(data.skipped)
    extra = after_fit(model, data, run, result) if after_fit is not None and run.chief else {}
    card = expression_card(config, method, role, data, train_seconds=round(result.seconds, 1), run_dir=str(run.path),
                           **extra)  # fmt: skip
    training.publish(run, out, card)
    return out


def train_classifier(config: FERConfig, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()

    def build(data, run):
        network = training.prepare_built_model(build_classifier(config, data.num_classes), run)
        model = ExpressionClassifier(network)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch))
        return model

    name = f"fer_{config.backbone}{'_masked' if config.masked_view else ''}{noise_tag(config)}"
    return train_expression_method(config, method="fer", role="classifier", name=name, out=out, run_dir=run_dir,
                                   options=options, build=build, erasing=config.masked_view)  # fmt: skip


def teacher_main(args) -> None:
    train_classifier(
        config_from_args(FERConfig, args), args.out, args.run_dir, training.run_options_from_args(args)
    )
