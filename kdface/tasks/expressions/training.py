"""What every expression method's training shares: the config fields and presets, the named
augmentations, the training data (epoch stream + validation set), the model card, the deployable
probabilities model, the cross-entropy classifier (:class:`ExpressionClassifier`, trained by
``--method fer``, ``vit-se``, ``doe`` and ``ddoe-step1/2``) and the per-epoch learning-rate schedule with coupled L2.

A method subclasses :class:`ExpressionConfig` (:class:`FoldConfig` for CK+'s subject-independent
folds, ``--fold``), loads its data with :func:`training_data` (a method whose model takes
neutral/target pairs, :data:`~kdface.tasks.expressions.pairs.PAIR_INPUT`: with
:func:`pair_training_data`) and trains through :func:`kdface.training.train_run`; ``test.py`` then
evaluates its saved model on every expression dataset. Methods that freeze an encoder create it with
:func:`create_encoder` (``--backbone-weights none`` spelt out); :class:`ExpressionClassifier`
updates trainable variables only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import keras
import tensorflow as tf

from kdface.config import ExperimentConfig, option
from kdface.data.label_noise import LabelNoise
from kdface.errors import ConfigError, KdfaceError, RunError
from kdface.io.atomic import write_text
from kdface.registry import Registry
from kdface.tasks.expressions.pairs import PAIR_INPUT, PairSplit, pair_dataset, pair_training_stream
from kdface.tasks.expressions.pipeline import (
    ErasingConfig,
    ExpressionAugment,
    FileBackedSplit,
    InMemorySplit,
    expression_dataset,
    expression_training_stream,
    resize_size,
)
from kdface.tasks.expressions.sources import (
    PairOptions,
    check_expression_inputs,
    held_out_split,
    is_pair_dataset,
    load_expression_split,
    load_pair_split,
    pair_datasets,
)
from kdface.training.distribute import per_replica_share
from kdface.training.optimizers import GroupAdam
from kdface.training.run import TrainingData

# The originals' sizes (IGKD spec A4; SCN B3), and a budget that runs on 2 CPU cores in minutes.
# The demo's 96 px is the smallest input whose ResNet layer-4 map (3 x 3) still fits IGKD's fusion
# conv (3 x 3, stride 2, no padding).
PRESETS = {
    "paper": dict(image_size=224, batch_size=64, epochs=60, learning_rate=1e-3, lr_gamma=0.9,
                  weight_decay=1e-4, balanced_sampler=True, augment=True, augment_style="standard"),
    "demo": dict(image_size=96, batch_size=32, epochs=6, learning_rate=1e-3, lr_gamma=0.9,
                 weight_decay=1e-4, balanced_sampler=True, augment=True, augment_style="standard"),
}  # fmt: skip


# --- named augmentations --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """A named training augmentation: the geometric/noise part, and erasing of the training view."""

    augment: ExpressionAugment
    view_erasing: ErasingConfig | None = None
    summary: str = ""


AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation style")


def register_augmentation(name: str, augmentation: Augmentation) -> Augmentation:
    """Methods register the augmentation of their original here, so any method can select it."""
    return AUGMENTATIONS.register(name, augmentation)


register_augmentation("standard", Augmentation(ExpressionAugment(), None,
                      "Gaussian noise (p 0.5), random crop and horizontal flip, independently"))  # fmt: skip


def augmentation_names() -> list[str]:
    from kdface.methods import METHODS

    METHODS.discover()  # methods register their originals' augmentations
    return AUGMENTATIONS.names()


# --- config ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExpressionConfig(ExperimentConfig):
    """One expression experiment. ``None`` fields take the preset's value (:data:`PRESETS`)."""

    PRESETS: ClassVar[dict] = PRESETS

    dataset: str = option("synthface", "synthface (generated here), raf-db, ferplus or affectnet")
    batch_size: int | None = option(None, "global batch size")
    learning_rate: float | None = option(None, "Adam base learning rate")
    image_size: int | None = option(
        None, "square input size of the face crop (resized to 256/224 of it, then cropped)"
    )
    num_classes: int | None = option(None, "7 basic expressions, or 8 with contempt (default: the dataset's)")
    lr_gamma: float | None = option(None, "learning rate x this after every epoch (ExponentialLR)")
    weight_decay: float | None = option(
        None, "coupled L2 on every parameter, BatchNorm's included (torch Adam's weight_decay)"
    )
    balanced_sampler: bool | None = option(
        None, "draw each epoch with probability 1/class size (an ImbalancedDatasetSampler)"
    )
    augment: bool | None = option(None, "training augmentation (see --augment-style)")
    augment_style: str | None = option(
        None,
        "named training augmentation: standard (noise, random crop, flip); "
        "methods add their originals' (e.g. igkd, scn)",
    )
    label_noise: float = option(
        0.0,
        "replace this fraction of the training labels by another class (exact count, "
        "--noise-seed); the validation split keeps its labels",
    )
    noise_seed: int = option(0, "seed of the label-noise draw (independent of --seed)")
    train_split: str = option(
        "train",
        "the split trained on (FERPlus: train-valid, FER2013Train + FER2013Valid, is the usual protocol)",
    )
    bn_momentum: float = option(0.9, "BatchNorm moving-average momentum (torch's default 0.1 = Keras 0.9)")
    max_memory_gb: float = option(
        8.0,
        "bound on what the training split holds in memory: its keys, boxes and labels (~200 bytes a "
        "sample); its encoded images are read from a file-backed store beside the prepared data",
    )

    def validate(self) -> None:
        super().validate()
        if self.augment_style is not None and self.augment_style not in augmentation_names():
            from kdface.registry import unknown_name_message

            raise ConfigError(
                unknown_name_message("--augment-style", self.augment_style, augmentation_names())
            )
        if not 0.0 <= self.label_noise < 1.0:
            raise ConfigError(f"label_noise must be in [0, 1), got {self.label_noise}")
        if not self.max_memory_gb > 0:
            raise ConfigError(f"max_memory_gb must be > 0, got {self.max_memory_gb}")

    def check_inputs(self) -> None:
        super().check_inputs()
        check_expression_inputs(self.dataset, [self.train_split], self.data_dir, self.tfds_dir, self.num_classes,
                                check_dir=True)  # fmt: skip

    def augmentation(self) -> Augmentation:
        if not self.augment:
            return Augmentation(ExpressionAugment.none())
        return AUGMENTATIONS.get(self.augment_style)

    def noise_tag(self) -> str:
        """``_noise20`` for ``--label-noise 0.2`` (in default model and run names), else ``""``."""
        return f"_noise{int(round(self.label_noise * 100))}" if self.label_noise else ""

    def pair_options(self) -> PairOptions | None:
        """The pair protocol a pair dataset is read with (``None``: the default
        :class:`~kdface.tasks.expressions.sources.PairOptions`); :class:`FoldConfig` sets it."""
        return None


