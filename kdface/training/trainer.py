"""The one trainer every method uses: a run directory, resumable ``fit``, best/last models.

A run directory holds ``config.json``, ``history.csv``, ``tensorboard/``, ``best.keras``,
``last.keras``, ``best.json``, ``skipped_samples.json`` (when samples were skipped) and ``backup/``
(the resumable training state). The saved models are each method's *deployable* model (for a
distiller, the student alone), so they load with ``keras.saving.load_model`` and predict on images.

Resume. ``backup/`` holds ``state.json`` and one ``step-<global step>.npz`` with every model and
optimizer variable, the RNG seed-generator states (Dropout) included, written every
``backup_every`` steps and at each epoch end. Every file is written to a temporary name and renamed,
and ``state.json`` is renamed last, so a kill at any instant leaves a complete earlier state. A
resumed run restores the variables and starts the epoch-indexed data stream
(:mod:`kdface.data.streams`) at the saved epoch and batch, so in deterministic mode it ends with the
same weights as an uninterrupted run. Keras' own ``BackupAndRestore`` is not used because (Keras
3.15) it restores only the epoch, not the step or the data position, does not save seed-generator
state, and writes its weights and metadata in place (a kill mid-write leaves a torn checkpoint).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdface.errors import ForeignFolderError, NonFiniteLossError, RunError
from kdface.io.atomic import atomic_path, remove_stale_temporaries, write_json, write_text
from kdface.training.distribute import STRATEGIES, distribute_options
from kdface.training.speed import PRECISION_POLICIES, float32_model

RUN_MARKER = "kdface_run"
BACKUP_DIR = "backup"
STATE_FILE = "state.json"
# What ``fit`` writes into a run directory: a folder holding none of these never trained a step.
FIT_OUTPUTS = (BACKUP_DIR, "history.csv", "tensorboard", "last.keras", "best.keras", "best.json")
# Headroom beyond the estimated checkpoint sizes before a run is allowed to start.
DISK_MARGIN_BYTES = 64 * 2**20


@dataclasses.dataclass
class RunOptions:
    """How a run is executed (not what is trained): shared by every training CLI."""

    resume: bool = False
    restart: bool = False
    backup_every: int = 200  # optimizer steps between backups (and one at every epoch end)
    deterministic: bool = False  # op determinism: bit-identical reruns and resumes, somewhat slower
    on_bad_sample: str = "error"
    unsafe_load_model: bool = False
    strategy: str = "auto"  # tf.distribute strategy (kdface.training.distribute)
    sync_batchnorm: bool = False  # BatchNorm statistics over all replicas
    # Speed (docs/speed.md): applied to every method's compiled model by train_run.
    jit_compile: bool = False  # XLA; off by default: slower on the 2-core CPU it was measured on
    mixed_precision: str = "none"  # none (float32), float16 (with loss scaling) or bfloat16
    steps_per_execution: int = 1  # training steps per tf.function call (batch callbacks run once per call)
    teacher_cache_dir: str | None = None  # where frozen teachers' cached outputs live (default: the run dir)

    def __post_init__(self):
        if self.resume and self.restart:
            raise RunError("--resume and --restart contradict each other; pass one")
        if self.backup_every < 0:
            raise RunError(f"--backup-every must be >= 0 (0: only at epoch ends), got {self.backup_every}")
        if self.mixed_precision not in PRECISION_POLICIES:
            raise RunError(f"--mixed-precision must be one of {', '.join(PRECISION_POLICIES)}, "
                           f"got {self.mixed_precision!r}")  # fmt: skip
        if self.steps_per_execution < 1:
            raise RunError(f"--steps-per-execution must be >= 1, got {self.steps_per_execution}")
        if self.backup_every % self.steps_per_execution:
            raise RunError(
                f"--backup-every {self.backup_every} is not a multiple of --steps-per-execution "
                f"{self.steps_per_execution}: backups can only be taken between executions; choose a multiple"
            )
        if self.jit_compile and self.deterministic:
            raise RunError("--jit-compile and --deterministic exclude each other: Keras turns XLA off under op "
                           "determinism; pass one")  # fmt: skip


def add_run_arguments(parser) -> None:
    group = parser.add_argument_group("run control (resume, determinism, bad input, safety)")
    group.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir from its last backup (starts fresh if there is none)")  # fmt: skip
    group.add_argument("--restart", action="store_true",
                       help="discard the run in --run-dir and start over")  # fmt: skip
    group.add_argument("--backup-every", type=int, default=RunOptions.backup_every,
                       help="optimizer steps between resumable backups (0: epoch ends only)")  # fmt: skip
    group.add_argument("--deterministic", action="store_true",
                       help="TensorFlow op determinism: reruns and resumed runs give bit-identical weights")  # fmt: skip
    group.add_argument("--on-bad-sample", choices=("error", "skip"), default="error",
                       help="a bad image or annotation stops with an error naming it, or is skipped, "
                            "counted and listed in the run directory")  # fmt: skip
    group.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="tf.distribute strategy: auto picks a TPU, several workers (TF_CONFIG/Slurm), "
                            "several GPUs, or one device; --batch-size is the global batch")  # fmt: skip
    group.add_argument("--sync-batchnorm", action="store_true",
                       help="compute BatchNorm statistics over the global batch (all replicas)")  # fmt: skip
    group.add_argument("--unsafe-load-model", action="store_true",
                       help="allow loading .keras models that contain Python code (Lambda layers); "
                            "only for files you trust")  # fmt: skip
    speed = parser.add_argument_group(
        "speed (docs/speed.md; the defaults are what was fastest on a 2-core CPU)"
    )
    speed.add_argument("--jit-compile", action="store_true",
                       help="compile the training step with XLA (GPU/TPU; measured slower on CPU)")  # fmt: skip
    speed.add_argument("--mixed-precision", choices=tuple(PRECISION_POLICIES), default="none",
                       help="compute in float16 (with dynamic loss scaling) or bfloat16, keep float32 weights; "
                            "losses and outputs stay float32 and the saved model is float32")  # fmt: skip
    speed.add_argument("--steps-per-execution", type=int, default=RunOptions.steps_per_execution,
                       help="training steps per call into the compiled graph (fewer host round trips); must "
                            "divide the steps per epoch and --backup-every")  # fmt: skip
    speed.add_argument("--teacher-cache-dir", default=None,
                       help="folder for cached frozen-teacher outputs (--cache-teachers), shared by runs; "
                            "default: the run directory")  # fmt: skip


def run_options_from_args(args) -> RunOptions:
    names = {f.name for f in dataclasses.fields(RunOptions)}
    return RunOptions(**{k: v for k, v in vars(args).items() if k in names})


def configure_determinism(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; with ``deterministic``, also TF op determinism.

    Call it again right before building the models (:func:`seed_models`): data preparation (TFDS)
    draws from Python's ``random``, from which Keras seeds its global generator, so a run that prepared
    its data in-process would otherwise initialise differently from one that found it prepared.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def seed_models(seed: int) -> None:
    """Reseed just before building models, so initial weights do not depend on what ran before."""
    keras.utils.set_random_seed(seed)


# --------------------------------------------------------------------------- output checks


def check_writable(directory) -> Path:
    """Create ``directory`` if needed and prove a file can be written there, or raise :class:`RunError`."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / ".kdface-write-test", fsync=False) as tmp:
            tmp.write_bytes(b"ok")
        (directory / ".kdface-write-test").unlink()
    except OSError as exc:
        raise RunError(f"cannot write to {directory}: {exc.strerror or exc}; choose another folder") from None
    return directory


