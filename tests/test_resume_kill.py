"""SIGKILL a real training run at several points, resume it each time, and check that it ends with
exactly the weights of an uninterrupted run (deterministic mode)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from kdface.data import synthfaces

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, BATCH = 3, 8


def _command(work, data, run_dir, *extra):
    return [
        sys.executable, ROOT / "train_student.py", "--method", "kdloss", "--no-kd", "--dataset", "synthface",
        "--data-dir", data, "--tfds-dir", work / "tfds", "--image-size", "40", "--batch-size", str(BATCH),
        "--epochs", str(EPOCHS), "--backup-every", "1", "--deterministic", "--seed", "3",
        "--out", run_dir / "published.keras", "--run-dir", run_dir, *extra,
    ]  # fmt: skip


def _start(cmd, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _global_step(run_dir: Path):
    try:
        return json.loads((run_dir / "backup" / "state.json").read_text()).get("global_step", 0)
    except (FileNotFoundError, ValueError):
        return -1


def _kill_at(process, run_dir, step, extra_delay):
    """SIGKILL once the backup reached ``step`` (plus a delay, to land anywhere in the next steps)."""
    deadline = time.time() + 300
    while _global_step(run_dir) < step:
        if process.poll() is not None:
            pytest.fail(f"the run ended before step {step}:\n{process.stdout.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"step {step} not reached in 300 s")
        time.sleep(0.005)
    time.sleep(extra_delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return _global_step(run_dir)


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


@pytest.mark.slow
def test_sigkilled_runs_resume_to_identical_weights(tmp_path):
    data = tmp_path / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny(w300_train=100))

    reference = tmp_path / "reference"
    done = subprocess.run(list(map(str, _command(tmp_path, data, reference))), cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps_per_epoch = 95 // BATCH  # train[:95%] of 100 images, full batches
    total = EPOCHS * steps_per_epoch

    killed = tmp_path / "killed"
    # Kill points (backup step reached, extra delay): during epoch 1, mid epoch 2 just after a
    # backup began, on an epoch boundary, and in the last epoch.
    plan = [(2, 0.0), (steps_per_epoch + 3, 0.013), (2 * steps_per_epoch, 0.0), (total - 3, 0.031)]
    kills = []
    for attempt, (step, delay) in enumerate(plan):
        flags = ("--resume",) if attempt else ()
        process = _start(_command(tmp_path, data, killed, *flags), tmp_path)
        kills.append(_kill_at(process, killed, step, delay))
    # A kill during start-up, before this attempt trained a step, must cost nothing either.
    process = _start(_command(tmp_path, data, killed, "--resume"), tmp_path)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()

    final = _start(_command(tmp_path, data, killed, "--resume"), tmp_path)
    output, _ = final.communicate(timeout=600)
    assert final.returncode == 0, output[-3000:]
    assert "resuming" in output
    assert sorted(kills) == kills and kills[-1] < total  # every kill interrupted real progress

    for name in ("last.keras", "published.keras"):
        ours, theirs = _weights(killed / name), _weights(reference / name)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    # The history has one row per epoch, as the uninterrupted run's.
    rows = (killed / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(EPOCHS)]
    assert not list(killed.glob(".*tmp-*")) and not list((killed / "backup").glob(".*tmp-*"))
