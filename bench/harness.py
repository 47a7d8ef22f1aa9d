"""What every benchmark shares: statistics, interleaved timing, subprocess jobs, machine description.

Nothing here imports TensorFlow at module level, so the driver (``bench/run.py``) stays light and
every measurement's memory is its own subprocess's.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- statistics


def summary(values, unit: str = "", digits: int = 4) -> dict:
    """``{"median", "min", "max", "n", "runs", "unit"}`` of repeated measurements (NaNs dropped)."""
    runs = [float(v) for v in values if v is not None and v == v]
    if not runs:
        return {"median": None, "min": None, "max": None, "n": 0, "runs": [], "unit": unit}
    r = lambda v: float(f"{v:.{digits}g}")  # noqa: E731
    return {"median": r(statistics.median(runs)), "min": r(min(runs)), "max": r(max(runs)), "n": len(runs),
            "runs": [r(v) for v in runs], "unit": unit}  # fmt: skip


def ratio_summary(numerators, denominators, unit: str = "x") -> dict:
    """Per-repeat ratios of two interleaved series (repeat i of A over repeat i of B), summarised."""
    return summary([a / b for a, b in zip(numerators, denominators, strict=True) if a and b], unit)


def interleave(contenders: dict, repeats: int) -> dict[str, list]:
    """Run each contender once per repeat, in turn (A, B, A, B, ...): slow drifts of a shared machine
    then affect every contender alike, and ratios are taken per repeat. Each contender is a callable
    returning one measurement (or a dict of measurements); returns ``{name: [result per repeat]}``."""
    results = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            results[name].append(run())
    return results


def column(results: list[dict], key: str) -> list:
    return [r[key] for r in results]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def best_time(fn, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------- memory


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def current_rss_mb() -> float:
    """This process's resident set size now (``/proc/self/statm``; falls back to the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    """CPU model, cores, RAM, OS and host; the load average says how busy the machine was."""
    flags = ""
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
        )
    except (OSError, StopIteration):
        pass
    simd = [f for f in ("avx512f", "avx512_bf16", "amx_tile", "avx2", "fma", "neon") if f" {f}" in flags]
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "ram_gib": ram_gib(),
        "simd": simd,
        "os": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict:
    """Package versions (read from their metadata: nothing is imported) and kdface's git commit."""
    found = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "torch", "numpy", "ai-edge-litert", "opencv-python-headless"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        found["kdface_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        found["kdface_commit"] = None
    return found


# --------------------------------------------------------------------------- subprocess jobs


class JobError(RuntimeError):
    pass


def run_job(function: str, kwargs: dict, *, timeout: float | None = None, env: dict | None = None) -> dict:
    """Run ``bench.<module>.<function>(**kwargs)`` in a fresh Python process and return its result.

    One measurement per process: its peak RSS is its own, and nothing it imported or allocated
    (TensorFlow's thread pools, torch, models) influences the next. ``function`` is ``"module:name"``.
    """
    with tempfile.TemporaryDirectory(prefix="kdface-bench-job-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, str(ROOT / "bench" / "run.py"), "--job", function, "--job-args",
                   json.dumps(kwargs), "--job-out", str(out)]  # fmt: skip
        child_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **(env or {})}
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env)
        except subprocess.TimeoutExpired as exc:
            raise JobError(f"{function} timed out after {timeout:.0f} s") from exc
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
            raise JobError(f"{function} failed (exit {proc.returncode}):\n{tail}")
        result = json.loads(out.read_text())
        result.setdefault("job_seconds", round(time.perf_counter() - start, 1))
        return result


def job_main(function: str, args_json: str, out: str) -> None:
    """The child side of :func:`run_job`."""
    import importlib

    module, name = function.split(":")
    fn = getattr(importlib.import_module(f"bench.{module}"), name)
    start = time.perf_counter()
    result = fn(**json.loads(args_json))
    result.setdefault("job_seconds", round(time.perf_counter() - start, 1))
    result.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))  # a job may read it before its last steps
    Path(out).write_text(json.dumps(result, default=_jsonable))


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


def quiet_tensorflow():
    """Import TensorFlow with its start-up chatter off; return the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def tf_threads() -> dict:
    """TensorFlow's thread settings (0 = its default: one intra-op thread per usable core)."""
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    return {"intra_op": intra, "inter_op": inter, "intra_op_effective": intra or usable_cores()}