def check_free_space(directory, need_bytes: int) -> None:
    """Raise :class:`RunError` if ``directory``'s file system has less than ``need_bytes`` free."""
    free = shutil.disk_usage(directory).free
    if free < need_bytes:
        raise RunError(
            f"too little disk space in {directory}: {free / 2**20:.0f} MiB free, this run needs about "
            f"{need_bytes / 2**20:.0f} MiB (models, resumable backups); free space or choose another folder"
        )


def estimated_run_bytes(model: keras.Model) -> int:
    """Disk a run needs at its peak: the backup being written beside the previous one (all variables),
    best/last/published deployable models plus one temporary copy, and a margin."""
    variables = list(model.variables) + (list(model.optimizer.variables) if model.optimizer else [])
    backup = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    deploy = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in deployable(model).variables)
    return 2 * backup + 4 * deploy + DISK_MARGIN_BYTES


# --------------------------------------------------------------------------- run directory


class RunDirectory:
    """A run directory and the resume/restart policy around it.

    ``open(config)`` refuses to mix two runs: a folder that already holds a kdface run needs
    ``--resume`` (continue; the config must match) or ``--restart`` (discard it). A run that never
    trained a step (its inputs failed after the folder was claimed, or it was killed before ``fit``)
    is not a run yet: the next one takes its folder over without either flag. A non-empty folder
    kdface did not create is never written into or deleted.
    """

    def __init__(self, path, options: RunOptions | None = None, chief: bool = True):
        self.path = Path(path)
        self.options = options or RunOptions()
        self.state: dict | None = None
        self.chief = chief  # only the chief writes; other workers read the chief's backup to resume
        self.strategy = None  # the tf.distribute strategy the run's models are built under

    @property
    def backup_dir(self) -> Path:
        return self.path / BACKUP_DIR

    def _is_kdface_run(self) -> bool:
        config = self.path / "config.json"
        if not config.is_file():
            return False
        try:
            return RUN_MARKER in json.loads(config.read_text())
        except ValueError:
            return False

    def _started(self) -> bool:
        """Whether training began here: a backup, or anything ``fit`` writes (:data:`FIT_OUTPUTS`)."""
        return any((self.path / name).exists() for name in FIT_OUTPUTS)

    def open(self, config: dict) -> RunDirectory:
        options = self.options
        if not self.chief:
            # A non-chief worker touches nothing; on --resume it restores what the chief saved
            # (the run directory must be on a file system all workers share).
            self.state = read_state(self.backup_dir) if options.resume else None
            return self
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"run directory {self.path} exists and is not a folder")
        if self.path.is_dir() and any(self.path.iterdir()):
            if not self._is_kdface_run():
                raise ForeignFolderError(
                    f"{self.path} is not empty and holds no kdface run; choose a new or empty --run-dir "
                    "(kdface never writes into or deletes a folder it did not create)"
                )
            if options.restart:
                shutil.rmtree(self.path)
            elif not self._started():
                print(f"{self.path}: taken over (its run stopped before training a step)")
                shutil.rmtree(self.path)
            elif options.resume:
                recorded = json.loads((self.path / "config.json").read_text())
                _require_same_config(self.path, recorded.get("config", {}), config)
                self.state = read_state(self.backup_dir)
            else:
                state = read_state(self.backup_dir)
                where = "a finished run" if state and state.get("finished") else "an unfinished run"
                if state and not state.get("finished"):
                    where += f" (backed up at epoch {state['epoch'] + 1}, batch {state['step']})"
                elif not state:
                    where += " (no backup yet: --resume starts it afresh)"
                raise RunError(
                    f"{self.path} already holds {where}. Pass --resume to continue it or --restart to "
                    "discard it and start over"
                )
        check_writable(self.path)
        remove_stale_temporaries(self.path)
        if self.backup_dir.is_dir():
            remove_stale_temporaries(self.backup_dir)
        if self.state is None:
            write_json(self.path / "config.json", {RUN_MARKER: 1, "config": config,
                                                   "run": dataclasses.asdict(options)})  # fmt: skip
        return self

    def write_skipped(self, records: list[dict]) -> Path | None:
        """List skipped samples in ``skipped_samples.json`` (and say so); nothing if none."""
        if not records or not self.chief:
            return None
        path = write_json(self.path / "skipped_samples.json", {"count": len(records), "skipped": records})
        print(f"skipped {len(records)} bad sample(s) (--on-bad-sample skip); list: {path}")
        return path