# --- data -----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExpressionData(TrainingData):
    """:class:`TrainingData` plus what expression methods need: the classes, the training split as
    trained on (noisy labels, if any) and the injected label noise."""

    class_names: tuple = ()
    num_classes: int = 0
    train_size: int = 0
    split: FileBackedSplit | InMemorySplit | PairSplit | None = None
    noise: LabelNoise | None = None


def load_split(config: ExpressionConfig, split: str, on_bad_sample: str = "error"):
    return load_expression_split(config.dataset, split, config.data_dir, config.tfds_dir, on_bad_sample=on_bad_sample,
                                 num_classes=config.num_classes, pair_options=config.pair_options())  # fmt: skip


def image_store_dir(config: ExpressionConfig) -> Path:
    """Where training splits' encoded images are stored for reading by index (keyed by content)."""
    return Path(config.tfds_dir) / "kdface-image-stores"


def training_data(config: ExpressionConfig, on_bad_sample: str = "error", *, erasing: bool = False, run=None,
                  with_index: bool = False) -> ExpressionData:  # fmt: skip
    """The epoch stream over the training split (two views, clean and erased, when ``erasing``) and the
    validation set held out of it (``val_fraction``; the originals selected epochs on the test set).

    ``config.label_noise`` replaces that fraction of the training labels (never the validation
    split's; :mod:`kdface.data.label_noise`); the draw is written to ``run``'s ``label_noise.csv``.
    ``with_index`` makes the inputs ``{"image", "index"}``: the sample's position in the training
    split, for per-sample state kept in a model variable (so backups carry it).

    The training split's encoded images are read from a file-backed store (:func:`image_store_dir`,
    written on first use); only its keys, boxes and labels are held in memory.
    """
    train_split, val_split = config.splits(config.train_split)
    source = load_split(config, train_split, on_bad_sample)
    split = FileBackedSplit.load(source.dataset, image_store_dir(config), int(config.max_memory_gb * 2**30))
    split, noise = _with_label_noise(config, split, source, run)
    augmentation = config.augmentation()

    def stream(start_epoch: int = 0, skip_batches: int = 0):
        return expression_training_stream(
            split, image_size=config.image_size, batch_size=config.batch_size, num_classes=source.num_classes,
            augment=augmentation.augment, erasing=ErasingConfig() if erasing else None,
            view_erasing=augmentation.view_erasing, with_index=with_index, balanced=config.balanced_sampler,
            seed=config.seed, start_epoch=start_epoch, skip_batches=skip_batches,
        )  # fmt: skip

    val, skipped = None, list(source.skipped)
    if val_split is not None:
        val_source = load_split(config, val_split, on_bad_sample)
        val = expression_dataset(val_source.dataset, image_size=config.image_size, batch_size=config.batch_size,
                                 cache=True)  # fmt: skip
    card = None
    if is_pair_dataset(config.dataset):  # the targets of pairs: test.py reads the test fold the same way
        card = {"pair_options": dataclasses.asdict(config.pair_options() or PairOptions())}
    return _expression_data(config, source, split, noise, stream, val, skipped, card)


