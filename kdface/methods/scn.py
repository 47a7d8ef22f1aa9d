"""SCN, the Self-Cure Network: expression recognition under label noise (spec B).

``python train_teacher.py --method scn --dataset raf-db --data-dir … [--margin 0.15] [--relabel-epoch 10]
[--label-noise 0.2]`` (SCN has no teacher; it is trained like one).

Model (spec B1): backbone features ``x`` (ResNet-18's pooled layer 4, or IResNet-18's 512-d
embedding) -> importance ``alpha = sigmoid(w_a . x + b_a)`` (layer ``importance``) and logits
``z = W x + b`` (layer ``classifier``); the output is ``alpha * z`` (the bias is scaled too).
Loss (the official code): ``CE(alpha * z, y) + L_RR`` (:mod:`kdface.losses.scn`).

Relabelling (spec B2): from epoch ``relabel_epoch`` (1-based) on, after each optimizer step, every
sample of the batch whose ``max p - p_y > relabel_margin`` (``p = softmax(alpha * z)`` from that step's
forward pass) gets label ``argmax p`` (``--relabel-scope all``, the code), or only the samples of the
batch's low-importance group (``--relabel-scope low``, the paper). The labels live in a non-trainable
variable indexed by the sample's position in the training split, so a change is permanent (and
saved with every backup, so a resumed run continues with them); the batch's own loss has already
used the old label, and the sample sees its new label the next time it is drawn.

``--label-noise P`` replaces ``round(P * N)`` training labels (round half up) with a different class,
uniformly, drawn from ``--noise-seed`` (the original's ``generate.py`` flips each label with
probability P, so its count varies). The validation split held out of the training data keeps its
labels. The run writes which labels were flipped (``label_noise.csv``), and at the end
``label_report.json`` / ``label_report.png`` in the run directory: the final importance weights of
clean vs flipped samples (histograms), and how many flipped labels relabelling restored.

Saved model: images in ``[0, 1]`` -> ``softmax(alpha * z)`` (the original's output; ``alpha > 0`` so
the predicted class is ``argmax z``). ``test.py`` reads the layer ``importance`` to report per-image
weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from kdface.backbones import check_backbone_weights, create_backbone
from kdface.config import option
from kdface.data.label_noise import LabelNoise
from kdface.errors import ConfigError, RunError
from kdface.heads import torch_linear_init
from kdface.io import write_json
from kdface.losses.scn import importance_gap, low_importance_mask, scn_loss, scn_relabel
from kdface.methods import Method, Role, register_method
from kdface.metrics.classification import plot_weight_histograms
from kdface.tasks.expressions.pipeline import (
    ErasingConfig,
    ExpressionAugment,
    expression_dataset,
)
from kdface.tasks.expressions.training import (
    Augmentation,
    ExpressionConfig,
    group_adam,
    probabilities_model,
    register_augmentation,
    training_data,
)
from kdface.training import epoch_variable, prepare_built_model, train_run
from kdface.training.distribute import per_replica_share

RELABEL_SCOPES = ("all", "low")
IMPORTANCE_LAYER = "importance"  # the deployable model's per-image importance weight (sigmoid, (B, 1))

# SCN's ``basic_aug`` (spec B3): with p 0.5 one of flip / Gaussian noise (variance 30), no random
# crop; then ``transforms.RandomErasing(scale=(0.02, 0.25))``: p 0.5, ratio (0.3, 3.3), value 0 (the
# ImageNet mean after normalisation).
AUGMENTATION = register_augmentation("scn", Augmentation(
    ExpressionAugment(noise_probability=0.5, random_crop=False, flip=True, exclusive=True),
    ErasingConfig(probability=0.5, scale=(0.02, 0.25), ratio=(0.3, 3.3), value=0.0),
    "SCN's: with p 0.5 one of flip / Gaussian noise, then random erasing (p 0.5, ImageNet-mean fill)",
))  # fmt: skip

# The official code's values (spec B3: Adam 1e-3, x0.9 per epoch, 70 epochs, batch 64, relabel from
# epoch 10, delta_1 0.15, plain shuffling), and a budget that runs on 2 CPU cores in minutes.
PRESETS = {
    "paper": dict(ExpressionConfig.PRESETS["paper"], epochs=70, balanced_sampler=False, augment_style="scn",
                  margin=0.15, relabel_epoch=10),
    "demo": dict(ExpressionConfig.PRESETS["demo"], epochs=8, balanced_sampler=False, augment_style="scn",
                 margin=0.15, relabel_epoch=5),
}  # fmt: skip


@dataclasses.dataclass
class SCNConfig(ExpressionConfig):
    PRESETS: ClassVar[dict] = PRESETS

    backbone: str = option(
        "resnet18",
        "resnet18 (the official code) or iresnet18 (the third-party variant; image "
        "size a multiple of 16); any registered backbone works",
        backbone=True,
    )
    weights: str | None = option(
        None,
        "backbone initialisation: none (scratch), an .npz from `python -m kdface.convert "
        "resnet|iresnet` (e.g. resnet18_msceleb / ijba_res18_naive, ArcFace IResNet-18), or a "
        "trained kdface model (.keras) whose backbone is taken",
        flags=("--backbone-weights", "--weights"),
    )
    margin: float | None = option(
        None,
        "delta_1 of rank regularisation (the README advises 0.07 at batch 64; the code's default is 0.15)",
    )
    beta: float = option(
        0.7, "share of the batch in the high-importance group (the top floor(B * beta) weights)"
    )
    rank_weight: float = option(
        1.0, "loss = weighted CE + rank_weight * rank regularisation (1 in the original)"
    )
    relabel_epoch: int | None = option(None, "relabel from this (1-based) epoch on; 0 turns relabelling off")
    relabel_margin: float = option(0.2, "delta_2: relabel to argmax p when p_max - p_label exceeds it")
    relabel_scope: str = option(
        "all",
        "all: every sample of the batch (the official code); low: the low-importance group only (the paper)",
        choices=RELABEL_SCOPES,
    )
    dropout: float = option(
        0.0, "dropout on the features before the importance and class heads (the original's drop_rate)"
    )

    def check_inputs(self) -> None:
        super().check_inputs()
        check_backbone_weights(self.weights, self.backbone, "--backbone-weights")

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.beta < 1.0:
            raise ConfigError(f"beta must be in (0, 1), got {self.beta}")


# --- the model -----------------------------------------------------------------------------------------


def build_scn_network(config: SCNConfig, num_classes: int) -> keras.Model:
    """images -> ``{"importance": (B, 1), "logits": z (B, K)}`` (the weighting happens in the callers)."""
    backbone = create_backbone(config.backbone, image_size=config.image_size, weights=config.weights,
                               bn_momentum=config.bn_momentum)  # fmt: skip
    images = keras.Input((config.image_size, config.image_size, 3), name="image")
    features = backbone(images)["embedding"]
    if config.dropout:
        features = keras.layers.Dropout(config.dropout, name="dropout")(features)
    # float32 heads: importance and logits stay float32 under a mixed-precision policy
    head = dict(kernel_initializer=torch_linear_init(), dtype="float32")
    importance = keras.layers.Dense(1, activation="sigmoid", name=IMPORTANCE_LAYER, **head)(features)
    logits = keras.layers.Dense(num_classes, name="classifier", **head)(features)
    return keras.Model(images, {"importance": importance, "logits": logits}, name="scn_network")


def weighted_probabilities_model(network: keras.Model, name: str = "scn") -> keras.Model:
    """The deployable model: images -> ``softmax(alpha * z)``; the ``importance`` layer stays reachable."""
    outputs = network.output
    weighted = keras.layers.Multiply(name="weighted_logits", dtype="float32")(
        [outputs["importance"], outputs["logits"]]
    )
    return probabilities_model(network.input, weighted, name=name)


@keras.saving.register_keras_serializable("kdface")
class SCN(keras.Model):
    """SCN's training model: ``network`` (images -> ``{"importance": alpha, "logits": z}``) and the
    mutable training labels.

    Training inputs are ``{"image", "index"}`` (the sample's position in the training split); the
    label used is ``labels[index]``, not the stream's. Relabelling is gated on the 1-based epoch read
    from ``epoch_index``, which the trainer sets (so a resumed run gates it identically).
    """

    def __init__(self, network: keras.Model, num_samples: int, margin: float = 0.15,
                 beta: float = 0.7, rank_weight: float = 1.0, relabel_epoch: int = 10, relabel_margin: float = 0.2,
                 relabel_scope: str = "all", **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if relabel_scope not in RELABEL_SCOPES:
            raise ValueError(f"relabel_scope must be one of {RELABEL_SCOPES}, got {relabel_scope!r}")
        self.network = network
        self.num_samples = int(num_samples)
        self.margin, self.beta, self.rank_weight = float(margin), float(beta), float(rank_weight)
        self.relabel_epoch, self.relabel_margin = int(relabel_epoch), float(relabel_margin)
        self.relabel_scope = relabel_scope
        # One copy, identical on every replica: the step all-gathers the batch's changes and every
        # replica writes the same vector ("only_first_replica" then mirrors the first one's write).
        self.labels = self.add_weight(shape=(self.num_samples,), dtype="int32", initializer="zeros",
                                      trainable=False, aggregation="only_first_replica", name="labels")  # fmt: skip
        self.deploy_model = weighted_probabilities_model(network)
        self.epoch_index = epoch_variable(self)
        names = ("loss", "weighted_ce", "rank_regularization", "importance", "importance_gap")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.relabels = keras.metrics.Sum(name="relabels")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def set_labels(self, labels) -> None:
        """The training labels at the start (after any injected noise)."""
        labels = np.asarray(labels, np.int32)
        if labels.shape != (self.num_samples,):
            raise ValueError(f"expected {self.num_samples} labels, got shape {labels.shape}")
        self.labels.assign(labels)

    @property
    def metrics(self):
        return [*self.trackers.values(), self.relabels, self.accuracy]

    def call(self, inputs, training=False):
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        importance, logits = self._forward(images, training)
        return tf.nn.softmax(importance * logits)

    def _forward(self, images, training):
        outputs = self.network(images, training=training)
        return tf.cast(outputs["importance"], tf.float32), tf.cast(outputs["logits"], tf.float32)

    def epoch(self):
        """The 1-based epoch of the step being taken."""
        return self.epoch_index + 1

    def _relabel(self, index, labels, importance, logits, epoch):
        """Apply the relabelling rule to this batch and write the changes into ``labels`` (all replicas)."""
        probabilities = tf.nn.softmax(importance * logits)
        candidates = low_importance_mask(importance, self.beta) if self.relabel_scope == "low" else None
        new, changed = scn_relabel(labels, probabilities, self.relabel_margin, candidates)
        active = (self.relabel_epoch > 0) & (epoch >= self.relabel_epoch)
        changed &= active
        new = tf.where(changed, new, labels)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            index, new = context.all_gather(index, axis=0), context.all_gather(new, axis=0)
        self.labels.assign(tf.tensor_scatter_nd_update(self.labels.value, index[:, None], new))
        return changed

    def train_step(self, data):
        x = keras.utils.unpack_x_y_sample_weight(data)[0]
        images, index = x["image"], tf.cast(x["index"], tf.int32)
        labels = tf.gather(self.labels.value, index)
        epoch = self.epoch()  # read before the step
        with tf.GradientTape() as tape:
            importance, logits = self._forward(images, True)
            terms = scn_loss(labels, logits, importance, self.margin, self.beta, self.rank_weight)
            # Keras sums the replicas' gradients: each replica contributes its share of the mean;
            # scale_loss: float16 loss scaling (apply() unscales), a no-op otherwise.
            scaled = self.optimizer.scale_loss(per_replica_share(terms.total))
        variables = self.network.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        changed = self._relabel(index, labels, importance, logits, epoch)
        gap, _ = importance_gap(importance, self.beta)
        for name, value in zip(("loss", "weighted_ce", "rank_regularization"), terms, strict=True):
            self.trackers[name].update_state(value)
        self.trackers["importance"].update_state(tf.reduce_mean(importance))
        self.trackers["importance_gap"].update_state(gap)
        self.relabels.update_state(tf.reduce_sum(tf.cast(changed, tf.float32)))
        self.accuracy.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Validation on the held-out labels (never relabelled): the weighted CE and accuracy."""
        x, labels = keras.utils.unpack_x_y_sample_weight(data)[:2]
        images = x["image"] if isinstance(x, dict) else x
        importance, logits = self._forward(images, False)
        labels = tf.cast(labels, tf.int32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, importance * logits))
        self.trackers["loss"].update_state(loss)
        self.trackers["importance"].update_state(tf.reduce_mean(importance))
        self.accuracy.update_state(labels, logits)
        return {"loss": self.trackers["loss"].result(), "importance": self.trackers["importance"].result(),
                "accuracy": self.accuracy.result()}  # fmt: skip

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "num_samples": self.num_samples,
            "margin": self.margin,
            "beta": self.beta,
            "rank_weight": self.rank_weight,
            "relabel_epoch": self.relabel_epoch,
            "relabel_margin": self.relabel_margin,
            "relabel_scope": self.relabel_scope,
        }

    @classmethod
    def from_config(cls, config):
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def build_scn(config: SCNConfig, num_classes: int, labels) -> SCN:
    if config.weights is not None and not Path(config.weights).is_file():
        raise RunError(
            f"--backbone-weights {config.weights} does not exist (convert a PyTorch checkpoint with "
            "`python -m kdface.convert resnet|iresnet`)"
        )
    model = SCN(build_scn_network(config, num_classes), len(labels), config.margin, config.beta,
                config.rank_weight, config.relabel_epoch, config.relabel_margin, config.relabel_scope, name="scn")  # fmt: skip
    model.set_labels(labels)
    return model


