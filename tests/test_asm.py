import numpy as np
import tensorflow as tf

from kdface.tasks.landmarks.asm import ActiveShapeModel


def _shapes(seed=0, m=400, n=10):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=2 * n)
    # three modes with decreasing variance (10, 3, 1) plus small isotropic noise
    modes = np.linalg.qr(rng.normal(size=(2 * n, 3)))[0]
    coeffs = rng.normal(size=(m, 3)) * np.sqrt([10.0, 3.0, 1.0])
    return base + coeffs @ modes.T + 0.01 * rng.normal(size=(m, 2 * n)), modes


def test_keeps_fewest_components_reaching_the_variance():
    x, _ = _shapes()
    # variances 10, 3, 1 (+ tiny noise): 10/14 = 71 %, 13/14 = 93 % -> 90 % needs 2 components
    assert ActiveShapeModel.fit(x, 0.90).num_components == 2
    assert ActiveShapeModel.fit(x, 0.70).num_components == 1
    assert ActiveShapeModel.fit(x, 0.95).num_components == 3


def test_projection_properties():
    x, _ = _shapes()
    asm = ActiveShapeModel.fit(x, 0.90)
    assert np.allclose(asm.components.T @ asm.components, np.eye(2), atol=1e-5)
    np.testing.assert_allclose(asm.project(asm.mean), asm.mean, atol=1e-5)  # the mean shape is kept
    soft = asm.project(x)
    np.testing.assert_allclose(asm.project(soft), soft, atol=1e-4)  # idempotent
    # soft targets lie in the span and their coefficients are clamped to +-3 sqrt(lambda)
    b = (soft - asm.mean) @ asm.components
    assert np.all(np.abs(b) <= 3 * np.sqrt(asm.eigenvalues) + 1e-4)
    # an outlier far along the first mode is clamped exactly to the 3-sigma boundary
    outlier = asm.mean + 100 * asm.components[:, 0]
    b_out = (asm.project(outlier) - asm.mean) @ asm.components
    np.testing.assert_allclose(b_out[0], 3 * np.sqrt(asm.eigenvalues[0]), rtol=1e-4)
    # the soft targets differ from the hard ones (it is a real smoothing) but explain most of them
    assert np.mean((soft - x) ** 2) > 0
    assert np.mean((soft - x) ** 2) < 0.2 * np.mean((x - asm.mean) ** 2)


def test_tf_projection_matches_numpy_and_roundtrip(tmp_path):
    x, _ = _shapes()
    asm = ActiveShapeModel.fit(x, 0.90)
    np.testing.assert_allclose(
        asm.project_tf(tf.constant(x[:5], tf.float32)).numpy(), asm.project(x[:5]), atol=1e-4
    )
    asm.save(tmp_path / "asm.npz")
    loaded = ActiveShapeModel.load(tmp_path / "asm.npz")
    np.testing.assert_allclose(loaded.project(x[:5]), asm.project(x[:5]), atol=1e-6)
    assert loaded.variance == 0.9