def _with_label_noise(config: ExpressionConfig, split, source, run):
    """``config.label_noise`` injected into ``split``'s labels (a copy), the draw written to ``run``."""
    noise = LabelNoise.inject(
        split.keys, split.labels, config.label_noise, source.num_classes, config.noise_seed
    )
    if noise.count:
        split = dataclasses.replace(split, labels=noise.noisy)
        print(f"label noise: {noise.count} of {len(split)} training labels replaced by another class "
              f"(--label-noise {config.label_noise}, --noise-seed {config.noise_seed})")  # fmt: skip
        if run is not None and run.chief:
            write_text(run.path / "label_noise.csv", noise.csv(source.class_names))
    return split, noise


def _expression_data(config: ExpressionConfig, source, split, noise, stream, val, skipped,
                     card: dict | None = None) -> ExpressionData:  # fmt: skip
    card = {
        "task": "expressions",
        "class_names": list(source.class_names),
        "num_classes": source.num_classes,
        "image_size": config.image_size,
        "resize_size": resize_size(config.image_size),
        "train_class_counts": split.class_counts(source.num_classes).tolist(),
        **({"label_noise": noise.summary()} if noise.count else {}),
        **(card or {}),
    }
    return ExpressionData(
        stream=stream, steps_per_epoch=config.steps_per_epoch or len(split) // config.batch_size,
        batches_per_pass=len(split) // config.batch_size, val=val,
        monitor="val_accuracy", mode="max", skipped=skipped, card=card, class_names=tuple(source.class_names),
        num_classes=source.num_classes, train_size=len(split), split=split, noise=noise,
    )  # fmt: skip


def pair_training_data(config: ExpressionConfig, on_bad_sample: str = "error", *, run=None,
                       options: PairOptions | None = None) -> ExpressionData:  # fmt: skip
    """:func:`training_data` for a model taking neutral/target pairs (``(B, 2, S, S, 3)``,
    :data:`~kdface.tasks.expressions.pairs.PAIR_INPUT`): ``config.dataset`` is a pair dataset
    (``ck+``, ``synthface-ck+``) and ``config.train_split`` names the folds (``train-fold3``);
    ``options`` pick the protocol (:class:`~kdface.tasks.expressions.sources.PairOptions`; default
    ``config.pair_options()``, e.g. neutral pairs with ``--neutral-class``).

    Both images of a pair share one augmentation draw (:mod:`kdface.tasks.expressions.pairs`). The
    validation set is ``val_fraction`` of each training fold's pairs, so its subjects are training
    subjects too; the test fold's subjects are in neither. The card records ``"input": "pair"``, the
    folds trained on and the protocol options.
    """
    train_split, val_split = config.splits(config.train_split)
    options = options or config.pair_options()

    def load(split: str):
        return load_pair_split(config.dataset, split, config.data_dir, config.tfds_dir,
                               on_bad_sample=on_bad_sample, options=options)  # fmt: skip

    source = load(train_split)
    split = PairSplit.load(source.dataset, image_store_dir(config), int(config.max_memory_gb * 2**30))
    split, noise = _with_label_noise(config, split, source, run)
    augmentation = config.augmentation()

    def stream(start_epoch: int = 0, skip_batches: int = 0):
        return pair_training_stream(
            split, image_size=config.image_size, batch_size=config.batch_size, num_classes=source.num_classes,
            augment=augmentation.augment, balanced=config.balanced_sampler, seed=config.seed,
            start_epoch=start_epoch, skip_batches=skip_batches,
        )  # fmt: skip

    val, skipped = None, list(source.skipped)
    if val_split is not None:
        val = pair_dataset(load(val_split).dataset, image_size=config.image_size, batch_size=config.batch_size,
                           cache=True)  # fmt: skip
    card = {
        **PAIR_INPUT.card(),
        "pair_folds": list(source.folds),
        "pair_options": dataclasses.asdict(source.options),
    }
    return _expression_data(config, source, split, noise, stream, val, skipped, card)


