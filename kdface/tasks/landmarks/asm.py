"""Active Shape Model soft landmarks: the Tolerant-Teacher's targets (KD-Loss spec §2).

PCA on the training set's normalised landmark vectors, keeping the fewest components that explain
``variance`` (90 % in the original) of the variance; each target is projected onto them with its
coefficients clamped to ``+-3 sqrt(lambda_i)``: ``x_soft = mu + V clip(V^T (x - mu))``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from kdface.io.atomic import atomic_path


class ActiveShapeModel:
    def __init__(self, mean, components, eigenvalues, variance: float):
        self.mean = np.asarray(mean, np.float32)  # (2N,)
        self.components = np.asarray(components, np.float32)  # (2N, k), orthonormal columns
        self.eigenvalues = np.asarray(eigenvalues, np.float32)  # (k,)
        self.variance = float(variance)

    @property
    def num_components(self) -> int:
        return self.components.shape[1]

    @classmethod
    def fit(cls, vectors, variance: float = 0.9) -> ActiveShapeModel:
        """Fit on ``(M, 2N)`` normalised landmark vectors (sklearn ``PCA(n_components=variance)`` semantics)."""
        if not 0 < variance <= 1:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        x = np.asarray(vectors, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need at least 2 landmark vectors of shape (M, 2N), got {x.shape}")
        mean = x.mean(axis=0)
        _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
        eigenvalues = singular**2 / (len(x) - 1)
        ratio = np.cumsum(eigenvalues) / eigenvalues.sum()
        k = int(np.searchsorted(ratio, variance - 1e-12) + 1) if variance < 1 else len(eigenvalues)
        return cls(mean, vt[:k].T, eigenvalues[:k], variance)

    def project(self, vectors):
        """NumPy projection of ``(..., 2N)`` vectors onto the clamped shape space."""
        b = (np.asarray(vectors, np.float32) - self.mean) @ self.components
        limit = 3.0 * np.sqrt(self.eigenvalues)
        return self.mean + np.clip(b, -limit, limit) @ self.components.T

    def project_tf(self, vectors):
        """The same projection as a TensorFlow op, for use inside a ``tf.data`` map."""
        mean = tf.constant(self.mean)
        components = tf.constant(self.components)
        limit = tf.constant(3.0 * np.sqrt(self.eigenvalues))
        b = tf.linalg.matvec(components, vectors - mean, transpose_a=True)
        return mean + tf.linalg.matvec(components, tf.clip_by_value(b, -limit, limit))

    def save(self, path) -> None:
        with atomic_path(path) as tmp:
            np.savez(tmp, mean=self.mean, components=self.components, eigenvalues=self.eigenvalues,
                     variance=np.float64(self.variance))  # fmt: skip

    @classmethod
    def load(cls, path) -> ActiveShapeModel:
        with np.load(path) as data:
            return cls(data["mean"], data["components"], data["eigenvalues"], float(data["variance"]))
