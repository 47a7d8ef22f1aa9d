"""Inference latency per face of each method's deployable model, and its size."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import quiet_tensorflow, summary


def _litert_runner(model, work: Path):
    """``(predict_on_batch, file bytes, conversion seconds)`` of ``model`` converted to LiteRT by
    ``kdface.export`` (float32, builtin ops; run by ``kdface.io.litert.LiteRTModel`` with as many threads
    as TensorFlow's intra-op pool), or ``(None, why not, None)``."""
    try:
        from kdface.export import convert_litert
        from kdface.io.litert import LiteRTModel
    except ImportError as exc:
        return None, f"n/a (kdface.export not importable: {exc})", None
    from bench.harness import tf_threads

    path = work / "model.tflite"
    try:
        start = time.perf_counter()
        convert_litert(model, path, "none")
        seconds = round(time.perf_counter() - start, 1)
        runner = LiteRTModel(path, num_threads=tf_threads()["intra_op_effective"])
    except Exception as exc:  # noqa: BLE001 - a model that does not convert is a row saying why
        return None, f"n/a (conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:150]})", None
    return runner.predict_on_batch, path.stat().st_size, seconds


def _latency(fn, calls: int, per: int = 1) -> float:
    """Median milliseconds per face over ``calls`` timed calls of ``fn`` (each on ``per`` faces)."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3 / per)
    return float(np.median(times))


def latencies(contender, calls: int = 15, repeats: int = 3) -> dict:
    """Milliseconds per face of a built contender's deployable model (what is saved: images in ``[0, 1]``
    -> outputs): Keras ``predict`` at batch 1 and 32, ``predict_on_batch`` and ``model(x, training=False)``
    at batch 1 (how users call it on one face), and the LiteRT file ``kdface.export`` converts (float32)
    at batch 1 and 32 when ``kdface.export`` is importable; parameters, ``.keras`` and ``.tflite`` bytes. Each latency is the median of ``calls`` calls,
    measured ``repeats`` times round-robin across the ways of calling. No target."""
    model = contender.deploy_model()
    s = contender.image_size
    rng = np.random.default_rng(0)
    x1 = rng.random((1, s, s, 3), dtype=np.float32)
    x32 = rng.random((32, s, s, 3), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="kdface-bench-infer-") as tmp:
        work = Path(tmp)
        # As kdface's trainer saves it (SaveDeployable): a compiled deployable model whose optimizer has
        # been built (after training) carries the optimizer's state in its .keras file.
        from kdface.training.speed import float32_model
        from kdface.training.trainer import save_model_atomically

        save_model_atomically(float32_model(model), work / "model.keras")
        keras_bytes = (work / "model.keras").stat().st_size
        with_optimizer = bool(getattr(model, "optimizer", None) is not None and model.optimizer.built)
        litert, litert_info, convert_seconds = _litert_runner(model, work)
        ways = {
            "predict_b1": (lambda: model.predict(x1, verbose=0), calls, 1),
            "predict_b32": (lambda: model.predict(x32, batch_size=32, verbose=0), max(2, calls // 5), 32),
            "predict_on_batch_b1": (lambda: model.predict_on_batch(x1), calls, 1),
            "call_b1": (lambda: model(x1, training=False), calls, 1),
        }
        if litert is not None:
            ways["litert_b1"] = (lambda: litert(x1), calls, 1)
            ways["litert_b32"] = (lambda: litert(x32), max(2, calls // 5), 32)
        for fn, _, _ in ways.values():  # warm: traces, first-call set-up
            fn()
            fn()
        results = {name: [] for name in ways}
        for _ in range(repeats):
            for name, (fn, n, per) in ways.items():
                results[name].append(_latency(fn, n, per))
    row = {"method": contender.method, "size": contender.size, "image_size": s, "networks": contender.networks,
           "litert_convert_seconds": convert_seconds,
           "params": int(model.count_params()), "keras_bytes": keras_bytes, "keras_has_optimizer": with_optimizer,
           "litert": litert_info if litert is None else f"{litert_info} bytes"}  # fmt: skip
    row.update({f"{name}_ms": summary(values, "ms/face") for name, values in results.items()})
    row.setdefault("litert_b1_ms", None)
    row.setdefault("litert_b32_ms", None)
    return row


def inference(method: str, data_root: str, tfds_dir: str, quick: bool = False, sizes=("demo", "paper"),
              calls: int = 15, repeats: int = 3, speed: dict | None = None) -> dict:  # fmt: skip
    """:func:`latencies` of ``method``'s deployable model at each size, in one process (for
    ``--only inference``; a full run measures them in the train processes instead)."""
    quiet_tensorflow()
    from bench import methods

    rows = [
        latencies(methods.build(method, size, data_root, tfds_dir, quick, speed), calls, repeats)
        for size in sizes
    ]
    return {"rows": rows}
