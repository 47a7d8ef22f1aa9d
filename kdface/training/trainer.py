"""The one trainer every method uses: a run directory, callbacks, ``fit``, best/last models.

A run directory holds ``config.json``, ``history.csv``, ``tensorboard/``, ``best.keras`` and
``last.keras``. The saved models are each method's *deployable* model (for a distiller, the
student alone), so they load with ``keras.saving.load_model`` and predict on images directly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import keras


def save_model_atomically(model: keras.Model, path) -> Path:
    """Write ``model`` to ``path`` via a temporary file, so a crash never leaves a truncated model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def deployable(model: keras.Model) -> keras.Model:
    """The model a user loads: ``model.deploy_model`` if the method defines one, else the model."""
    return getattr(model, "deploy_model", model)


class SaveDeployable(keras.callbacks.Callback):
    """Save the deployable model as ``last.keras`` every epoch and ``best.keras`` when ``monitor`` improves."""

    def __init__(self, run_dir, monitor="val_loss", mode="min"):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor, self.mode = monitor, mode
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        model = deployable(self.model)
        save_model_atomically(model, self.run_dir / "last.keras")
        value = logs.get(self.monitor)
        if value is None:
            return
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best = float(value)
            save_model_atomically(model, self.run_dir / "best.keras")
            (self.run_dir / "best.json").write_text(json.dumps({"epoch": epoch + 1, self.monitor: self.best}))


def write_config(run_dir, config: dict) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))


def fit(
    model: keras.Model,
    train_ds,
    val_ds,
    *,
    run_dir,
    epochs: int,
    monitor: str = "val_loss",
    mode: str = "min",
    steps_per_epoch: int | None = None,
    verbose: int | str = "auto",
    callbacks=(),
):
    """``model.fit`` with kdface's callbacks; returns the Keras ``History``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in logs and CI
    all_callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"), write_graph=False),
        SaveDeployable(run_dir, monitor=monitor if val_ds is not None else "loss", mode=mode),
        *callbacks,
    ]
    return model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=all_callbacks,
        verbose=verbose,
    )