# --- models ---------------------------------------------------------------------------------------------


def probabilities_model(images, logits, name: str) -> keras.Model:
    """The deployable Functional model: images -> softmax probabilities (layer ``probabilities``)."""
    return keras.Model(images, keras.layers.Softmax(name="probabilities", dtype="float32")(logits), name=name)


@keras.saving.register_keras_serializable("kdface")
class ExpressionClassifier(keras.Model):
    """A network (images -> logits) trained with softmax cross-entropy.

    Training inputs are images, pairs (:data:`~kdface.tasks.expressions.pairs.PAIR_INPUT`), or
    ``{"image", "masked"}`` (the clean and the erased view; both go through the network in one batch
    of ``2B`` and both are classified). The gradient is taken for the network's **trainable**
    variables only, so a frozen encoder inside it (:func:`kdface.backbones.freeze`) keeps its weights
    and BatchNorm statistics bit for bit. ``deploy_model`` (what gets saved) defaults to the network's
    probabilities; a method passes another view of the same layers when it trains on other inputs
    than it deploys (a single-image model trained on the targets of pairs).
    """

    def __init__(self, network: keras.Model, deploy_model: keras.Model | None = None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self._custom_deploy = deploy_model is not None
        self.deploy_model = deploy_model or probabilities_model(
            network.input, network.output, name=network.name
        )
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
        if self._custom_deploy:  # a view of shared layers: serialising it apart would duplicate the weights
            raise NotImplementedError("an ExpressionClassifier with its own deploy_model is not serialisable; "
                                      "save its deploy_model (what train_run saves)")  # fmt: skip
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network)}

    @classmethod
    def from_config(cls, config):
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def group_adam(config: ExpressionConfig, steps_per_epoch: int, groups=()) -> GroupAdam:
    """Adam (eps 1e-8), coupled L2 ``weight_decay``, lr ``learning_rate * lr_gamma ** (epoch - 1)``."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps=steps_per_epoch, decay_rate=config.lr_gamma, staircase=True
    )
    return GroupAdam(schedule, groups=groups, coupled_weight_decay=config.weight_decay)


# --- CK+'s folds ------------------------------------------------------------------------------------------

FOLDS = PairOptions().folds  # the pair datasets' subject-independent cross-validation


@dataclasses.dataclass
class FoldConfig(ExpressionConfig):
    """:class:`ExpressionConfig` with ``--fold k``: on a pair dataset (``ck+``, ``synthface-ck+``) the
    training split is ``train-fold<k>``, every fold but ``k`` (the validation share is held out of
    those folds' pairs), and ``test.py`` tests on fold ``k`` by default (the one the card's
    ``train_split`` held out, :func:`~kdface.tasks.expressions.sources.held_out_split`). Other datasets
    have no folds: ``--fold`` stays 0 and ``--train-split`` is taken as given."""

    dataset: str = option(
        "synthface-ck+",
        "expression dataset: ck+ or synthface-ck+ (neutral/target pairs of one subject, "
        "subject-independent folds; single-image models train on their target images)",
    )
    fold: int = option(
        0,
        f"test fold of the pair datasets' subject-independent {FOLDS}-fold cross-validation: "
        "training uses the other folds (train-fold<k>), test.py tests on this one",
    )
    neutral_class: bool = option(
        False,
        "CK+'s optional 8th class: add neutral pairs (each sequence's onset with the next sequence's "
        "onset of the same subject, labelled neutral), so the neutral output is trained and tested "
        "(pair datasets only; single-image models get those onsets as neutral images)",
    )

    def pair_options(self) -> PairOptions:
        return PairOptions(neutral_pairs=self.neutral_class)

    def resolved(self, role: str | None = None):
        config = super().resolved(role)
        if is_pair_dataset(config.dataset):
            if config.train_split == "train":
                config.train_split = f"train-fold{config.fold}"
            elif config.fold and held_out_split(config.train_split) != f"test-fold{config.fold}":
                raise ConfigError(f"--fold {config.fold} and --train-split {config.train_split} name different "
                                  "training folds; give one of them")  # fmt: skip
        return config

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.fold < FOLDS:
            raise ConfigError(f"--fold {self.fold}: the folds are 0..{FOLDS - 1}")
        if self.fold and not is_pair_dataset(self.dataset):
            raise ConfigError(f"--fold {self.fold}: {self.dataset} has no folds (the pair datasets "
                              f"{', '.join(pair_datasets())} have)")  # fmt: skip
        if self.neutral_class and not is_pair_dataset(self.dataset):
            raise ConfigError(f"--neutral-class: {self.dataset} has no neutral pairs (the pair datasets "
                              f"{', '.join(pair_datasets())} have; its own classes are used)")  # fmt: skip

    def neutral_tag(self) -> str:
        """``_neutral`` with ``--neutral-class`` (in default model and run names), else ``""``."""
        return "_neutral" if self.neutral_class else ""

    def fold_tag(self) -> str:
        """``_fold3`` for a model tested on fold 3 of a pair dataset (in default names), else ``""``."""
        held = held_out_split(self.train_split) if is_pair_dataset(self.dataset) else None
        return f"_fold{held.removeprefix('test-fold')}" if held and held.startswith("test-fold") else ""


def require_pair_dataset(config: ExpressionConfig, method: str) -> None:
    """A :class:`ConfigError` unless ``config.dataset`` holds neutral/target pairs."""
    if not is_pair_dataset(config.dataset):
        raise ConfigError(f"--method {method} compares a neutral and a target face of one person: --dataset "
                          f"must be a pair dataset ({', '.join(pair_datasets())}), not {config.dataset}")  # fmt: skip


# --- frozen encoders --------------------------------------------------------------------------------------

NO_WEIGHTS = "none"  # --backbone-weights none: random initial weights, spelt out


def encoder_weights(weights: str | None) -> str | None:
    """A weights flag's value as :func:`~kdface.backbones.create_backbone` takes it (``none`` -> ``None``)."""
    return None if weights in (None, NO_WEIGHTS) else weights