def _require_same_config(path: Path, recorded: dict, config: dict) -> None:
    fresh = json.loads(json.dumps(config, default=str))  # compare as they were written
    keys = sorted(set(recorded) | set(fresh))
    changed = [k for k in keys if recorded.get(k) != fresh.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {recorded.get(k)!r} -> {fresh.get(k)!r}" for k in changed[:8])
        raise RunError(
            f"--resume: the run in {path} was started with a different config ({detail}). Resume with the "
            "same flags, or --restart"
        )


# --------------------------------------------------------------------------- backups


def read_state(backup_dir) -> dict | None:
    state_path = Path(backup_dir) / STATE_FILE
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text())
    except ValueError as exc:
        # Cannot happen through kdface (state.json is renamed into place); someone edited it.
        raise RunError(f"{state_path} is not valid JSON ({exc}); --restart to start over") from None
    return state


def _state_variables(model: keras.Model) -> list:
    """Everything that determines the rest of a run: model variables (weights, BatchNorm statistics,
    seed-generator states) and optimizer variables (step counter, moments), in a fixed order."""
    if model.optimizer is not None and not model.optimizer.built:
        strategy = getattr(model, "_distribute_strategy", None)  # optimizer slots must be mirrored too
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model.optimizer.build(model.trainable_variables)
    return list(model.variables) + list(model.optimizer.variables if model.optimizer else [])


