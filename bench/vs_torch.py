"""A ResNet-18 / IResNet-18 training step in kdface (TensorFlow) against the same step in PyTorch."""

from __future__ import annotations

import time

import numpy as np

from bench.harness import quiet_tensorflow, ratio_summary, summary, tf_threads


def vs_torch(network: str, sizes=(96, 112), batch_size: int = 32, window_seconds: float = 2.0,
             repeats: int = 3, max_steps: int = 40, speed: dict | None = None) -> dict:  # fmt: skip
    """Train-step images/s of ``network`` (``resnet18``: SCN's and IGKD's student; ``iresnet18``: SCN's
    variant) with a 7-class linear head, Adam (lr 1e-3, coupled L2 1e-4) and cross-entropy, batch
    ``batch_size``, on one in-memory batch: kdface's step (``build_classifier`` + ``ExpressionClassifier``
    + ``GroupAdam``, as ``--method fer`` trains it, through ``model.fit``) against PyTorch
    (``torch.optim.Adam(weight_decay=1e-4)``, ``F.cross_entropy``, NCHW float32) with as many threads as
    TensorFlow's intra-op pool. Interleaved windows, steady state. Target: TF >= 1.2x torch."""
    quiet_tensorflow()
    try:
        import torch
    except ImportError:
        return {"rows": [{"network": network, "skipped": "torch is not installed"}]}
    threads = tf_threads()
    torch.set_num_threads(threads["intra_op_effective"])
    rows = [_compare(network, size, batch_size, window_seconds, repeats, max_steps, speed) for size in sizes]
    for row in rows:
        row.update(torch_threads=torch.get_num_threads(), tf_threads=threads)
    return {"rows": rows}


def _compare(network: str, size: int, batch_size: int, window_seconds: float, repeats: int, max_steps: int,
             speed: dict | None = None) -> dict:  # fmt: skip
    import keras
    import tensorflow as tf
    import torch

    from bench.methods import run_options
    from bench.torch_nets import build as build_torch
    from bench.training import _steady_rate, _step_timer, window_steps
    from kdface.methods.fer import ExpressionClassifier, FERConfig, build_classifier
    from kdface.tasks.expressions.training import group_adam
    from kdface.training.speed import PRECISION_POLICIES, apply_speed_options

    policy = PRECISION_POLICIES[run_options(speed).mixed_precision]
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    config = FERConfig(backbone=network, image_size=size, batch_size=batch_size, preset="demo").resolved()
    keras.utils.set_random_seed(0)
    model = ExpressionClassifier(build_classifier(config, 7))
    model.compile(optimizer=group_adam(config, 100))
    options = run_options(speed)
    model = apply_speed_options(model, options)  # what train_run applies (the defaults: nothing)
    per_call = int(getattr(model, "steps_per_execution", 1) or 1)
    rng = np.random.default_rng(0)
    images = rng.random((batch_size, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, 7, batch_size).astype(np.int32)
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()

    torch.manual_seed(0)
    net, torch_layout = build_torch(network, size)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels.astype(np.int64))

    def torch_window(steps):
        times = []
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter())
        return _steady_rate(times, batch_size)

    def tf_window(steps):
        timer = _step_timer()
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
        return _steady_rate(timer.times, batch_size, per_call)

    tf_window(2 * per_call)
    torch_rate = torch_window(3)
    steps = window_steps(batch_size / torch_rate, window_seconds, max_steps, per_call)
    tf_rates, torch_rates = [], []
    for _ in range(repeats):
        tf_rates.append(tf_window(steps))
        torch_rates.append(torch_window(steps))
    return {"network": network, "image_size": size, "batch_size": batch_size, "steps_per_window": steps,
            "torch_model": torch_layout, "tf_images_per_s": summary(tf_rates, "images/s"),
            "torch_images_per_s": summary(torch_rates, "images/s"),
            "tf_over_torch": ratio_summary(tf_rates, torch_rates)}  # fmt: skip
