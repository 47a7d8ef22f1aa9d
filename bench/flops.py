"""Model FLOPs, counted by TensorFlow's profiler on the graph of a ``tf.function``.

``forward_flops(fn, image_size)`` traces ``fn`` on one ``(1, S, S, 3)`` image and sums the
``flops`` statistic TensorFlow registers per op (``tf.compat.v1.profiler``, ``float_operation``):
Conv2D / DepthwiseConv2dNative / MatMul count 2 FLOPs per multiply-accumulate, element-wise ops
(BatchNorm, activations, adds) one per element. Backward ops have no registered statistic, so a
training step is estimated as 3x the forward FLOPs of what is trained (forward, input gradient,
weight gradient) plus 1x the forward of what only runs forward (frozen teachers).
"""

from __future__ import annotations


def forward_flops(fn, image_size: int) -> int:
    """FLOPs of ``fn`` on one image (the profiler's sum over the traced graph)."""
    import tensorflow as tf

    concrete = tf.function(fn).get_concrete_function(
        tf.TensorSpec((1, image_size, image_size, 3), tf.float32)
    )
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                         options=options)  # fmt: skip
    return int(info.total_float_ops)


def training_flops(trained: list, frozen: list, image_size: int) -> dict:
    """``{"forward_trained", "forward_frozen", "train_step"}`` FLOPs per image (see the module doc)."""
    fwd_trained = sum(forward_flops(fn, image_size) for _, fn in trained)
    fwd_frozen = sum(forward_flops(fn, image_size) for _, fn in frozen)
    return {"forward_trained": fwd_trained, "forward_frozen": fwd_frozen, "train_step": 3 * fwd_trained + fwd_frozen,
            "method": "tf.compat.v1.profiler float_operation on the forward graph; train = 3x trained + 1x frozen"}  # fmt: skip