def save_backup(model: keras.Model, backup_dir, *, epoch: int, step: int, extra: dict,
                global_step: int | None = None) -> dict:  # fmt: skip
    """Write one complete training state; returns the new ``state.json`` content. ``global_step`` is
    the trainer's step count (default: the optimizer's, which float16 loss scaling can hold back)."""
    backup_dir = Path(backup_dir)
    backup_dir.mkdir(parents=True, exist_ok=True)
    variables = _state_variables(model)
    if global_step is None:
        global_step = int(model.optimizer.iterations.numpy()) if model.optimizer else 0
    name = f"step-{global_step:010d}.npz"
    buffer = io.BytesIO()
    np.savez(buffer, **{f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)})
    with atomic_path(backup_dir / name) as tmp:
        tmp.write_bytes(buffer.getvalue())
    state = {"epoch": epoch, "step": step, "global_step": global_step, "checkpoint": name,
             "variables": [v.path for v in variables], "shapes": [list(v.shape) for v in variables],
             **extra}  # fmt: skip
    write_json(backup_dir / STATE_FILE, state)  # the commit point
    for old in backup_dir.glob("step-*.npz"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return state


def restore_backup(model: keras.Model, backup_dir, state: dict) -> None:
    """Assign the variables saved in ``state``'s checkpoint to ``model`` (and its optimizer)."""
    path = Path(backup_dir) / state["checkpoint"]
    variables = _state_variables(model)
    # Variable names carry per-process counters (dense_1 vs dense_3), so the layout is matched by
    # order and shape; the saved names are shown when it does not match.
    saved_shapes = [tuple(shape) for shape in state["shapes"]]
    shapes = [tuple(v.shape) for v in variables]
    if saved_shapes != shapes:
        i = next(
            (k for k, (a, b) in enumerate(zip(saved_shapes, shapes, strict=False)) if a != b),
            min(len(shapes), len(saved_shapes)),
        )
        saved = f"{state['variables'][i]} {saved_shapes[i]}" if i < len(saved_shapes) else "nothing"
        here = f"{variables[i].path} {shapes[i]}" if i < len(shapes) else "nothing"
        raise RunError(
            f"{path}: the backup does not match this model ({len(saved_shapes)} saved variables, {len(shapes)} "
            f"here; variable {i}: saved {saved}, here {here}); --restart to start over"
        )
    with np.load(path) as data:
        for i, variable in enumerate(variables):
            value = data[f"v{i}"]
            if tuple(value.shape) != tuple(variable.shape):
                raise RunError(f"{path}: {variable.path} has shape {value.shape}, the model {variable.shape}")
            variable.assign(value)


# --------------------------------------------------------------------------- callbacks


def weights_digest(model: keras.Model) -> str:
    """A short hash of a model's weights: equal on every worker of a synchronous run, and across
    bit-identical reruns (printed at the end of every run)."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def deployable(model: keras.Model) -> keras.Model:
    """The model a user loads: ``model.deploy_model`` if the method defines one, else the model."""
    return getattr(model, "deploy_model", model)


def save_model_atomically(model: keras.Model, path) -> Path:
    """Write ``model`` to ``path`` via a temporary file, so a crash never leaves a truncated model."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    return Path(path)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first NaN/Inf loss, remembering the step; the savers below then save nothing."""

    def __init__(self, steps_per_epoch: int = 0):
        super().__init__()
        self.tripped = False
        self.step = None
        self.value = None
        self.epoch = 0
        self.steps_per_epoch = steps_per_epoch  # 0: the step is read from the optimizer
        self.batch_offset = 0  # batches of the current epoch done before this fit() call

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.batch_offset = 0

    def on_train_batch_end(self, batch, logs=None):
        # Keras has already turned the logs into Python numbers (its one host sync per call), and the
        # logged loss is the epoch's running mean: every non-finite step loss shows here. With several
        # steps per execution, at the end of the execution that holds it (self.steps: how many).
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and not self.tripped:
            self.tripped = True
            self.value = float(loss)
            if self.steps_per_epoch:
                self.step = self.epoch * self.steps_per_epoch + self.batch_offset + batch + 1
            else:
                self.step = int(self.model.optimizer.iterations.numpy())
            self.steps = int(getattr(self.model, "steps_per_execution", 1) or 1)
            self.model.stop_training = True

    def where(self) -> str:
        """Where the loss became non-finite: ``step N``, or ``one of steps M..N`` (several per execution)."""
        if getattr(self, "steps", 1) > 1:
            return (
                f"one of steps {self.step - self.steps + 1}..{self.step} (--steps-per-execution {self.steps})"
            )
        return f"step {self.step}"


def epoch_variable(model: keras.Model):
    """A model variable that the trainer sets to the 0-based epoch at every epoch's start.

    Methods whose loss depends on the epoch (IGKD's ramps, SCN's relabelling start) read it instead
    of deriving the epoch from step counts: the trainer alone owns epochs and steps, and a resumed run
    sees the right epoch because the trainer sets it again when training restarts."""
    return model.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="epoch",
                            aggregation="only_first_replica")  # fmt: skip


