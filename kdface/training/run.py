"""The one run skeleton every method's training goes through.

open the run directory -> load the task's data -> build the model under the run's strategy -> fit
-> list skipped samples -> publish the best model with its model card. A method supplies what is
its own: how to load its data (usually its task's loader) and how to build its compiled model.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import tensorflow as tf

from kdface.io.paths import check_can_create
from kdface.training import distribute, speed
from kdface.training.trainer import RunDirectory, RunOptions, fit, open_run, publish, seed_models

MODEL_FOLDERS = {"teacher": "models/teachers", "student": "models/students"}


@dataclasses.dataclass
class TrainingData:
    """What the trainer needs from a task's data: the epoch stream, its length, the validation set,
    which validation metric picks the best epoch, the samples skipped, and the task's model-card fields."""

    stream: typing.Callable  # (data pass, skip_batches) -> endless tf.data stream
    steps_per_epoch: int  # optimizer steps per epoch
    batches_per_pass: int  # full batches in one pass over the training data (--steps-per-epoch may differ)
    val: tf.data.Dataset | None
    monitor: str
    mode: str  # "min" or "max"
    skipped: list
    card: dict  # task fields of the model card (class names, crop, points, ...)
    # which epoch's model is published: "best" (by ``monitor``) or "last" (the originals' choice where
    # they select none, e.g. F-SKD: no split is held out to select on)
    publish: str = "best"


def check_inputs(config, out: Path, run_dir) -> None:
    """Everything a run can check without writing, before its run directory is claimed: the config's
    inputs (:meth:`kdface.config.ExperimentConfig.check_inputs`: dataset, data folder, weight and
    teacher files) and where the outputs go (``--out`` a ``.keras`` file in a folder that can be
    created, ``--run-dir`` not a file)."""
    from kdface.errors import ConfigError

    check = getattr(config, "check_inputs", None)  # every ExperimentConfig has it; a bare dataclass may not
    if check is not None:
        check()
    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder; name the model file, e.g. {out / (config.dataset + '.keras')}"
        )
    if out.suffix != ".keras":
        raise ConfigError(
            f"--out {out}: a trained model is saved as a .keras file; name it {out.with_suffix('.keras')}"
        )
    check_can_create(out.parent, "--out", given=out)
    check_can_create(run_dir, "--run-dir")


def train_run(
    config,
    *,
    method: str,
    role: str,
    name: str,
    load_data: typing.Callable[[RunDirectory], TrainingData],
    build: typing.Callable,
    out=None,
    run_dir=None,
    options: RunOptions | None = None,
    after_fit: typing.Callable | None = None,
    record: dict | None = None,
    card: dict | None = None,
) -> Path:
    """Train one model of ``method``; returns the published model's path.

    ``role`` (``teacher``/``student``) picks the default output folder; ``name`` the default file and
    run-directory names (``<dataset>_<name>``). ``load_data(run)`` returns :class:`TrainingData`;
    ``build(data, run)`` the compiled ``keras.Model`` (called under the run's strategy scope);
    ``after_fit(model, data, run, result) -> dict`` adds to the model card (chief only). ``record``
    is what a resumed run must match besides the config; ``card`` is added to the model card.
    """
    options = options or RunOptions()
    out = Path(out or f"{MODEL_FOLDERS[role]}/{config.dataset}_{name}.keras")
    run_dir = run_dir or f"runs/{method}/{config.dataset}_{name}"
    check_inputs(config, out, run_dir)
    run = open_run(config, f"{method}_{name}", run_dir, out, options, **(record or {}))
    if run.chief:
        print(f"== {method} {role} {name} on {config.dataset} ({config.epochs} epochs): run directory {run.path}, "
              f"model -> {out}")  # fmt: skip
    if run.state is not None and run.state.get("finished") and _published_from(out, run):
        print(f"{run.path} finished already and {out} is its model: nothing to do")
        return out
    # The dtype policy is set before anything builds a model (a method's data loading may build or load
    # teachers) and restored afterwards; the speed options reach every method's compiled model here.
    with speed.precision_policy(options.mixed_precision):
        data = load_data(run)
        seed_models(config.seed)
        with distribute.scope(run.strategy):
            model = speed.apply_speed_options(build(data, run), options)
        if run.chief:
            print(f"speed: {speed.describe(options)}")
        result = fit(model, data.stream, data.val, run=run, epochs=config.epochs,
                     steps_per_epoch=data.steps_per_epoch, batches_per_pass=data.batches_per_pass,
                     monitor=data.monitor if data.val is not None else "loss",
                     mode=data.mode if data.val is not None else "min")  # fmt: skip
        run.write_skipped(data.skipped)
        extra = after_fit(model, data, run, result) if after_fit is not None and run.chief else {}
    model_card = {"method": method, "role": role, "dataset": config.dataset, **data.card,
                  "config": dataclasses.asdict(config), **(card or {}), "train_seconds": round(result.seconds, 1),
                  "speed": speed.card_fields(options), "run_dir": str(run.path), **extra}  # fmt: skip
    publish(run, out, model_card, which=data.publish)
    return out


def _published_from(out: Path, run: RunDirectory) -> bool:
    """Whether ``out`` (with its card) was published from ``run``."""
    from kdface.io.cards import read_model_card

    return out.is_file() and read_model_card(out).get("run_dir") == str(run.path)