def require_frozen_weights(weights: str | None, flag: str, what: str, hint: str) -> None:
    """A :class:`ConfigError` when a frozen encoder's weights were not given: a frozen random encoder
    teaches nothing, so ``none`` must be asked for explicitly. ``hint`` says where good weights come from."""
    if weights is None:
        raise ConfigError(f"{flag} is needed: {what} is frozen, so it must start from trained weights ({hint}); "
                          f"`{flag} {NO_WEIGHTS}` freezes random ones")  # fmt: skip


def check_encoder_weights(weights: str | None, backbone: str, flag: str) -> None:
    from kdface.backbones import check_backbone_weights

    check_backbone_weights(encoder_weights(weights), backbone, flag)


def create_encoder(backbone: str, *, image_size: int, weights: str | None, bn_momentum: float | None,
                   flag: str) -> keras.Model:  # fmt: skip
    """:func:`~kdface.backbones.create_backbone` with a weights flag's value (``none`` spelt out); an
    ImageNet download that fails is a :class:`~kdface.errors.RunError` naming ``flag`` and the offline
    alternatives, not a traceback."""
    from kdface.backbones import create_backbone

    weights = encoder_weights(weights)
    try:
        return create_backbone(backbone, image_size=image_size, weights=weights, bn_momentum=bn_momentum)
    except Exception as exc:
        if weights != "imagenet" or isinstance(exc, KdfaceError):
            raise
        raise RunError(f"{flag} imagenet: Keras could not fetch {backbone}'s ImageNet weights ({exc}); connect "
                       "once (they are cached in ~/.keras/models), or give a weights file") from exc  # fmt: skip
