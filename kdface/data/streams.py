"""Endless, epoch-indexed training streams: what makes a resumed run see the same batches.

Keras' ``BackupAndRestore`` restores weights and the epoch counter, not the position of the
``tf.data`` iterator nor the state of its shuffles. kdface therefore builds every training input as
``epoch_stream(one_epoch, ...)``: epoch ``e`` is ``one_epoch(epoch_seed(seed, e), skip)``, a pure
function of the seed and the epoch, and a run resumed at epoch ``e``, batch ``b`` starts the stream
there (skipping ``b`` batches' worth of *elements* before any decoding). ``fit`` then runs with
``steps_per_epoch`` over the one iterator.
"""

from __future__ import annotations

import tensorflow as tf

# Large odd multiplier: epoch seeds of nearby base seeds never collide for realistic epoch counts.
_EPOCH_STRIDE = 1_000_003


def epoch_seed(seed, epoch):
    """The int64 seed of one epoch (a tensor when ``epoch`` is one)."""
    return tf.cast(seed, tf.int64) * _EPOCH_STRIDE + tf.cast(epoch, tf.int64)


def windowed_shuffle(ds: tf.data.Dataset, seed, window: int) -> tf.data.Dataset:
    """Shuffle ``ds`` within consecutive windows of ``window`` elements, statelessly from ``seed``.

    The same mixing as a shuffle buffer of that size, but a pure function of ``seed`` (a tensor is
    fine), which ``Dataset.shuffle`` is not: its seed goes through TF's global-seed logic, which
    cannot take a tensor when the global seed is 0.
    """
    seed = tf.cast(seed, tf.int64)

    def permute(window_index, elements):
        n = tf.shape(tf.nest.flatten(elements)[0])[0]
        order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([seed, window_index])))
        return tf.nest.map_structure(lambda t: tf.gather(t, order), elements)

    return ds.batch(window).enumerate().map(permute).unbatch()


def epoch_stream(one_epoch, *, seed: int, batch_size: int, start_epoch: int = 0, skip_batches: int = 0):
    """``one_epoch(epoch_seed, skip_elements)`` for epoch ``start_epoch`` (skipping ``skip_batches``
    batches), then for every following epoch, forever, prefetched."""
    if start_epoch < 0 or skip_batches < 0:
        raise ValueError(f"start_epoch and skip_batches must be >= 0, got {start_epoch}, {skip_batches}")
    first = one_epoch(epoch_seed(seed, start_epoch), tf.constant(skip_batches * batch_size, tf.int64))
    rest = tf.data.Dataset.counter(start_epoch + 1).flat_map(
        lambda epoch: one_epoch(epoch_seed(seed, epoch), tf.constant(0, tf.int64))
    )
    return first.concatenate(rest).prefetch(tf.data.AUTOTUNE)