# --- the label report -------------------------------------------------------------------------------------


def importance_weights(network: keras.Model, split, image_size: int, batch_size: int = 64):
    """Every training sample's importance weight, on the evaluation view (no augmentation)."""
    ds = expression_dataset(split.as_dataset(), image_size=image_size, batch_size=batch_size)
    weights = [np.asarray(network.predict_on_batch(images)["importance"]).reshape(-1) for images, _ in ds]
    return np.concatenate(weights)


def auc(positive, negative) -> float | None:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney AUC)."""
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(positive) or not len(negative):
        return None
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def label_report(weights, noise: LabelNoise, final_labels, beta: float = 0.7) -> dict:
    """What the final importance weights and labels say about the injected noise."""
    weights = np.asarray(weights, np.float64)
    final_labels = np.asarray(final_labels)
    flipped, clean = noise.flipped, ~noise.flipped
    changed = final_labels != noise.noisy
    low = weights < np.quantile(weights, 1.0 - beta) if len(weights) else np.zeros(0, bool)

    def stats(mask):
        values = weights[mask]
        if not len(values):
            return {"count": 0}
        return {"count": int(mask.sum()), "mean": float(values.mean()), "median": float(np.median(values)),
                "std": float(values.std())}  # fmt: skip

    return {
        "samples": int(len(weights)),
        "flipped": int(flipped.sum()),
        "importance_clean": stats(clean),
        "importance_flipped": stats(flipped),
        "importance_auc_clean_over_flipped": auc(weights[clean], weights[flipped]),
        "flipped_in_low_group": int((flipped & low).sum()),
        "low_group_size": int(low.sum()),
        "relabelled": int(changed.sum()),
        "flipped_restored": int((flipped & (final_labels == noise.original)).sum()),
        "flipped_changed_to_another_wrong_class": int(
            (flipped & changed & (final_labels != noise.original)).sum()
        ),
        "clean_changed_to_wrong": int((clean & changed).sum()),
        "final_label_errors": int((final_labels != noise.original).sum()),
    }


def plot_label_report(weights, noise: LabelNoise, summary: dict, path, title: str = "") -> Path:
    """Histograms of the final importance weights, clean vs flipped training labels."""
    lines = [title] if title else []
    if summary.get("importance_auc_clean_over_flipped") is not None:
        lines.append(f"AUC clean > flipped {summary['importance_auc_clean_over_flipped']:.3f}; relabelling "
                     f"restored {summary['flipped_restored']}/{summary['flipped']}")  # fmt: skip
    return plot_weight_histograms(weights, [(~noise.flipped, "clean labels"), (noise.flipped, "flipped labels")], path,
                                  "importance weight alpha (final model, evaluation view)", "\n".join(lines))  # fmt: skip


def _print_report(summary: dict) -> None:
    clean, flipped = summary["importance_clean"], summary["importance_flipped"]
    print(f"importance weights: clean labels mean {clean.get('mean', float('nan')):.3f} (n={clean['count']})"
          + (f", flipped labels mean {flipped['mean']:.3f} (n={flipped['count']}), "
             f"AUC clean > flipped {summary['importance_auc_clean_over_flipped']:.3f}" if flipped["count"] else ""))  # fmt: skip
    print(f"relabelling changed {summary['relabelled']} labels: {summary['flipped_restored']} of "
          f"{summary['flipped']} flipped labels restored, {summary['flipped_changed_to_another_wrong_class']} "
          f"flipped moved to another wrong class, {summary['clean_changed_to_wrong']} clean labels made wrong")  # fmt: skip


def label_reports_markdown(run_dirs) -> str:
    """A markdown table of the ``label_report.json`` files of SCN runs (``make demo-scn``)."""
    import json

    lines = ["| run | flipped | mean alpha clean | mean alpha flipped | AUC clean > flipped | relabelled | "
             "flipped restored | clean made wrong | label errors left |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for run_dir in run_dirs:
        path = Path(run_dir) / "label_report.json"
        if not path.is_file():
            continue
        r = json.loads(path.read_text())
        auc_value = r["importance_auc_clean_over_flipped"]
        lines.append(
            f"| {Path(run_dir).name} | {r['flipped']}/{r['samples']} | {r['importance_clean'].get('mean', float('nan')):.3f} | "
            f"{r['importance_flipped'].get('mean', float('nan')):.3f} | {'-' if auc_value is None else f'{auc_value:.3f}'} | "
            f"{r['relabelled']} | {r['flipped_restored']} | {r['clean_changed_to_wrong']} | {r['final_label_errors']} |"
        )
    return "\n".join(lines) + "\n"


# --- entry points ----------------------------------------------------------------------------------------


def train_scn(config: SCNConfig, out=None, run_dir=None, options=None) -> Path:
    config = config.resolved()

    def load_data(run):
        return training_data(config, run.options.on_bad_sample, run=run, with_index=True)

    def build(data, run):
        model = prepare_built_model(build_scn(config, data.num_classes, data.noise.noisy), run)
        model.compile(optimizer=group_adam(config, data.steps_per_epoch))
        return model

    def after_fit(model, data, run, result) -> dict:
        path = run.path / "label_report.json"
        if not result.epochs_run:  # a finished run, opened again: its report stands
            return {"label_report": json.loads(path.read_text())} if path.is_file() else {}
        weights = importance_weights(model.network, data.split, config.image_size, config.batch_size)
        summary = label_report(weights, data.noise, model.labels.numpy(), config.beta)
        write_json(path, summary)
        plot = plot_label_report(weights, data.noise, summary, run.path / "label_report.png",
                                 title=f"SCN, {config.dataset}, label noise {config.label_noise:.0%}")  # fmt: skip
        _print_report(summary)
        print(f"label report: {path}, {plot}")
        return {"label_report": summary}

    # test.py reports the per-image output named here (a layer of the saved model) beside each prediction.
    return train_run(config, method="scn", role="teacher", name=f"scn_{config.backbone}{config.noise_tag()}",
                     load_data=load_data, build=build, out=out, run_dir=run_dir, options=options,
                     after_fit=after_fit, card={"per_image_output": IMPORTANCE_LAYER})  # fmt: skip


register_method(Method(
    name="scn", task="expressions",
    summary="Self-Cure Network: importance weights, rank regularisation and relabelling under label noise",
    roles={"teacher": Role(SCNConfig, train_scn)},
    instead="SCN has no teacher and no student: python train_teacher.py --method scn",
))  # fmt: skip
