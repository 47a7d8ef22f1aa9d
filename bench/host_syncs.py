"""What the trainer's per-batch work costs, and what --steps-per-execution saves (docs/speed.md).

* the NaN guard's and the step-backup check's time per batch (each callback's ``on_train_batch_end``
  timed inside ``trainer.fit``; backups never due), next to the step time, on the KD-Loss demo
  student (MobileNetV2, 64 px, batch 16);
* ms per step with 1 and N steps per execution, on a tiny model (host overhead dominates) and on that
  student.

Run: PYTHONPATH=. python bench/host_syncs.py [--steps 60]
Timings on a shared machine are noisy: compare medians, run it twice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdface.tasks.landmarks.training import build_regressor
from kdface.training import RunDirectory, RunOptions, trainer

TIMINGS: dict[str, list] = {}


def _timed(name, method):
    def wrapper(self, batch, logs=None):
        start = time.perf_counter()
        method(self, batch, logs)
        TIMINGS.setdefault(name, []).append(time.perf_counter() - start)

    return wrapper


class StepClock(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        TIMINGS.setdefault("step", []).append(time.perf_counter() - self.start)


def _fit(model, x, y, steps, folder, callbacks=()):
    run = RunDirectory(folder, RunOptions(backup_every=1_000_000)).open({"bench": 1})
    stream = lambda start_pass, skip: tf.data.Dataset.from_tensors((x, y)).repeat()  # noqa: E731
    trainer.fit(
        model, stream, None, run=run, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=list(callbacks)
    )


def student():
    return build_regressor("mobilenet_v2", 68, 64, name="student")


def tiny():
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8)(inputs)))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(16, 64, 64, 3)).astype("float32")
    targets = rng.uniform(size=(16, 136)).astype("float32")
    trainer.StopOnNonFiniteLoss.on_train_batch_end = _timed(
        "NaN guard", trainer.StopOnNonFiniteLoss.on_train_batch_end
    )
    trainer.TrainingBackup.on_train_batch_end = _timed(
        "backup check", trainer.TrainingBackup.on_train_batch_end
    )
    with tempfile.TemporaryDirectory() as folder:
        keras.utils.set_random_seed(0)
        model = student()
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        _fit(model, images, targets, args.steps, Path(folder) / "callbacks", [StepClock()])
        print("| per batch | median (us) | mean (us) |\n|---|---:|---:|")
        for name in ("NaN guard", "backup check", "step"):
            values = np.array(TIMINGS[name][5:]) * 1e6  # the first steps trace
            print(f"| {name} | {np.median(values):.1f} | {values.mean():.1f} |")

        print("\n| model | steps per execution | ms per step |\n|---|---:|---:|")
        tiny_data = rng.normal(size=(8, 6)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
        for name, make, (x, y), steps, choices in (("tiny dense", tiny, tiny_data, 256, (1, 8)),
                                                    ("KD-Loss demo student", student, (images, targets), 40, (1, 4))):  # fmt: skip
            for per_execution in choices:
                model = make()
                model.compile(keras.optimizers.Adam(1e-3), "mse", steps_per_execution=per_execution)
                _fit(model, x, y, 2 * per_execution, Path(folder) / f"{name}-{per_execution}-warm")  # traces
                start = time.perf_counter()
                _fit(model, x, y, steps, Path(folder) / f"{name}-{per_execution}")
                print(f"| {name} | {per_execution} | {(time.perf_counter() - start) / steps * 1e3:.2f} |")


if __name__ == "__main__":
    main()
