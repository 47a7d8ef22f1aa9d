"""Durability guarantees of the shared trainer and writers: atomic files, exact backups, NaN stops,
run-directory policy, output checks."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import namedtuple

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdface.errors import NonFiniteLossError, RunError
from kdface.io.atomic import atomic_path, remove_stale_temporaries, write_bytes
from kdface.training import trainer
from kdface.training.trainer import RunDirectory, RunOptions

# --------------------------------------------------------------------------- atomic files


def test_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_sigkill_mid_write_never_leaves_a_truncated_file(tmp_path):
    """A writer killed while writing 64 MiB in chunks: the destination holds the old content, and the
    leftover temporary is hidden and removed by the next run."""
    target = tmp_path / "big.bin"
    target.write_bytes(b"old content")
    script = textwrap.dedent(f"""
        import sys, time
        from kdface.io.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as f:
                for _ in range(64):
                    f.write(b"x" * 2**20); f.flush(); print("chunk", flush=True); time.sleep(0.02)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(10):
        process.stdout.readline()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert target.read_bytes() == b"old content"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert leftovers and all(p.name.startswith(".big.tmp-") for p in leftovers)
    assert remove_stale_temporaries(tmp_path) == len(leftovers)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


# --------------------------------------------------------------------------- backups


def _tiny_model(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.5)(x)  # its seed-generator state must be restored too
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


