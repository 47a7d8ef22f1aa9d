"""This machine's fp32 matmul peak, as TensorFlow reaches it with its own thread settings."""

from __future__ import annotations

import time

from bench.harness import quiet_tensorflow, summary, tf_threads

_MATMULS = {}


def matmul_rate(n: int = 2048, repeats: int = 4) -> float:
    """FLOP/s of the fastest of ``repeats`` float32 ``n x n`` ``tf.matmul`` calls (2 n^3 FLOPs each) in a
    ``tf.function``, after one warm call. The yardstick the train steps' FLOP/s are a fraction of."""
    tf = quiet_tensorflow()
    if n not in _MATMULS:
        a = tf.random.stateless_uniform((n, n), (1, 2))
        b = tf.random.stateless_uniform((n, n), (3, 4))
        fn = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))  # a scalar: no copy-out timed
        _MATMULS[n] = (fn, a, b)
    fn, a, b = _MATMULS[n]
    fn(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def matmul_peak(n: int = 4096, repeats: int = 5, rounds: int = 3) -> dict:
    """The fp32 matmul peak: :func:`matmul_rate` of ``n x n`` (best of ``repeats`` calls) in each of
    ``rounds`` rounds; the best round is reported as the machine's practical peak. No target: it is
    the yardstick (each train measurement also measures it beside its own windows)."""
    rates = [matmul_rate(n, repeats) for _ in range(rounds)]
    return {"n": n, "repeats": repeats, "flops_per_s": summary(rates, "FLOP/s"), "peak_flops_per_s": max(rates),
            "threads": tf_threads()}  # fmt: skip
