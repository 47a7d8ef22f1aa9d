"""SCN: the spec's worked examples (rank regularisation, weighted CE, relabelling), the relabel rule
on a hand-made batch through the real train step, exact and reproducible label noise, the label
report, SCN's augmentation, deployable model and exact resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import encoded_split, interrupted_run_resumes_exactly

from kdface.data.label_noise import LabelNoise, inject_label_noise
from kdface.losses import (
    high_group_size,
    low_importance_mask,
    scn_loss,
    scn_rank_regularization,
    scn_relabel,
    scn_weighted_cross_entropy,
)
from kdface.methods import scn
from kdface.tasks.expressions.pipeline import (
    IMAGENET_MEAN,
    expression_training_stream,
    random_erasing,
)
from kdface.training.optimizers import GroupAdam

# --- losses: spec B2 worked examples ---------------------------------------------------------------------


def test_rank_regularization_worked_examples():
    wide = [0.95, 0.90, 0.88, 0.85, 0.80, 0.78, 0.75, 0.70, 0.60, 0.50]  # gap 0.24429 > 0.15
    assert float(scn_rank_regularization(wide)) == 0.0
    narrow = [0.90, 0.88, 0.87, 0.86, 0.85, 0.85, 0.84, 0.83, 0.80, 0.80]  # 0.15 - (0.86429 - 0.81)
    assert float(scn_rank_regularization(narrow)) == pytest.approx(0.09571, abs=1e-5)
    # the order of the batch does not matter, only the sorted weights; (B, 1) is accepted
    shuffled = np.random.default_rng(0).permutation(narrow).reshape(-1, 1)
    assert float(scn_rank_regularization(shuffled)) == pytest.approx(0.09571, abs=1e-5)
    assert float(scn_rank_regularization(narrow, margin=0.05)) == 0.0


def test_high_group_is_floor_of_batch_times_beta_in_double_precision():
    assert [int(high_group_size(b)) for b in (64, 47, 10, 3, 1)] == [44, 32, 7, 2, 0]
    assert int(high_group_size(10, beta=0.7)) == 7  # float32 would give 6
    assert float(scn_rank_regularization([0.3])) == 0.0  # one sample: no split, no NaN


def test_rank_regularization_gradient_moves_high_up_and_low_down():
    alpha = tf.Variable([0.90, 0.88, 0.87, 0.86, 0.85, 0.85, 0.84, 0.83, 0.80, 0.80])
    with tf.GradientTape() as tape:
        loss = scn_rank_regularization(alpha)
    grad = tape.gradient(loss, alpha).numpy()
    np.testing.assert_allclose(grad[:7], -1 / 7, rtol=1e-6)  # d(-mean_H)/d alpha_H
    np.testing.assert_allclose(grad[7:], 1 / 3, rtol=1e-6)  # d(+mean_L)/d alpha_L


def test_weighted_cross_entropy_worked_example():
    assert float(scn_weighted_cross_entropy([0], [[2.0, 1.0, 0.0]], [0.5])) == pytest.approx(
        0.68027, abs=1e-5
    )
    assert float(scn_weighted_cross_entropy([0], [[2.0, 1.0, 0.0]], [1.0])) == pytest.approx(
        0.40761, abs=1e-5
    )
    terms = scn_loss([0, 0], [[2.0, 1.0, 0.0]] * 2, [[0.5], [1.0]], margin=0.9)
    assert float(terms.weighted_cross_entropy) == pytest.approx((0.68027 + 0.40761) / 2, abs=1e-5)
    # B = 2, beta 0.7: high group = floor(1.4) = 1 -> RR = 0.9 - (1.0 - 0.5)
    assert float(terms.rank_regularization) == pytest.approx(0.4, abs=1e-6)
    assert float(terms.total) == pytest.approx(float(terms.weighted_cross_entropy) + 0.4, abs=1e-6)


def test_relabel_worked_example_alpha_flattens_p():
    z = tf.constant([[3.0, 0, 1, 0, 0, 0, 0]] * 2)
    alpha = tf.constant([[1.0], [0.3]])
    p = tf.nn.softmax(alpha * z)
    np.testing.assert_allclose(p[0, :3], [0.7224, 0.0360, 0.0978], atol=1e-4)
    np.testing.assert_allclose(p[1, :3], [0.2792, 0.1135, 0.1532], atol=1e-4)
    new, changed = scn_relabel([2, 2], p)
    assert new.numpy().tolist() == [0, 2] and changed.numpy().tolist() == [True, False]


def test_relabel_rule_on_a_hand_made_batch():
    p = tf.constant([
        [0.80, 0.10, 0.10],  # label 1: 0.80 - 0.10 > 0.2 -> 0
        [0.80, 0.10, 0.10],  # label 0: already the argmax -> kept
        [0.50, 0.35, 0.15],  # label 1: 0.50 - 0.35 = 0.15 -> kept
        [0.10, 0.15, 0.75],  # label 0: 0.65 -> 2
        [0.34, 0.33, 0.33],  # label 2: 0.01 -> kept
    ])  # fmt: skip
    labels = [1, 0, 1, 0, 2]
    new, changed = scn_relabel(labels, p)
    assert new.numpy().tolist() == [0, 0, 1, 2, 2]
    assert changed.numpy().tolist() == [True, False, False, True, False]
    # the paper's variant: only the low-importance group may change
    weights = [0.9, 0.8, 0.7, 0.2, 0.6]  # B = 5: high = top 3 (0.9, 0.8, 0.7), low = (0.2, 0.6)
    low = low_importance_mask(weights)
    assert low.numpy().tolist() == [False, False, False, True, True]
    new, changed = scn_relabel(labels, p, candidates=low)
    assert new.numpy().tolist() == [1, 0, 1, 2, 2]  # sample 0 is confidently wrong but high-importance
    new, _ = scn_relabel(labels, p, margin=0.6)
    assert new.numpy().tolist() == [0, 0, 1, 2, 2]  # 0.70 and 0.65 both exceed 0.6


# --- label noise -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "fraction", "expected"), [(1500, 0.1, 150), (1500, 0.2, 300), (1350, 0.3, 405),
                                                          (15, 0.1, 2), (25, 0.1, 3), (10, 0.0, 0)])  # fmt: skip
def test_label_noise_flips_an_exact_count_to_other_classes(n, fraction, expected):
    labels = np.arange(n) % 7
    noisy, flipped = inject_label_noise(labels, fraction, 7, seed=3)
    assert flipped.sum() == expected  # round half up: 1.5 -> 2, 2.5 -> 3
    assert np.all(noisy[flipped] != labels[flipped]) and np.all(noisy[~flipped] == labels[~flipped])
    assert noisy.min() >= 0 and noisy.max() < 7


def test_label_noise_is_reproducible_by_seed_and_uniform_over_other_classes():
    labels = np.zeros(7000, np.int32)
    a = inject_label_noise(labels, 0.5, 7, seed=1)
    b = inject_label_noise(labels, 0.5, 7, seed=1)
    c = inject_label_noise(labels, 0.5, 7, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    counts = np.bincount(a[0][a[1]], minlength=7)
    assert counts[0] == 0 and np.all(np.abs(counts[1:] / 3500 - 1 / 6) < 0.03), counts
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        inject_label_noise(labels, 1.0, 7)


def test_label_noise_record_and_report():
    noise = LabelNoise.inject([b"a", b"b", b"c", b"d"], [0, 1, 2, 0], 0.5, 3, seed=0)
    assert noise.count == 2 and noise.summary() == {"fraction": 0.5, "seed": 0, "flipped": 2, "samples": 4}
    rows = noise.csv(["x", "y", "z"]).splitlines()
    assert rows[0] == "index,key,original,noisy,flipped" and rows[1].startswith("0,a,x,")
    # a hand-made outcome: weights separate clean from flipped; relabelling restored one flipped label
    # and moved one clean label
    flipped = noise.flipped
    weights = np.where(flipped, 0.2, 0.8)
    final = noise.noisy.copy()
    first_flipped, first_clean = np.flatnonzero(flipped)[0], np.flatnonzero(~flipped)[0]
    final[first_flipped] = noise.original[first_flipped]
    final[first_clean] = (noise.original[first_clean] + 1) % 3
    report = scn.label_report(weights, noise, final)
    assert report["importance_auc_clean_over_flipped"] == 1.0
    assert report["importance_clean"]["mean"] == pytest.approx(0.8)
    assert report["flipped_restored"] == 1 and report["clean_changed_to_wrong"] == 1
    assert report["relabelled"] == 2 and report["final_label_errors"] == 2
    path = scn.plot_label_report(weights, noise, report, "/tmp/kdface_test_label_report.png")
    assert path.stat().st_size > 1000


# --- augmentation ---------------------------------------------------------------------------------------------


def test_scn_erasing_fills_the_imagenet_mean_with_probability_half():
    image = tf.zeros((32, 32, 3))
    applied = 0
    for i in range(200):
        out = random_erasing(image, tf.constant([i, 0], tf.int64), scn.AUGMENTATION.view_erasing).numpy()
        erased = np.any(out != 0, axis=-1)
        if erased.any():
            applied += 1
            np.testing.assert_allclose(
                out[erased], np.broadcast_to(IMAGENET_MEAN, out[erased].shape), atol=1e-6
            )
            area = erased.sum() / 1024
            assert 0.01 <= area <= 0.27, area
    assert 70 <= applied <= 130, applied


def test_scn_stream_yields_sample_indices_and_one_augmentation_at_most():
    split = encoded_split([0, 1, 2, 0, 1, 2, 0, 1])
    stream = expression_training_stream(split, image_size=32, batch_size=8, num_classes=3, augment=scn.AUGMENTATION.augment,
                                         view_erasing=scn.AUGMENTATION.view_erasing, with_index=True, seed=0)  # fmt: skip
    x, y = next(iter(stream))
    assert sorted(x["index"].numpy().tolist()) == list(range(8))  # a permutation of the split
    np.testing.assert_array_equal(split.labels[x["index"].numpy()], y.numpy())


# --- the model and its train step ---------------------------------------------------------------------------

K = 7


def _fixed_network(alpha_logit: float, size=8):
    """images -> [alpha = sigmoid(alpha_logit), z = (3, 0, 1, 0, 0, 0, 0)] for every image: the spec's
    relabel example, whatever the image (zero kernels, fixed biases)."""
    images = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    importance = keras.layers.Dense(1, activation="sigmoid", name="importance", kernel_initializer="zeros",
                                    bias_initializer=keras.initializers.Constant(alpha_logit))(pooled)  # fmt: skip
    z = np.array([3.0, 0, 1, 0, 0, 0, 0], np.float32)
    logits = keras.layers.Dense(K, name="classifier", kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant(z))(pooled)  # fmt: skip
    return keras.Model(images, {"importance": importance, "logits": logits})


def _step(model, index, size=8):
    x = {"image": np.zeros((len(index), size, size, 3), np.float32), "index": np.asarray(index, np.int32)}
    return model.train_on_batch(x, np.zeros(len(index), np.int32), return_dict=True)


@pytest.mark.parametrize(("alpha_logit", "relabelled"), [(20.0, True), (-0.8473, False)])  # alpha 1 / 0.3
def test_train_step_relabels_from_the_configured_epoch(alpha_logit, relabelled):
    model = scn.SCN(_fixed_network(alpha_logit), num_samples=6, relabel_epoch=2)
    model.set_labels([2, 2, 0, 2, 5, 1])
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # the outputs stay the spec's
    logs = _step(model, [0, 1, 2, 3])  # epoch 1: before relabel_epoch -> nothing changes
    assert model.labels.numpy().tolist() == [2, 2, 0, 2, 5, 1] and logs["relabels"] == 0
    model.epoch_index.assign(1)  # what the trainer does at the start of (0-based) epoch 1
    logs = _step(model, [0, 2, 3])  # epoch 2: the batch's samples may change, the others not
    expected = [0, 2, 0, 0, 5, 1] if relabelled else [2, 2, 0, 2, 5, 1]
    assert model.labels.numpy().tolist() == expected
    assert logs["relabels"] == (2 if relabelled else 0)


def test_the_step_uses_the_variable_labels_and_the_old_label_for_its_own_loss():
    model = scn.SCN(_fixed_network(20.0), num_samples=2, relabel_epoch=1)
    model.set_labels([2, 0])
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = _step(model, [0, 0])  # label 2 (the stream's label 0 is ignored) -> CE of class 2
    expected = float(scn_weighted_cross_entropy([2, 2], [[3.0, 0, 1, 0, 0, 0, 0]] * 2, [1.0, 1.0]))
    assert logs["weighted_ce"] == pytest.approx(expected, rel=1e-5)
    assert model.labels.numpy().tolist() == [0, 0]
    logs = _step(model, [0, 0])  # now label 0
    expected = float(scn_weighted_cross_entropy([0, 0], [[3.0, 0, 1, 0, 0, 0, 0]] * 2, [1.0, 1.0]))
    assert logs["weighted_ce"] == pytest.approx(expected, rel=1e-5)


def test_relabel_scope_low_only_touches_the_low_importance_group():
    images = keras.Input((8, 8, 3))
    # alpha grows with the mean pixel value; z as in the spec
    pooled = keras.layers.GlobalAveragePooling2D()(images)
    importance = keras.layers.Dense(1, activation="sigmoid", name="importance", kernel_initializer="ones",
                                    bias_initializer="zeros")(pooled)  # fmt: skip
    logits = keras.layers.Dense(K, name="classifier", kernel_initializer="zeros",
                                bias_initializer=keras.initializers.Constant([30.0, 0, 1, 0, 0, 0, 0]))(pooled)  # fmt: skip
    model = scn.SCN(keras.Model(images, {"importance": importance, "logits": logits}), num_samples=5,
                    relabel_epoch=1, relabel_scope="low")  # fmt: skip
    model.set_labels([2] * 5)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x = {"image": np.stack([np.full((8, 8, 3), v / 10, np.float32) for v in (5, 1, 4, 2, 3)]),
         "index": np.arange(5, dtype=np.int32)}  # fmt: skip
    model.train_on_batch(x, np.zeros(5, np.int32))
    # B = 5: the high group is the top 3 (pixel values 5, 4, 3); only samples 1 and 3 change
    assert model.labels.numpy().tolist() == [2, 0, 2, 0, 2]


def test_deploy_model_outputs_weighted_probabilities_and_saves_safely(tmp_path):
    config = scn.SCNConfig(image_size=32).resolved()
    network = scn.build_scn_network(config, K)
    model = scn.SCN(network, num_samples=3)
    images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    outputs = network(images)
    alpha, z = np.asarray(outputs["importance"]), np.asarray(outputs["logits"])
    expected = tf.nn.softmax(alpha * z).numpy()
    np.testing.assert_allclose(model.deploy_model(images), expected, atol=1e-6)
    assert np.all((alpha > 0) & (alpha < 1))
    model.deploy_model.save(tmp_path / "scn.keras")
    from kdface.io.safe_load import load_keras_model
    from kdface.tasks.expressions.evaluation import with_per_image_output

    loaded = load_keras_model(tmp_path / "scn.keras")
    p, w = with_per_image_output(loaded, scn.IMPORTANCE_LAYER).predict_on_batch(images)
    np.testing.assert_allclose(p, expected, atol=1e-6)
    np.testing.assert_allclose(w, alpha, atol=1e-6)


def test_iresnet_backbone_builds_for_scn():
    config = scn.SCNConfig(image_size=32, backbone="iresnet18").resolved()
    network = scn.build_scn_network(config, K)
    assert {k: tuple(t.shape) for k, t in network.output.items()} == {
        "importance": (None, 1),
        "logits": (None, K),
    }
    assert network.get_layer("iresnet18").output["embedding"].shape[-1] == 512


def test_scn_run_interrupted_mid_epoch_resumes_to_identical_weights_and_labels(tmp_path):
    """SCN inherits exact resume: the indexed stream with SCN's augmentation, the relabelled labels
    (a model variable, saved in every backup) and the epoch that gates relabelling."""
    split = encoded_split([0, 0, 0, 0, 1, 1, 2, 2, 0, 1, 2, 0], size=40)

    def stream(start_epoch, skip):
        return expression_training_stream(split, image_size=32, batch_size=4, num_classes=3, augment=scn.AUGMENTATION.augment,
                                          view_erasing=scn.AUGMENTATION.view_erasing, with_index=True, seed=1,
                                          start_epoch=start_epoch, skip_batches=skip)  # fmt: skip

    def model(seed):
        keras.utils.set_random_seed(seed)
        images = keras.Input((32, 32, 3))
        h = keras.layers.Conv2D(4, 3, strides=8, padding="same")(images)
        h = keras.layers.BatchNormalization()(h)
        pooled = keras.layers.GlobalAveragePooling2D()(h)
        net = keras.Model(images, {"importance": keras.layers.Dense(1, activation="sigmoid", name="importance")(pooled),
                                   "logits": keras.layers.Dense(3, name="classifier")(pooled)})  # fmt: skip
        m = scn.SCN(net, num_samples=len(split), relabel_epoch=2, relabel_margin=0.0)
        m.set_labels(split.labels)
        m.compile(optimizer=GroupAdam(1e-2, coupled_weight_decay=1e-4))
        return m

    full, resumed = interrupted_run_resumes_exactly(model, stream, tmp_path)
    assert not np.array_equal(full.labels.numpy(), split.labels)  # relabelling happened
    np.testing.assert_array_equal(resumed.labels.numpy(), full.labels.numpy())


def test_config_checks():
    with pytest.raises(ValueError, match="relabel_scope"):
        scn.SCNConfig(relabel_scope="some").resolved()
    with pytest.raises(ValueError, match="label_noise"):
        scn.SCNConfig(label_noise=1.5).resolved()
    config = scn.SCNConfig(preset="paper").resolved()
    assert (config.image_size, config.batch_size, config.epochs, config.relabel_epoch, config.margin) == (
        224, 64, 70, 10, 0.15)  # fmt: skip
    assert config.augment_style == "scn" and config.balanced_sampler is False
