"""Distribution on TensorFlow's own engine (``tf.distribute``), shared by every method.

* ``--strategy``: ``auto`` (a TPU if one is visible, else multi-worker when ``TF_CONFIG`` or Slurm
  names several workers, else mirrored over all local GPUs when there are several, else the default
  single-device strategy), ``default``, ``mirrored``, ``multiworker``, ``tpu``.
* Models, optimizers and teachers are built under ``strategy.scope()`` (the method modules do it
  through :func:`scope`); ``fit`` then distributes the ``tf.data`` stream itself.
* ``--batch-size`` is the **global** batch (split over replicas), so a run's optimisation does not
  change with the number of devices; scale the learning rate yourself if you raise the batch with the
  device count (docs/distributed.md).
* Losses: Keras sums the replicas' gradients, so a loss must be each replica's mean divided by the
  number of replicas (:func:`per_replica_share`); compiled Keras losses already are. Batch-level terms
  are computed per replica (documented per method).
* The training stream is sharded by *data* (every worker reads the same epoch-indexed order and keeps
  its share), never by file: exact resume needs one global order that is a function of (seed, epoch).
* Only the chief writes (:func:`is_chief`): backups, models, logs, reports.
"""

from __future__ import annotations

import contextlib
import json
import os

import tensorflow as tf

from kdface.errors import RunError

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


def _workers_in_tf_config() -> int:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _slurm_workers() -> int:
    return int(os.environ.get("SLURM_NTASKS", "1")) if "SLURM_JOB_ID" in os.environ else 1


def _cluster_resolver():
    """TF_CONFIG if set, else Slurm's environment (one task per node or per GPU), else None."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if _slurm_workers() > 1:
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    return None


def _tpu_strategy():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except ValueError as exc:  # no TPU name or address to connect to
        raise RunError(
            f"--strategy tpu: no TPU found ({exc}); set TPU_NAME, or choose another --strategy"
        ) from None
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def make_strategy(name: str = "auto", sync_batchnorm: bool = False) -> tf.distribute.Strategy:
    """The ``tf.distribute.Strategy`` for ``--strategy name`` (see module doc)."""
    if name not in STRATEGIES:
        raise RunError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "tpu":
        return _tpu_strategy()
    if name == "multiworker":
        resolver = _cluster_resolver()
        if resolver is None:
            raise RunError(
                "--strategy multiworker needs TF_CONFIG (or a Slurm job with several tasks) to find the "
                "other workers; see docs/distributed.md"
            )
        patch_keras_multiworker_reduce()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto":
        if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR"):
            return _tpu_strategy()
        if _workers_in_tf_config() > 1 or _slurm_workers() > 1:
            patch_keras_multiworker_reduce()
            return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_cluster_resolver())
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def scope(strategy: tf.distribute.Strategy | None):
    """``strategy.scope()``, or nothing for ``None``."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def num_replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def per_replica_share(loss):
    """A replica's mean loss scaled so that the replicas' summed gradients are the global mean's.

    Keras' TF trainer sums gradients over replicas; its own compiled losses are scaled like this.
    A method whose ``compute_loss`` builds the loss itself returns ``per_replica_share(mean)``.
    """
    replicas = num_replicas()
    return loss if replicas == 1 else loss * tf.cast(1.0 / replicas, loss.dtype)


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes files: always, except a non-chief multi-worker process."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type in (None, "chief"):
        return True
    has_chief = "chief" in (resolver.cluster_spec().as_dict() or {})
    return task_type == "worker" and task_id == 0 and not has_chief


def synchronize_batchnorm(model) -> int:
    """Make every BatchNormalization in ``model`` (nested models included) compute its batch statistics
    over all replicas (``synchronized=True``); returns how many layers were switched."""
    import keras

    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += synchronize_batchnorm(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            count += 1
    return count


def distribute_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by data: every worker builds the same epoch-indexed stream and keeps its share."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def patch_keras_multiworker_reduce() -> None:
    """Work around Keras 3.15's ``fit`` under MultiWorkerMirroredStrategy.

    Its step function reduces each replica's (scalar) metric results with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for 0-d tensors ("Invalid reduction dimension
    0 for input with 0 dimensions"); every metric is a scalar, so ``fit`` cannot run at all. kdface
    replaces the module-level ``reduce_per_replica`` with one that reduces scalars with ``axis=None``
    (the mean over replicas, which is what ``axis=0`` means for the non-scalar case). Applied only
    when a multi-worker strategy is in use; remove once Keras fixes it.
    """
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "_kdface_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
            import keras

            def reduce(value):
                if isinstance(value, tf.distribute.DistributedValues) or tf.is_tensor(value):
                    rank = value.values[0].shape.rank if hasattr(value, "values") else value.shape.rank
                    return strategy.reduce("MEAN", value, axis=None if rank == 0 else 0)
                return value

            return keras.tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._kdface_patched = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica
