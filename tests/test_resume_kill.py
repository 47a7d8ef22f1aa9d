"""SIGKILL a real training run of every method (through its CLI), resume it, and check that it ends with
exactly the weights of an uninterrupted run (deterministic mode, a backup after every step).

Per method, the uninterrupted reference run and the run to be killed start together (their start-up and
graph tracing, mostly one core each, overlap), each with its own TFDS folder so neither reads the other's
half-prepared data. The run is killed once its backup reached a chosen step, plus a delay that lands the
kill anywhere in the next step (possibly mid-backup); ``--resume`` then finishes it.
"""

import csv
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

# method -> script, method flags, epochs, steps per epoch, kills as (backup step reached, extra delay s).
# Epochs are whole passes over SynthFaces tiny (300W: train[:95%] of 24 images; RAF-DB: 24, 19 after the 20 %
# validation hold-out), except KD-Loss': --steps-per-epoch 2 of a 3-batch pass, so epochs end inside passes
# and the resumed run must restart the stream at the pass and batch of its global step. Image sizes: the smallest that is quick and safe (ResNet-18 and vit_tiny run at 16 px;
# IGKD's fusion conv needs a 3 x 3 layer-4 map, so 96 px; the landmark student as before). SCN relabels
# from epoch 2 on, and is killed after a relabelled step: the labels variable must come from the backup.
METHODS = {
    "kdloss": ("train_student.py", ["--method", "kdloss", "--no-kd", "--image-size", "40", "--batch-size", "6",
                                    "--steps-per-epoch", "2"],
               3, 2, [(3, 0.013)]),  # mid epoch 2, in the second pass (and once during start-up, below)
    "fer": ("train_teacher.py", ["--method", "fer", "--image-size", "16", "--batch-size", "6",
                                 "--val-fraction", "0.2"], 2, 3, [(3, 0.0)]),  # just after the epoch-1 backup
    "igkd": ("train_student.py", ["--method", "igkd", "--image-size", "96", "--batch-size", "8",
                                  "--val-fraction", "0.2"], 2, 2, [(3, 0.0)]),  # during the very last step
    "scn": ("train_teacher.py", ["--method", "scn", "--image-size", "16", "--batch-size", "6", "--val-fraction",
                                 "0.2", "--label-noise", "0.2", "--relabel-epoch", "2"], 3, 3, [(5, 0.009)]),
    # ViT-SE (vit_tiny at 16 px: 2 x 2 patches), AdamW with StepLR dropping every epoch: the optimizer's
    # moments and the schedule's position come from the backup; killed mid epoch 2
    "vit-se": ("train_teacher.py", ["--method", "vit-se", "--image-size", "16", "--batch-size", "6",
                                    "--val-fraction", "0.2", "--lr-step-epochs", "1"], 2, 3, [(4, 0.011)]),
    # pairs (SynthFaces tiny's CK+ tree, train-fold0: 30 pairs, 25 after each fold's 20 % hold-out, batch 4:
    # 6 steps):
    # DoE's frozen random encoder (kept bit for bit by the backup too), killed mid epoch 1
    "doe": ("train_teacher.py", ["--method", "doe", "--dataset", "synthface-ck+", "--backbone", "resnet18",
                                 "--backbone-weights", "none", "--image-size", "16", "--batch-size", "4",
                                 "--val-fraction", "0.2"], 2, 6, [(3, 0.0)]),
    # Disentangled DoE step 1: a trained emotion encoder beside a frozen identity encoder, on the same split's
    # 25 target images; killed mid epoch 2
    "ddoe-step1": ("train_teacher.py", ["--method", "ddoe-step1", "--dataset", "synthface-ck+", "--backbone",
                                        "resnet18", "--identity-backbone", "resnet18", "--identity-weights", "none",
                                        "--image-size", "16", "--batch-size", "4", "--val-fraction", "0.2"],
                   2, 6, [(8, 0.011)]),
    # recognition: a multi-resolution CBAM network (per-sample sizes and flips drawn from the element's seed),
    # 27 identity images of 9 train identities, one of each held out for validation (best epoch by
    # val_accuracy): 18 images, batch 6, 3 steps per epoch; killed mid epoch 1
    "fskd": ("train_teacher.py", ["--method", "fskd", "--mode", "cbam", "--down-size", "1", "--image-size", "16",
                                  "--batch-size", "6", "--val-fraction", "0.2"], 2, 3, [(2, 0.011)]),
}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume_kill") / "synthfaces"
    synthfaces.generate(folder, synthfaces.SynthFacesConfig.tiny())  # 300W, RAF-DB, identity and CK+ trees
    return folder


