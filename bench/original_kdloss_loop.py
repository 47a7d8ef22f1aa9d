"""The KD-Loss student's training loop as the original code runs it, for the speed comparison.

Written from the re-implementation spec, /work/shared/specs/kd_loss_landmarks.md (shared/specs/ in the
project): §3.1 (student training: Adam 1e-3 with legacy decay 1e-4, frozen teachers whose
predictions are computed per batch with ``predict_on_batch`` in inference mode on the same images),
§3.7 ((images, g) read from disk per batch, a and s from the two teachers), §4.6 (the on-disk format:
``images/<id>.jpg`` crops and ``annotations/<id>.npy`` landmark vectors in crop pixels, normalised when
loaded) and the file the spec cites for it, aliprf/KD-Loss ``student_train.py`` (``StudentTrainer``):

* per epoch, the file names are shuffled; per step, ``_get_batch_sample`` reads the batch's images
  (``imread(path) / 255.0``: float64 in ``[0, 1]``) and annotations (``np.load`` + normalisation) one
  file at a time, then runs ``model_tough_t.predict_on_batch(img_batch)`` and
  ``model_tol_t.predict_on_batch(img_batch)``;
* ``train_step`` runs eagerly (its ``@tf.function`` is commented out): a ``tf.GradientTape`` around
  ``model_student(images, training=True)`` and the KD loss, ``tape.gradient``,
  ``optimizer.apply_gradients``, then ``tf.print`` of the four loss values and four
  ``tf.summary.scalar`` writes.

Only the loop differs from kdface: the same student and teacher models, the same loss
(:func:`kdface.losses.kd_loss`), the same optimizer and batch. The original reads images with
``skimage.io.imread``; this uses ``cv2.imread`` (+ BGR -> RGB), the faster decoder, so the baseline is
if anything flattered. Nothing of the original code is copied.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def write_crops(dataset, folder) -> tuple[list[Path], list[Path]]:
    """Write a landmark ``(images, targets)`` dataset (kdface's un-augmented crops, normalised targets)
    in the original's on-disk format (spec §4.6): ``images/<id>.jpg`` and ``annotations/<id>.npy``
    (landmarks in crop pixels). Returns the image and annotation paths, aligned."""
    import cv2

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations, index = [], [], 0
    for batch_images, batch_targets in dataset.as_numpy_iterator():
        for image, target in zip(batch_images, batch_targets, strict=True):
            size = image.shape[0]
            path = folder / "images" / f"{index:06d}.jpg"
            bgr = cv2.cvtColor(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            np.save(folder / "annotations" / f"{index:06d}.npy", ((target + 0.5) * size).astype(np.float64))
            images.append(path)
            annotations.append(folder / "annotations" / f"{index:06d}.npy")
            index += 1
    return images, annotations


class OriginalStyleKDLoop:
    """``StudentTrainer.train``'s inner loop (see the module doc), over files on disk."""

    def __init__(self, student, tough, tolerant, optimizer, images, annotations, *, batch_size: int,
                 image_size: int, loss_weights=(2.0, 1.0, 1.0), log_dir, seed: int = 0):  # fmt: skip
        import tensorflow as tf

        self.student, self.tough, self.tolerant = student, tough, tolerant
        self.optimizer = optimizer
        self.images, self.annotations = list(images), list(annotations)
        self.batch_size, self.image_size = batch_size, image_size
        self.loss_weights = loss_weights
        self.rng = np.random.default_rng(seed)
        self.steps_per_epoch = len(self.images) // batch_size
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.images)} images make no batch of {batch_size}")
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.summary_writer = tf.summary.create_file_writer(str(log_dir / "summaries"))
        self.print_stream = f"file://{log_dir / 'train_log.txt'}"
        self.epoch, self.batch_index = 0, 0
        self._shuffle()

    def _shuffle(self):  # sklearn.utils.shuffle(filenames, labels) at every epoch's start
        order = self.rng.permutation(len(self.images))
        self.images = [self.images[i] for i in order]
        self.annotations = [self.annotations[i] for i in order]

    def _load_and_normalize(self, path):
        return np.load(path) / self.image_size - 0.5  # crop pixels -> kdface's normalised coordinates

    def get_batch_sample(self, batch_index):
        """Images and annotations read file by file, then both teachers' ``predict_on_batch``."""
        import cv2

        lo, hi = batch_index * self.batch_size, (batch_index + 1) * self.batch_size
        img_batch = (
            np.array([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in self.images[lo:hi]])
            / 255.0
        )
        pn_batch = np.array([self._load_and_normalize(p) for p in self.annotations[lo:hi]])
        pn_batch_tough = self.tough.predict_on_batch(img_batch)
        pn_batch_tol = self.tolerant.predict_on_batch(img_batch)
        return img_batch, pn_batch, pn_batch_tough, pn_batch_tol

    def train_step(self, epoch, step, images, annotation_gr, annotation_tough, annotation_tol):
        """Eager: tape, forward, KD loss, gradients, apply, print and summaries (no ``tf.function``)."""
        import tensorflow as tf

        from kdface.losses import kd_loss

        main_w, tough_w, tol_w = self.loss_weights
        with tf.GradientTape() as tape:
            predicted = self.student(images, training=True)
            terms = kd_loss(annotation_gr, predicted, annotation_tough, annotation_tol, main_weight=main_w,
                            tough_weight=tough_w, tolerant_weight=tol_w)  # fmt: skip
        gradients = tape.gradient(terms.total, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.student.trainable_variables, strict=True))
        tf.print("->EPOCH:", epoch, "->STEP:", step, "/", self.steps_per_epoch, "-> LOSS:", terms.total,
                 "main:", terms.main, "tough:", terms.aloss_tough, "tol:", terms.aloss_tolerant,
                 output_stream=self.print_stream)  # fmt: skip
        with self.summary_writer.as_default():
            for name, value in zip(
                ("LOSS", "loss_main", "loss_tough_assist", "loss_tol_assist"), terms, strict=True
            ):
                tf.summary.scalar(name, value, step=epoch)

    def run(self, steps: int) -> list[float]:
        """Train ``steps`` steps (continuing across epochs); the wall-clock time at each step's end."""
        import tensorflow as tf

        times = []
        for _ in range(steps):
            if self.batch_index == self.steps_per_epoch:
                self.epoch, self.batch_index = self.epoch + 1, 0
                self._shuffle()
            images, gr, tough, tol = self.get_batch_sample(self.batch_index)
            self.train_step(self.epoch, self.batch_index, tf.cast(images, tf.float32), tf.cast(gr, tf.float32),
                            tf.cast(tough, tf.float32), tf.cast(tol, tf.float32))  # fmt: skip
            self.batch_index += 1
            times.append(time.perf_counter())
        return times


