"""Helpers shared by several test files: running a kdface script, the interrupted-run check, and
bit-exact variable snapshots (what a train step changed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import keras
import numpy as np
import pytest


def run_script(*args, cwd, expect=0) -> str:
    """Run ``python <args>`` (a kdface CLI) and return its stdout + stderr; assert the exit status."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert result.returncode == expect, (
        f"{args[0]}: {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


def interrupted_run_resumes_exactly(
    make_model, stream, tmp_path, *, epochs=3, steps_per_epoch=3, crash_step=5
):
    """Train ``make_model(0)`` uninterrupted; train it again, interrupted after ``crash_step`` steps
    with backups every step; resume into ``make_model(7)`` (other initial weights, so everything must
    come from the backup). Asserts bit-identical final weights; returns ``(uninterrupted, resumed)``."""
    from kdface.training import RunDirectory, RunOptions, trainer

    full = make_model(0)
    run = RunDirectory(tmp_path / "full", RunOptions(backup_every=0)).open({"name": "test"})
    trainer.fit(full, stream, None, run=run, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0)

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == crash_step:
                raise KeyboardInterrupt

    crashed = make_model(0)
    run = RunDirectory(tmp_path / "crashed", RunOptions(backup_every=1)).open({"name": "test"})
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(crashed, stream, None, run=run, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                    callbacks=[Crash()])  # fmt: skip
    resumed = make_model(7)
    run = RunDirectory(tmp_path / "crashed", RunOptions(resume=True)).open({"name": "test"})
    trainer.fit(resumed, stream, None, run=run, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0)
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    return full, resumed


def encoded_split(labels, size: int = 40, seed: int = 0, *, in_memory: bool = False):
    """An expression split of random PNG faces (whole-image boxes) with ``labels``: file-backed, as
    training reads it (the store in a folder kept for the test session), or ``in_memory``."""
    from PIL import Image

    from kdface.tasks.expressions.pipeline import FileBackedSplit, InMemorySplit

    rng = np.random.default_rng(seed)
    images = []
    for _ in labels:
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
        images.append(buf.getvalue())
    n = len(labels)
    split = InMemorySplit(np.array(images, dtype=object), np.tile([[0, 0, size, size]], (n, 1)).astype(np.float32),
                          np.array(labels, np.int32), np.array([str(i) for i in range(n)], dtype=object))  # fmt: skip
    return split if in_memory else FileBackedSplit.from_split(split, _store_dir())


_STORE_DIR = []


def _store_dir():
    """One folder of image stores per test process (stores are keyed by content), removed at exit."""
    if not _STORE_DIR:
        import atexit
        import shutil
        import tempfile

        _STORE_DIR.append(tempfile.mkdtemp(prefix="kdface-test-stores-"))
        atexit.register(shutil.rmtree, _STORE_DIR[0], True)
    return _STORE_DIR[0]


def snapshot(model) -> dict:
    """Every variable of ``model`` (BatchNorm moving statistics included), by path."""
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in model.weights}


def changed(before: dict, model) -> list[str]:
    """The paths of ``model``'s variables that differ from ``before``, bit for bit."""
    now = snapshot(model)
    return sorted(path for path, value in before.items() if not np.array_equal(now[path], value))