def _command(method, data, run_dir, tfds, *extra):
    script, flags, epochs, _, _ = METHODS[method]
    return [
        sys.executable, ROOT / script, *flags, *([] if "--dataset" in flags else ["--dataset", "synthface"]),
        "--data-dir", data, "--tfds-dir", tfds,
        "--epochs", str(epochs), "--backup-every", "1", "--deterministic", "--seed", "3",
        "--out", run_dir / "published.keras", "--run-dir", run_dir, *extra,
    ]  # fmt: skip


@pytest.fixture
def start():
    """Start a CLI with its output in a log file (a pipe nobody reads could fill up and stall it); any
    process still running when the test ends (it failed) is killed."""
    processes = []

    def start(cmd, cwd, log: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        with log.open("a") as out:
            process = subprocess.Popen(
                list(map(str, cmd)), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        process.log = log
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _tail(process) -> str:
    return process.log.read_text(errors="replace")[-3000:]


def _finish(process, timeout=600) -> str:
    process.wait(timeout=timeout)
    assert process.returncode == 0, _tail(process)
    return process.log.read_text(errors="replace")


def _state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "backup" / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _kill_at(process, run_dir, step, extra_delay):
    """SIGKILL once the backup reached ``step`` (plus a delay, to land anywhere in the next steps);
    returns the backup's state after the kill."""
    deadline = time.time() + 300
    while _state(run_dir).get("global_step", -1) < step:
        if process.poll() is not None:
            pytest.fail(f"the run ended before step {step}:\n{_tail(process)}")
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"step {step} not reached in 300 s")
        time.sleep(0.005)
    time.sleep(extra_delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, _tail(process)  # killed, not finished on its own
    return _state(run_dir)


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def _backup_variable(run_dir: Path, state: dict, name: str) -> np.ndarray:
    (index,) = [i for i, path in enumerate(state["variables"]) if path.endswith(name)]
    with np.load(run_dir / "backup" / state["checkpoint"]) as saved:
        return saved[f"v{index}"]


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_sigkilled_run_resumes_to_identical_weights(method, data, tmp_path, start):
    _, _, epochs, steps_per_epoch, plan = METHODS[method]
    total = epochs * steps_per_epoch
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    reference_command = _command(method, data, reference, tmp_path / "tfds-reference")
    uninterrupted = start(reference_command, tmp_path, tmp_path / "reference.log")

    def attempt(*flags):
        log = tmp_path / f"attempt-{len(list(tmp_path.glob('attempt-*.log')))}.log"
        return start(_command(method, data, killed, tmp_path / "tfds", *flags), tmp_path, log)

    kills = []
    for i, (step, delay) in enumerate(plan):
        kills.append(_kill_at(attempt(*(("--resume",) if i else ())), killed, step, delay))
    steps_at_kill = [state["global_step"] for state in kills]
    # every kill cut real progress
    assert sorted(steps_at_kill) == steps_at_kill and steps_at_kill[-1] < total
    if method == "kdloss":
        # a kill during start-up, before the attempt trained a step, must cost nothing either
        process = attempt("--resume")
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        process.wait()
    if method == "scn":
        # relabelling had changed labels before the kill: they must come back from the backup
        noisy = [row["noisy"] for row in csv.DictReader((killed / "label_noise.csv").open())]
        at_kill = _backup_variable(killed, kills[-1], "labels")

    output = _finish(attempt("--resume"))
    assert f"resuming {killed}" in output
    _finish(uninterrupted)
    assert _state(reference)["global_step"] == total and _state(killed)["global_step"] == total

    for name in ("last.keras", "published.keras"):
        ours, theirs = _weights(killed / name), _weights(reference / name)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
    assert (killed / "best.json").read_text() == (reference / "best.json").read_text()
    # The history has one row per epoch, as the uninterrupted run's.
    rows = (killed / "history.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(epochs)]
    assert not list(killed.glob(".*tmp-*")) and not list((killed / "backup").glob(".*tmp-*"))
    if method == "scn":
        classes = json.loads((killed / "published.json").read_text())["class_names"]
        assert at_kill.tolist() != [classes.index(label) for label in noisy]
        # The final labels (the report's relabelled / restored / errors counts) and the final importance
        # weights match the uninterrupted run's.
        report = json.loads((killed / "label_report.json").read_text())
        assert report == json.loads((reference / "label_report.json").read_text())
        assert report["relabelled"] > 0
