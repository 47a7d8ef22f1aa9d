"""Training throughput of one method at one size: kdface's step, its input pipeline, a bare Keras fit.

Run in its own process by ``bench/run.py`` (``train_*`` benchmarks), so its peak RSS is its own.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import interleave, peak_rss_mb, quiet_tensorflow, ratio_summary, summary, tf_threads

# Images in one training epoch of the datasets each size stands for: the SynthFaces demo tree for
# ``demo`` (recognition: the ``faceid`` tree, 400 training identities x 16), the real datasets for
# ``paper`` (300W train 3148, RAF-DB train 12271, CASIA-WebFace 490,623 as insightface packs it), less
# the validation share kdface holds out (none for recognition). Used to spread the per-epoch costs
# (saving, backups, fit start) over an epoch.
EPOCH_IMAGES = {"landmarks": {"demo": 2000 * 0.95, "paper": 3148 * 0.95},
                "expressions": {"demo": 1500 * 0.9, "paper": 12271 * 0.9},
                "recognition": {"demo": 400 * 16, "paper": 490_623}}  # fmt: skip


def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Wall-clock time at the end of every training batch (after kdface's own callbacks)."""

        def on_train_begin(self, logs=None):
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())

    return StepTimer()


def _steady_rate(times, batch_size, steps_per_call: int = 1) -> float | None:
    """Images/s between the end of the first step and the end of the last (the first step of every
    ``fit`` includes starting the input iterator, so it is left out)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return batch_size * steps_per_call * (len(times) - 1) / (times[-1] - times[0])


def window_steps(step_seconds: float, window_seconds: float, max_steps: int, multiple: int = 1) -> int:
    """Steps in one timed window: about ``window_seconds`` of steady steps after the first, at least 3
    (2 when a step alone takes more than half a window: one long steady step is measurement enough),
    rounded up to a multiple of ``multiple`` (``--steps-per-execution``)."""
    least = 2 if step_seconds > window_seconds / 2 else 3
    steps = max(least, min(max_steps, 1 + math.ceil(window_seconds / step_seconds)))
    return max(2, math.ceil(steps / multiple)) * multiple


def train_step(method: str, size: str, data_root: str, tfds_dir: str, quick: bool = False,
               window_seconds: float = 2.0, repeats: int = 3, max_steps: int = 40, matmul_n: int = 2048,
               inference_calls: int = 0, original_loop: bool = False,
               contenders=("matmul", "pipeline", "kdface", "bare"), speed: dict | None = None) -> dict:  # fmt: skip
    """Train-step images/s of ``method`` at ``size`` through kdface's real path, the input pipeline alone,
    and a bare Keras ``fit`` of the same compiled model on one in-memory batch; FLOPs; peak RSS.

    * kdface: ``kdface.training.trainer.fit`` (its callbacks: NaN stop, epoch counter, CSV and TensorBoard
      logs, deployable-model saving, step backups) on the method's model built as its train function
      builds it, fed by the task's epoch stream (``training_data``). One ``fit`` of ``steps`` steps is
      one window; images/s is steady state (first step excluded), the rest of the window's wall time
      is the per-``fit`` fixed cost (starting the stream, epoch-end saving).
    * bare: ``model.fit`` on the same model, no callbacks, on ``Dataset.from_tensors(batch).repeat()``
      (no decoding, no augmentation). kdface / bare is kdface's overhead; target >= 0.9.
    * pipeline: the training stream iterated alone for ``window_seconds / 2``; pipeline / kdface is the
      headroom of the input pipeline; target >= 3.
    * matmul: the fp32 matmul rate (:func:`bench.peak.matmul_rate`); the step's FLOPs
      (:mod:`bench.flops`) times kdface's images/s over it is the fraction of peak, per repeat; targets
      >= 50 % for ResNets, >= 20 % for MobileNetV2 (training at batch 32).
    * original (``original_loop``, KD-Loss student only): the original-style loop of
      :mod:`bench.original_kdloss_loop` on the same models; kdface / original, target >= 3.

    The contenders run interleaved (matmul, pipeline, kdface, bare, [original], matmul, ...) ``repeats``
    times. With ``inference_calls``, the deployable model's latencies (:func:`bench.inference.latencies`)
    are measured afterwards in the same process (after its peak RSS is read), saving a process start.
    ``speed``: kdface's speed options (``jit_compile``, ``mixed_precision``, ``steps_per_execution``)
    applied to the model as ``train_run`` applies them (both fits use them; the default: none).
    """
    tf = quiet_tensorflow()
    from bench import methods
    from bench.peak import matmul_rate
    from kdface.training import trainer
    from kdface.training.trainer import RunDirectory, RunOptions

    started = time.perf_counter()
    contender = methods.build(method, size, data_root, tfds_dir, quick, speed)
    build_seconds = time.perf_counter() - started
    model, data, batch_size = contender.model, contender.data, contender.batch_size
    per_call = int(getattr(model, "steps_per_execution", 1) or 1)  # batch callbacks run once per call
    work = Path(tempfile.mkdtemp(prefix="kdface-bench-train-"))
    runs = iter(range(10**6))

    def kdface_fit(steps: int) -> dict:
        run = RunDirectory(work / f"run{next(runs)}", RunOptions()).open({"bench": method, "size": size})
        timer = _step_timer()
        start = time.perf_counter()
        trainer.fit(model, data.stream, None, run=run, epochs=1, steps_per_epoch=steps,
                    batches_per_pass=data.batches_per_pass, verbose=0, callbacks=[timer])  # fmt: skip
        wall = time.perf_counter() - start
        shutil.rmtree(run.path, ignore_errors=True)
        return {"rate": _steady_rate(timer.times, batch_size, per_call), "wall": wall, "steps": steps}

    batch = next(iter(data.stream(0, 0)))
    in_memory = tf.data.Dataset.from_tensors(batch).repeat()

    def bare_fit(steps: int) -> dict:
        timer = _step_timer()
        start = time.perf_counter()
        model.fit(in_memory, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer], shuffle=False)
        wall = time.perf_counter() - start
        return {"rate": _steady_rate(timer.times, batch_size, per_call), "wall": wall, "steps": steps}

    def pipeline(seconds: float) -> dict:
        iterator = iter(data.stream(0, 0))
        next(iterator)  # start-up (threads, first prefetch) is not throughput
        count, start = 0, time.perf_counter()
        while count < 3 or (time.perf_counter() - start < seconds and count < 2000):
            next(iterator)
            count += 1
        return {"rate": batch_size * count / (time.perf_counter() - start), "batches": count}

    loop = None
    if original_loop:
        from bench.original_kdloss_loop import original_loop_for

        loop = original_loop_for(contender, work / "original")

    def original(steps: int) -> dict:
        return {"rate": _steady_rate(loop.run(steps), batch_size), "steps": steps}

    # Warm-up: the first fit traces the train step; its second step gives the step time.
    start = time.perf_counter()
    first = kdface_fit(2 * per_call)
    first_fit_seconds = time.perf_counter() - start
    step_seconds = batch_size / first["rate"] if first["rate"] else first_fit_seconds
    steps = window_steps(step_seconds, window_seconds, max_steps, per_call)
    warm = {}
    if "bare" in contenders:
        start = time.perf_counter()
        bare_fit(2 * per_call)  # the bare fit may retrace for its input
        warm["bare_warmup_seconds"] = round(time.perf_counter() - start, 1)
    original_steps = None
    if loop is not None:
        start = time.perf_counter()
        rate = original(2)["rate"]  # the teachers' predict functions
        warm["original_warmup_seconds"] = round(time.perf_counter() - start, 1)
        original_steps = window_steps(batch_size / rate if rate else 60.0, window_seconds, max_steps)

    run_one = {
        "matmul": lambda: matmul_rate(matmul_n),
        "pipeline": lambda: pipeline(window_seconds / 2),
        "kdface": lambda: kdface_fit(steps),
        "bare": lambda: bare_fit(steps),
        "original": lambda: original(original_steps),
    }
    order = [c for c in ("matmul", "pipeline", "kdface", "bare") if c in contenders] + (
        ["original"] if loop else []
    )
    results = interleave({name: run_one[name] for name in order}, repeats)

    kd_rates = [r["rate"] for r in results["kdface"]]
    row = {
        "method": method, "size": size, "image_size": contender.image_size, "batch_size": batch_size,
        "networks": contender.networks, "family": contender.family, "notes": contender.notes,
        "steps_per_window": steps, "repeats": repeats, "threads": tf_threads(),
        "kdface_images_per_s": summary(kd_rates, "images/s"),
        "kdface_fit_fixed_s": summary(_fixed(results["kdface"], batch_size), "s"),
        "build_seconds": round(build_seconds, 1), "first_fit_seconds": round(first_fit_seconds, 1), **warm,
    }  # fmt: skip
    if "bare" in results:
        bare_rates = [r["rate"] for r in results["bare"]]
        start = time.perf_counter()
        trainer.save_backup(model, work / "backup", epoch=0, step=0, extra={})
        backup_seconds = time.perf_counter() - start
        task = methods.TASKS[method]
        epoch_steps = max(1, int(EPOCH_IMAGES[task][size] // batch_size))
        bare_fixed = _fixed(results["bare"], batch_size)
        row.update({
            "bare_images_per_s": summary(bare_rates, "images/s"),
            "kdface_over_bare": ratio_summary(kd_rates, bare_rates),
            "bare_fit_fixed_s": summary(bare_fixed, "s"),
            "backup_seconds": round(backup_seconds, 3), "epoch_steps": epoch_steps,
            "epoch_ratio_estimate": _epoch_ratio(results["kdface"], results["bare"], backup_seconds, epoch_steps,
                                                 batch_size),
        })  # fmt: skip
    if "pipeline" in results:
        pipe_rates = [r["rate"] for r in results["pipeline"]]
        row["pipeline_images_per_s"] = summary(pipe_rates, "images/s")
        row["pipeline_over_step"] = ratio_summary(pipe_rates, kd_rates)
    if loop is not None:
        original_rates = [r["rate"] for r in results["original"]]
        row["vs_original"] = {
            "size": size, "image_size": contender.image_size, "batch_size": batch_size,
            "networks": contender.networks, "notes": contender.notes, "files": len(loop.images),
            "steps_per_window": {"kdface": steps, "original": original_steps}, "repeats": repeats,
            "kdface_images_per_s": summary(kd_rates, "images/s"),
            "original_images_per_s": summary(original_rates, "images/s"),
            "kdface_over_original": ratio_summary(kd_rates, original_rates),
        }  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    row["peak_rss_mb"] = round(peak_rss_mb(), 1)  # before the FLOP count and latencies add their own
    if "matmul" in results:
        from bench.flops import training_flops

        flops = training_flops(contender.trained_forward, contender.frozen_forward, contender.image_size)
        # Achieved FLOP/s as a fraction of the matmul rate measured beside it, per repeat.
        fractions = [
            r * flops["train_step"] / m for r, m in zip(kd_rates, results["matmul"], strict=True) if r
        ]
        row.update({"flops_per_image": flops, "matmul_n": matmul_n,
                    "matmul_flops_per_s": summary(results["matmul"], "FLOP/s"),
                    "fraction_of_peak": summary(fractions)})  # fmt: skip
    if inference_calls:
        from bench.inference import latencies

        row["inference"] = latencies(contender, calls=inference_calls, repeats=repeats)
    return row


def _fixed(windows, batch_size) -> list[float]:
    """Per-``fit`` fixed cost: each window's wall time beyond its steps at its steady rate."""
    return [w["wall"] - w["steps"] * batch_size / w["rate"] for w in windows if w["rate"]]


def _epoch_ratio(kdface_windows, bare_windows, backup_seconds, epoch_steps, batch_size) -> dict:
    """kdface / bare throughput over a whole epoch of ``epoch_steps`` steps, per repeat: steady steps plus
    that repeat's per-fit fixed cost (kdface's epoch-end saving among them) plus a backup every 200 steps
    (``RunOptions.backup_every``'s default)."""
    images = epoch_steps * batch_size
    ratios = []
    for kd, bare in zip(kdface_windows, bare_windows, strict=True):
        if not (kd["rate"] and bare["rate"]):
            continue
        kd_fixed = kd["wall"] - kd["steps"] * batch_size / kd["rate"]
        bare_fixed = bare["wall"] - bare["steps"] * batch_size / bare["rate"]
        kdface = images / kd["rate"] + kd_fixed + (epoch_steps // 200) * backup_seconds
        ratios.append((images / bare["rate"] + bare_fixed) / kdface)
    return summary(ratios, "x")
