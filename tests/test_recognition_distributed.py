"""Recognition under tf.distribute: one F-SKD student step (frozen teacher, CosFace head, coupled-L2 SGD)
on 2 replicas equals the same step on one device (losses and updates), since every term is a batch mean."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MIRRORED_FSKD_STEP = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from kdface.heads import MarginHead
    from kdface.methods.fskd import FSKD
    from kdface.tasks.recognition.training import LowResolutionDistiller
    from kdface.training.distribute import synchronize_batchnorm
    from kdface.training.optimizers import CoupledSGD

    SIZE, BATCH, K = 16, 8, 5
    rng = np.random.default_rng(0)
    x = {"hr": rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3)).astype("float32"),
         "lr": rng.uniform(0, 1, (BATCH, SIZE, SIZE, 3)).astype("float32")}
    y = rng.integers(0, K, BATCH)

    def backbone(name):  # a small stand-in with the contract's outputs (iResNet tracing on 2 replicas is slow)
        inputs = keras.Input((SIZE, SIZE, 3))
        h, stages = inputs, []
        for i, width in enumerate((4, 6, 8, 8)):
            h = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False)(h)
            h = keras.layers.BatchNormalization(momentum=0.9)(h)
            stages.append(h)
        embedding = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(inputs, {"feature_map": h, "embedding": embedding,
                                    **{f"stage{i + 1}": s for i, s in enumerate(stages)}}, name=name)

    def build():
        keras.utils.set_random_seed(1)
        model = LowResolutionDistiller(backbone("student"), MarginHead(K), backbone("teacher"), FSKD, 20.0)
        synchronize_batchnorm(model.backbone)
        model.compile(optimizer=CoupledSGD(0.1, coupled_weight_decay=5e-4))
        return model

    runs = {}
    for name, strategy in (("single", tf.distribute.get_strategy()),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        with strategy.scope():
            model = build()
        before = [w.copy() for w in model.get_weights()]
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        history = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        delta = [a - b for a, b in zip(model.get_weights(), before)]
        runs[name] = ({k: float(v[-1]) for k, v in history.history.items()}, delta, strategy.num_replicas_in_sync)
    (l1, d1, r1), (l2, d2, r2) = runs["single"], runs["mirrored"]
    print("RESULT " + json.dumps({"replicas": [r1, r2], "logs": [l1, l2],
                                  "max_update_diff": max(float(np.abs(a - b).max()) for a, b in zip(d1, d2)),
                                  "max_update": max(float(np.abs(d).max()) for d in d1)}))
""")


@pytest.mark.slow
def test_mirrored_fskd_student_step_equals_the_single_device_step():
    result = subprocess.run([sys.executable, "-c", MIRRORED_FSKD_STEP], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert out["replicas"] == [1, 2], out
    single, mirrored = out["logs"]
    for term in ("loss", "ce", "distill"):
        assert abs(single[term] - mirrored[term]) <= 1e-5 * abs(single[term]) + 1e-7, (term, out)
    assert single["distill"] > 0
    assert out["max_update_diff"] <= 1e-4 * out["max_update"], out