def original_loop_for(contender, work) -> OriginalStyleKDLoop:
    """An :class:`OriginalStyleKDLoop` on a built KD-Loss student contender (``bench.methods``): its
    student and teachers, batch, optimizer settings and loss weights, over its training split's crops
    written to ``work`` in the original's format."""
    from kdface.methods.kdloss import _optimizer
    from kdface.tasks.landmarks.pipeline import landmark_dataset

    config, data, model = contender.config, contender.data, contender.model
    crops = landmark_dataset(
        data.source.dataset, image_size=config.image_size, batch_size=64, crop=config.crop()
    )
    images, annotations = write_crops(crops, Path(work) / "data")
    return OriginalStyleKDLoop(model.student, model.tough, model.tolerant, _optimizer(config, data.steps_per_epoch),
                               images, annotations, batch_size=contender.batch_size, image_size=config.image_size,
                               loss_weights=model.loss_weights, log_dir=Path(work) / "logs")  # fmt: skip


def kdloss_vs_original(size: str, data_root: str, tfds_dir: str, quick: bool = False, window_seconds: float = 2.0,
                       repeats: int = 3, max_steps: int = 40, speed: dict | None = None) -> dict:  # fmt: skip
    """KD-Loss student images/s: kdface (``trainer.fit`` on ``KDLossDistiller``, the preset's stream:
    live teachers and online augmentation at ``paper``, cached teachers at ``demo``) against
    :class:`OriginalStyleKDLoop` on the same student and teachers, batch, optimizer settings and loss,
    reading the same training crops from disk. Interleaved windows (kdface, original, ...), steady-state
    images/s (first step of a window excluded). Target: kdface >= 3x the original. (A full run measures
    this inside the ``train_kdloss_student`` process, beside its other contenders.)"""
    from bench.training import train_step

    row = train_step("kdloss_student", size, data_root, tfds_dir, quick, window_seconds, repeats, max_steps,
                     original_loop=True, contenders=("kdface",), speed=speed)  # fmt: skip
    return row["vs_original"]