def _data(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def test_backup_restores_weights_optimizer_and_rng_exactly(tmp_path):
    x, y = _data()
    model = _tiny_model(1)
    for _ in range(3):
        model.train_on_batch(x, y)
    trainer.save_backup(model, tmp_path, epoch=0, step=3, extra={"best": None})
    for _ in range(4):
        model.train_on_batch(x, y)
    expected = model.get_weights()

    other = _tiny_model(2)  # different initial weights and RNG
    other.train_on_batch(x, y)  # builds the optimizer and advances its own state
    state = trainer.read_state(tmp_path)
    assert state["global_step"] == 3 and state["epoch"] == 0 and state["step"] == 3
    trainer.restore_backup(other, tmp_path, state)
    for _ in range(4):
        other.train_on_batch(x, y)
    for a, b in zip(other.get_weights(), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_backup_of_another_model_is_refused(tmp_path):
    model = _tiny_model(1)
    model.train_on_batch(*_data())
    trainer.save_backup(model, tmp_path, epoch=0, step=1, extra={})
    inputs = keras.Input((6,))
    different = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    different.compile("adam", "mse")
    with pytest.raises(RunError, match="does not match this model"):
        trainer.restore_backup(different, tmp_path, trainer.read_state(tmp_path))


def test_only_the_newest_checkpoint_is_kept(tmp_path):
    model = _tiny_model(1)
    x, y = _data()
    for step in range(1, 4):
        model.train_on_batch(x, y)
        trainer.save_backup(model, tmp_path, epoch=0, step=step, extra={})
    assert [p.name for p in tmp_path.glob("step-*.npz")] == ["step-0000000003.npz"]


# --------------------------------------------------------------------------- fit: NaN, resume policy


def _stream(bad_step=None, batch=4):
    """An epoch-indexed stream whose batch number ``bad_step`` (0-based, global) holds a NaN target."""
    x, y = (tf.constant(a) for a in _data(64))
    bad = -1 if bad_step is None else bad_step

    def batch_at(i):
        rows = tf.cast((i * batch) % 60, tf.int32) + tf.range(batch)
        target = tf.gather(y, rows)
        return tf.gather(x, rows), tf.where(i == bad, tf.constant(np.nan, tf.float32), target)

    def stream(start_epoch, skip):
        return tf.data.Dataset.counter(start_epoch * 4 + skip).map(batch_at)

    return stream


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_state(tmp_path):
    model = _tiny_model(0)
    run = RunDirectory(tmp_path / "run", RunOptions(backup_every=2)).open({"name": "nan"})
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(model, _stream(bad_step=6), None, run=run, epochs=3, steps_per_epoch=4, verbose=0)
    assert info.value.step == 7  # the 7th optimizer step saw the NaN batch
    assert "step 7" in str(info.value) and "backup at step 6" in str(info.value)
    state = trainer.read_state(run.backup_dir)
    assert state["global_step"] == 6 and not state.get("finished")
    with np.load(run.backup_dir / state["checkpoint"]) as saved:
        assert all(np.all(np.isfinite(saved[k])) for k in saved.files)
    last = keras.saving.load_model(run.path / "last.keras")  # from epoch 1, before the NaN
    assert all(np.all(np.isfinite(w)) for w in last.get_weights())


def test_fit_resumes_mid_epoch_to_the_same_weights(tmp_path):
    full = _tiny_model(0)
    run = RunDirectory(tmp_path / "full", RunOptions(backup_every=0)).open({"name": "r"})
    trainer.fit(full, _stream(), None, run=run, epochs=3, steps_per_epoch=4, verbose=0)

    # The same run, stopped by an exception after step 6 (epoch 2, batch 2) and resumed.
    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 6:
                raise KeyboardInterrupt

    crashed = _tiny_model(0)
    run = RunDirectory(tmp_path / "crashed", RunOptions(backup_every=1)).open({"name": "r"})
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(crashed, _stream(), None, run=run, epochs=3, steps_per_epoch=4, verbose=0,
                    callbacks=[Crash()])  # fmt: skip
    assert trainer.read_state(run.backup_dir)["step"] == 2
    resumed = _tiny_model(5)
    run = RunDirectory(tmp_path / "crashed", RunOptions(resume=True)).open({"name": "r"})
    trainer.fit(resumed, _stream(), None, run=run, epochs=3, steps_per_epoch=4, verbose=0)
    for a, b in zip(resumed.get_weights(), full.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert trainer.read_state(run.backup_dir)["finished"]


def test_run_directory_needs_resume_or_restart(tmp_path):
    path = tmp_path / "run"
    RunDirectory(path).open({"lr": 0})
    (path / "label_noise.csv").write_text("key,label\n")  # written while loading data, before fit
    # a run that never trained a step (its inputs failed after the folder was claimed) is taken over
    RunDirectory(path).open({"lr": 1})
    assert json.loads((path / "config.json").read_text())["config"] == {"lr": 1}
    assert not (path / "label_noise.csv").exists()
    (path / "history.csv").write_text("epoch,loss\n")  # fit began: a run, even before its first backup
    with pytest.raises(RunError, match="no backup yet.*--resume.*--restart"):
        RunDirectory(path).open({"lr": 1})
    with pytest.raises(RunError, match="lr: 1 -> 2"):
        RunDirectory(path, RunOptions(resume=True)).open({"lr": 2})
    assert RunDirectory(path, RunOptions(resume=True)).open({"lr": 1}).state is None  # nothing backed up yet
    RunDirectory(path, RunOptions(restart=True)).open({"lr": 2})
    assert not (path / "history.csv").exists()
    assert json.loads((path / "config.json").read_text())["config"] == {"lr": 2}
    with pytest.raises(RunError, match="contradict"):
        RunOptions(resume=True, restart=True)


def test_foreign_folders_are_never_used_or_deleted(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    for options in (RunOptions(), RunOptions(restart=True), RunOptions(resume=True)):
        with pytest.raises(RunError, match="holds no kdface run"):
            RunDirectory(tmp_path, options).open({})
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_unwritable_output_is_reported_before_anything_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(RunError, match="cannot write to"):
        RunDirectory(blocker / "run").open({})
    with pytest.raises(RunError, match="cannot write to"):
        trainer.check_writable(blocker / "models")


def test_too_little_disk_is_reported_before_training(tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(trainer.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 2**20, 2**20))
    model = _tiny_model(0)
    run = RunDirectory(tmp_path / "run").open({})
    with pytest.raises(RunError, match=r"too little disk space .* 1 MiB free, this run needs about \d+ MiB"):
        trainer.fit(model, _stream(), None, run=run, epochs=1, steps_per_epoch=2, verbose=0)
    assert not (run.path / "last.keras").exists()


@pytest.mark.slow
def test_cli_reports_an_unwritable_run_dir_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    started = time.time()
    result = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "..", "train_teacher.py"), "--teacher", "tough",
         "--run-dir", str(blocker / "run"), "--out", str(tmp_path / "m.keras")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write to")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "datasets").exists()  # refused before any data was prepared
    assert time.time() - started < 120