class EpochCounter(keras.callbacks.Callback):
    """Sets ``model.epoch_index`` (see :func:`epoch_variable`), for the models that have one."""

    def on_epoch_begin(self, epoch, logs=None):
        variable = getattr(self.model, "epoch_index", None)
        if variable is not None:
            variable.assign(epoch)


class SaveDeployable(keras.callbacks.Callback):
    """Save the deployable model as ``last.keras`` every epoch and ``best.keras`` when ``monitor`` improves."""

    def __init__(self, run_dir, monitor="val_loss", mode="min", guard=None, best=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor, self.mode = monitor, mode
        self.guard = guard
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        if self.guard is not None and self.guard.tripped:
            return
        logs = logs or {}
        model = float32_model(deployable(self.model))  # the saved model computes in float32 (docs/speed.md)
        save_model_atomically(model, self.run_dir / "last.keras")
        value = logs.get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        better = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best = float(value)
            save_model_atomically(model, self.run_dir / "best.keras")
            write_json(self.run_dir / "best.json", {"epoch": epoch + 1, self.monitor: self.best})


class TrainingBackup(keras.callbacks.Callback):
    """Resumable state every ``every`` training steps and at each epoch end (see module doc).

    The trainer counts the steps itself (``epoch * steps_per_epoch + batch``) rather than reading the
    optimizer's counter every batch (a host read; and float16 loss scaling skips the optimizer's
    update, so its counter can lag). With several steps per execution Keras calls this once per
    execution; a backup is taken at the first call at or after each multiple of ``every``.
    """

    def __init__(self, backup_dir, every: int, guard: StopOnNonFiniteLoss, saver: SaveDeployable, clock=None,
                 steps_per_epoch: int = 0):  # fmt: skip
        super().__init__()
        self.clock = clock or (lambda: 0.0)  # training seconds so far, earlier sessions of the run included
        self.backup_dir = Path(backup_dir)
        self.every = every
        self.steps_per_epoch = steps_per_epoch
        self.guard, self.saver = guard, saver
        self.batch_offset = 0  # batches of the current epoch done before this fit() call
        self.epoch = 0
        self.checked = 0  # the trainer's step count at the previous check
        self.last_saved_step = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.checked = epoch * self.steps_per_epoch + self.batch_offset

    def _save(self, epoch: int, step: int):
        state = save_backup(
            self.model,
            self.backup_dir,
            epoch=epoch,
            step=step,
            extra={"best": self.saver.best, "train_seconds": round(self.clock(), 1)},
            global_step=epoch * self.steps_per_epoch + step if self.steps_per_epoch else None,
        )
        self.last_saved_step = state["global_step"]

    def on_train_batch_end(self, batch, logs=None):
        if self.guard.tripped or not self.every:
            return
        if batch + 1 == self.params.get("steps"):
            return  # the epoch's last batch: the epoch-end backup follows, after validation and logs
        step = self.epoch * self.steps_per_epoch + self.batch_offset + batch + 1
        due = step // self.every > self.checked // self.every
        self.checked = step
        if due:
            self._save(self.epoch, self.batch_offset + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.batch_offset = 0
        if not self.guard.tripped:
            self._save(epoch + 1, 0)


@contextlib.contextmanager
def _strategy_from_context(model: keras.Model, sample_stream):
    """Run ``fit`` with the model's tf.distribute strategy taken from the scope, not the model.

    Keras 3.15's ``fit`` on a model built under a strategy first pulls one batch from the training
    iterator to build the model symbolically: that batch is never trained on (which would break exact
    resume, as each ``fit`` call loses one), and under MultiWorkerMirroredStrategy its cross-replica
    reduce fails. So kdface builds the model from a separate sample batch itself, then lets ``fit`` find
    the strategy from the active scope, which skips that path; training is distributed the same way.
    ``sample_stream()`` builds the stream that sample comes from, only when there is a strategy.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None:
        yield
        return
    sample = next(iter(sample_stream().take(1)))  # built only here: without a strategy it is never needed
    with strategy.scope():
        model._symbolic_build(data_batch=sample)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model._distribute_strategy = None
        try:
            yield
        finally:
            model._distribute_strategy = strategy


@contextlib.contextmanager
def _steps_per_execution(model: keras.Model, steps: int):
    """Run with ``steps`` training steps per execution (a new train function), then restore."""
    before = getattr(model, "steps_per_execution", 1)
    if steps == before:
        yield
        return
    model.steps_per_execution, model.train_function = steps, None
    try:
        yield
    finally:
        model.steps_per_execution, model.train_function = before, None


def _truncate_history(path: Path, epochs_done: int) -> None:
    """Keep only the rows of epochs a resumed run will not redo (a kill can leave later ones)."""
    if not path.is_file():
        return
    rows = list(csv.reader(path.read_text().splitlines()))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs_done]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    write_text(path, out.getvalue())


# --------------------------------------------------------------------------- fit


@dataclasses.dataclass
class FitResult:
    epochs_run: int  # in this call (0: the run had finished already)
    seconds: float  # training time of the whole run, earlier sessions of a resumed run included


def fit(
    model: keras.Model,
    train_stream,
    val_ds,
    *,
    run: RunDirectory,
    epochs: int,
    steps_per_epoch: int,
    batches_per_pass: int | None = None,
    monitor: str = "val_loss",
    mode: str = "min",
    verbose: int | str = "auto",
    callbacks=(),
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs of ``steps_per_epoch`` steps, resumably.

    ``train_stream(pass, skip_batches)`` returns the endless training stream from data pass ``pass`` (see
    :mod:`kdface.data.streams`); ``batches_per_pass`` is the number of batches in one pass (default:
    ``steps_per_epoch``). An epoch of ``steps_per_epoch`` steps may end inside a pass or span several:
    a run resumed at (epoch, batch) restarts the stream at the pass and batch that global step falls
    in, so it sees exactly the batches an uninterrupted run sees.
    :mod:`kdface.data.streams`). If ``run.state`` holds a backup, the variables are restored and
    training continues from its epoch and batch. Raises :class:`NonFiniteLossError` if the loss
    becomes NaN/Inf (nothing is saved from that step on; the last backup and ``last.keras`` are kept).
    """
    run_dir = run.path
    if steps_per_epoch < 1:
        raise RunError(f"an epoch has no full batch (steps_per_epoch={steps_per_epoch}); lower --batch-size")
    per_execution = int(getattr(model, "steps_per_execution", 1) or 1)
    if steps_per_epoch % per_execution:
        # Keras runs whole executions on an endless stream: the epoch would overrun (and the data shift).
        raise RunError(
            f"--steps-per-execution {per_execution} does not divide the {steps_per_epoch} steps of an epoch; "
            "choose a divisor (or set --steps-per-epoch to a multiple)"
        )
    if run.options.backup_every % per_execution:
        raise RunError(f"--backup-every {run.options.backup_every} is not a multiple of --steps-per-execution "
                       f"{per_execution}: backups can only be taken between executions; choose a multiple")  # fmt: skip
    chief = run.chief
    if chief:
        check_free_space(run_dir, estimated_run_bytes(model))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2  # one line per epoch in logs and CI
    start_epoch, skip, best = 0, 0, None
    if run.state is not None:
        if run.state.get("finished"):
            print(f"{run_dir}: the run finished already; nothing to resume")
            return FitResult(0, float(run.state.get("train_seconds", 0.0)))
        restore_backup(model, run.backup_dir, run.state)
        start_epoch, skip, best = run.state["epoch"], run.state["step"], run.state.get("best")
        print(
            f"resuming {run_dir} at epoch {start_epoch + 1}, batch {skip} (step {run.state['global_step']})"
        )
    if skip >= steps_per_epoch:
        start_epoch, skip = start_epoch + 1, 0
    history_path = run_dir / "history.csv"
    if not chief:
        pass
    elif start_epoch == 0 and skip == 0:
        history_path.unlink(missing_ok=True)
    else:
        _truncate_history(history_path, start_epoch)

    guard = StopOnNonFiniteLoss(steps_per_epoch)
    monitor = monitor if val_ds is not None else "loss"
    # Non-chief workers run the same callbacks (they may take part in collective ops, and every
    # worker must issue the same ones) but write into a scratch folder that is deleted at the end.
    out_dir = run_dir if chief else Path(tempfile.mkdtemp(prefix="kdface-worker-"))
    saver = SaveDeployable(out_dir, monitor=monitor, mode=mode, guard=guard, best=best)
    backup = TrainingBackup(out_dir / BACKUP_DIR, run.options.backup_every, guard, saver,
                            steps_per_epoch=steps_per_epoch)  # fmt: skip
    all_callbacks = [
        EpochCounter(),
        guard,
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), write_graph=False),
        saver,
        backup,
        *callbacks,
    ]
    started = time.time()
    earlier = float(run.state.get("train_seconds", 0.0)) if run.state is not None else 0.0
    backup.clock = lambda: earlier + time.time() - started
    epoch = start_epoch
    per_pass = batches_per_pass or steps_per_epoch

    def stream_at(epoch: int, batch: int):
        return train_stream(*divmod(epoch * steps_per_epoch + batch, per_pass))

    with _strategy_from_context(model, lambda: stream_at(start_epoch, skip)):
        if skip and epoch < epochs:  # finish the interrupted epoch first
            backup.batch_offset = guard.batch_offset = skip
            # A backup from a session with other --steps-per-execution may leave a remainder that is not a
            # whole number of executions: run it in executions that divide it.
            with _steps_per_execution(model, math.gcd(steps_per_epoch - skip, per_execution)):
                model.fit(distribute_options(stream_at(epoch, skip)), validation_data=val_ds, initial_epoch=epoch,
                          epochs=epoch + 1, steps_per_epoch=steps_per_epoch - skip, callbacks=all_callbacks,
                          verbose=verbose, shuffle=False)  # fmt: skip
            epoch += 1
        if epoch < epochs and not guard.tripped:
            model.fit(distribute_options(stream_at(epoch, 0)), validation_data=val_ds, initial_epoch=epoch, epochs=epochs,
                      steps_per_epoch=steps_per_epoch, callbacks=all_callbacks, verbose=verbose, shuffle=False)  # fmt: skip
    seconds = earlier + time.time() - started  # a resumed run counts its earlier sessions too
    if guard.tripped:
        kept = []
        if backup.last_saved_step is not None or run.state is not None:
            step = backup.last_saved_step if backup.last_saved_step is not None else run.state["global_step"]
            kept.append(f"the backup at step {step} ({run.backup_dir})")
        if (run_dir / "last.keras").exists():
            kept.append(f"{run_dir / 'last.keras'}")
        raise NonFiniteLossError(
            f"the training loss became {guard.value} at {guard.where()} (epoch {guard.epoch + 1}); training "
            f"stopped and nothing after that step was saved. Kept: {', '.join(kept) or 'nothing (no step had finished)'}. "
            "Lower --learning-rate or check the data, then --restart (or --resume to retry from the backup)",
            guard.step,
        )
    print(f"final weights digest {weights_digest(deployable(model))}")  # equal on every worker
    if not chief:
        shutil.rmtree(out_dir, ignore_errors=True)
        return FitResult(epochs - start_epoch, seconds)
    # Every epoch ran (or a user callback such as EarlyStopping ended the run): finished.
    state = read_state(run.backup_dir) or {}
    write_json(run.backup_dir / STATE_FILE, {**state, "finished": True, "train_seconds": round(seconds, 1)})
    for npz in run.backup_dir.glob("step-*.npz"):
        npz.unlink(missing_ok=True)
    return FitResult(epochs - start_epoch, seconds)


# --- what every method's entry point does around fit --------------------------------------------


def open_run(config, role: str, run_dir, out: Path, options: RunOptions, **extra) -> RunDirectory:
    """The strategy (first: multi-worker set-up must precede other TF work), seeds, then every output
    folder checked and the run directory claimed before any data is read. ``config`` is the method's
    config dataclass; it and ``extra`` are what a resumed run must match."""
    from kdface.training import distribute

    strategy = distribute.make_strategy(options.strategy)
    chief = distribute.is_chief(strategy)
    configure_determinism(config.seed, options.deterministic)
    record = {"role": role, **dataclasses.asdict(config), "on_bad_sample": options.on_bad_sample, **extra}
    if options.mixed_precision != "none":  # other numerics and optimizer state: a resume must match it
        record["mixed_precision"] = options.mixed_precision
    run = RunDirectory(run_dir, options, chief=chief).open(record)
    if chief:
        check_writable(Path(out).parent)
    run.strategy = strategy
    return run


def prepare_built_model(model: keras.Model, run: RunDirectory) -> keras.Model:
    """Apply the run's model options (``--sync-batchnorm``) to a freshly built model."""
    from kdface.training import distribute

    if run.options.sync_batchnorm:
        print(f"synchronized BatchNorm in {distribute.synchronize_batchnorm(model)} layers")
    return model


def publish(run: RunDirectory, out: Path, card: dict, which: str = "best") -> None:
    """Copy the run's best (or, ``which="last"``, last) model to ``out`` (atomically) with its model card
    beside it (chief only)."""
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    if not run.chief:
        return
    best = run.path / f"{which}.keras"
    if not best.exists():
        best = run.path / "last.keras"
    with atomic_path(out) as tmp:
        shutil.copyfile(best, tmp)
    card_path = write_json(Path(out).with_suffix(".json"), card)
    print(f"saved {out} (and {card_path.name}); run directory {run.path}")
