"""IGKD's pieces: the per-group coupled-L2 Adam against torch, the masked view's statistics, the
class-balanced epoch sampler, the gradient flow of each loss term (spec A3 table) and the
deployable clean-student path."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import encoded_split, interrupted_run_resumes_exactly

from kdface.methods import fer, igkd
from kdface.tasks.expressions.pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ErasingConfig,
    erasing_box,
    expression_training_stream,
)
from kdface.training.optimizers import GroupAdam


def test_group_adam_matches_torch_param_groups_with_coupled_l2():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)]
    grads = [[rng.normal(size=w.shape).astype(np.float32) for w in init] for _ in range(3)]
    # torch: two groups, lr 1e-3 and 1e-4, coupled weight decay 1e-2, three steps
    params = [torch.nn.Parameter(torch.tensor(w)) for w in init]
    opt = torch.optim.Adam([{"params": [params[0]], "lr": 1e-3}, {"params": [params[1]], "lr": 1e-4}],
                           eps=1e-8, weight_decay=1e-2)  # fmt: skip
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = torch.tensor(g)
        opt.step()
    # kdface: one GroupAdam, base lr 1e-3, the second variable at 0.1x
    variables = [keras.Variable(w) for w in init]
    optimizer = GroupAdam(1e-3, groups=[([variables[1]], 0.1)], coupled_weight_decay=1e-2)
    for step in grads:
        optimizer.apply([tf.constant(g) for g in step], variables)
    assert optimizer.learning_rate_factors() == [1.0, 0.1]
    for p, v in zip(params, variables, strict=True):
        np.testing.assert_allclose(v.numpy(), p.detach().numpy(), atol=1e-6)
    # and the decay is coupled: without it the result differs
    plain = [keras.Variable(w) for w in init]
    GroupAdam(1e-3, groups=[([plain[1]], 0.1)]).apply([tf.constant(g) for g in grads[0]], plain)
    assert not np.allclose(plain[0].numpy(), variables[0].numpy())


def test_erasing_box_area_aspect_and_position_ranges():
    size = 96
    boxes = [erasing_box(tf.constant([5, i], tf.int64), size, size) for i in range(600)]
    top, left, h, w, applied = (np.array([b[k].numpy() for b in boxes]) for k in range(5))
    assert applied.all()  # probability 1: always erased (a 96 px image always fits a box)
    area = h * w / size**2
    # h, w are rounded from sqrt(A r), sqrt(A / r): the area stays within rounding of [0.15, 0.25]
    assert (
        area.min() >= 0.15 - 2 * (h + w).max() / size**2 and area.max() <= 0.25 + 2 * (h + w).max() / size**2
    )
    assert area.min() < 0.16 and area.max() > 0.24
    aspect = h / w
    assert aspect.min() >= 0.33 * 0.9 and aspect.max() <= 3.3 * 1.1
    assert (aspect < 0.5).any() and (aspect > 2.0).any()
    assert (top >= 0).all() and (top + h <= size).all() and (left >= 0).all() and (left + w <= size).all()
    assert top.min() == 0 or left.min() == 0  # position uniform over the whole valid range
    assert (top + h).max() >= size - 2 and (left + w).max() >= size - 2


def test_erasing_probability_zero_never_erases():
    box = erasing_box(tf.constant([1, 2], tf.int64), 64, 64, ErasingConfig(probability=0.0))
    assert not bool(box[4])


def test_both_views_share_crop_flip_noise_and_differ_only_in_one_grey_box():
    split = encoded_split([0, 1, 2, 0, 1, 2, 0, 1])
    stream = expression_training_stream(
        split, image_size=32, batch_size=8, num_classes=3, erasing=ErasingConfig()
    )
    x, _ = next(iter(stream))
    clean, masked = x["image"].numpy(), x["masked"].numpy()
    for c, m in zip(clean, masked, strict=True):
        changed = np.any(c != m, axis=-1)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        box = m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        # one flat value per sample, the same v in normalised space on every channel
        v = (box - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
        assert np.ptp(v) < 1e-5 and 0.0 <= v.mean() < 1.0
        outside = np.ones_like(changed)
        outside[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
        np.testing.assert_array_equal(c[outside], m[outside])  # same crop, flip and noise elsewhere
        assert 0.1 <= box.shape[0] * box.shape[1] / 32**2 <= 0.3


def test_balanced_sampler_draws_classes_equally_and_epochs_are_reproducible():
    labels = [0] * 60 + [1] * 15 + [2] * 5
    split = encoded_split(labels, size=16)
    kwargs = dict(image_size=16, batch_size=8, num_classes=3, balanced=True, seed=4)
    ys = np.concatenate([y.numpy() for _, y in expression_training_stream(split, **kwargs).take(100)])
    share = np.bincount(ys, minlength=3) / len(ys)
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.05)  # 800 draws: 3 sigma is about 0.05
    # a stream started at epoch 2, batch 3 continues the full stream exactly (what resume relies on)
    full = list(expression_training_stream(split, **kwargs).take(2 * 10 + 4))
    resumed = next(iter(expression_training_stream(split, start_epoch=2, skip_batches=3, **kwargs)))
    np.testing.assert_array_equal(resumed[0].numpy(), full[23][0].numpy())
    plain = [
        y.numpy() for _, y in expression_training_stream(split, **{**kwargs, "balanced": False}).take(10)
    ]
    assert sorted(np.concatenate(plain).tolist()) == sorted(labels)  # unbalanced: a permutation


def _tiny_backbone(name, channels, size=96):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(channels, 3, strides=32, padding="same")(inputs)  # a 3 x 3 "layer-4 map"
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(
        inputs, {"feature_map": x, "embedding": keras.layers.GlobalAveragePooling2D()(x)}, name=name
    )


def _tiny_igkd(seed=0):
    keras.utils.set_random_seed(seed)
    model = igkd.IGKD(
        _tiny_backbone("teacher", 6), _tiny_backbone("student", 4), num_classes=3, fusion_dropout=0.0
    )
    model.compile(optimizer=GroupAdam(1e-3))
    return model


def _term_gradients(model, epoch=6.0):
    rng = np.random.default_rng(1)
    clean = tf.constant(rng.uniform(size=(4, 96, 96, 3)).astype("float32"))
    masked = tf.constant(rng.uniform(size=(4, 96, 96, 3)).astype("float32"))
    labels = tf.constant([0, 1, 2, 1])
    groups = {
        "T": model.teacher.trainable_variables, "W_t": model.classifier_t.trainable_variables,
        "S": model.student.trainable_variables, "M": model.channel_mapping.trainable_variables,
        "fusion": model.fusion.trainable_variables, "W_s0": model.classifier_s0.trainable_variables,
        "W_s1": model.classifier_s1.trainable_variables,
    }  # fmt: skip
    reached = {}
    for term in ("feature_distillation", "relation_distillation", "knowledge_learning", "knowledge_feedback"):
        with tf.GradientTape(persistent=True) as tape:
            terms, _, _ = model.losses_of(clean, masked, labels, epoch)
            value = getattr(terms, term)
        reached[term] = set()
        for name, variables in groups.items():
            grads = tape.gradient(value, variables)
            if any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads):
                reached[term].add(name)
    return reached


def test_gradient_flow_of_each_term_matches_the_spec_table():
    reached = _term_gradients(_tiny_igkd())
    masked_path = {"S", "M"}
    assert reached["feature_distillation"] == masked_path
    assert reached["relation_distillation"] == masked_path
    assert reached["knowledge_learning"] == masked_path  # W_ts = sg(W_t): the teacher is not taught
    # knowledge feedback has no stop-gradient: the teacher learns from the student (joint learning)
    assert reached["knowledge_feedback"] == {"T", "W_t", "S", "M", "fusion", "W_s0"}


def test_deploy_model_is_the_clean_student_path_and_saves_safely(tmp_path):
    model = _tiny_igkd()
    x = np.random.default_rng(2).uniform(size=(2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(model.deploy_model.predict(x, verbose=0), model(x).numpy(), atol=1e-6)
    path = tmp_path / "student.keras"
    model.deploy_model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    probs = loaded.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, model(x).numpy(), atol=1e-6)
    names = {v.path.split("/")[0] for v in loaded.weights}
    assert not any("teacher" in n or "classifier_t" in n or "classifier_s1" in n for n in names), names


def test_ramps_follow_the_epoch_the_trainer_sets(tmp_path):
    from kdface.training import RunDirectory, trainer

    model = _tiny_igkd()
    assert float(model.epoch()) == 1.0
    model.epoch_index.assign(2)  # the trainer's EpochCounter sets the 0-based epoch at its start
    assert float(model.epoch()) == 3.0
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.epoch()))

    split = encoded_split([0, 1, 2, 0, 1, 2, 0, 1], size=40)

    def stream(start_epoch, skip):
        return expression_training_stream(split, image_size=96, batch_size=4, num_classes=3, erasing=ErasingConfig(),
                                          seed=1, start_epoch=start_epoch, skip_batches=skip)  # fmt: skip

    run = RunDirectory(tmp_path / "run").open({"name": "test"})
    trainer.fit(model, stream, None, run=run, epochs=3, steps_per_epoch=2, verbose=0, callbacks=[Record()])
    assert seen == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


def test_small_maps_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="image-size of at least 96"):
        igkd.IGKD(_tiny_backbone("t", 6, size=64), _tiny_backbone("s", 4, size=64), 3)


def test_fer_classifier_trains_on_both_views():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    network = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model = fer.ExpressionClassifier(network)
    model.compile(optimizer=GroupAdam(1e-2))
    x = {"image": np.zeros((4, 16, 16, 3), "float32"), "masked": np.ones((4, 16, 16, 3), "float32")}
    y = np.array([0, 1, 2, 0])
    logs = model.train_on_batch(x, y, return_dict=True)
    logits = network.predict(np.concatenate([x["image"], x["masked"]]), verbose=0)
    assert logits.shape == (8, 3) and np.isfinite(logs["loss"])


def test_igkd_run_interrupted_mid_epoch_resumes_to_identical_weights(tmp_path):
    """IGKD inherits exact resume: the two-view stream with the balanced sampler, GroupAdam's state,
    the fusion's SpatialDropout RNG and the epoch-driven ramps all continue where they stopped."""
    split = encoded_split([0, 0, 0, 0, 1, 1, 2, 2, 0, 1, 2, 0], size=40)

    def stream(start_epoch, skip):
        return expression_training_stream(split, image_size=96, batch_size=4, num_classes=3, erasing=ErasingConfig(),
                                          balanced=True, seed=1, start_epoch=start_epoch, skip_batches=skip)  # fmt: skip

    def model(seed):
        keras.utils.set_random_seed(seed)
        m = igkd.IGKD(_tiny_backbone("teacher", 6), _tiny_backbone("student", 4), num_classes=3)
        m.compile(optimizer=GroupAdam(1e-3, groups=m.lr_groups(igkd.IGKDConfig()), coupled_weight_decay=1e-4))
        return m

    interrupted_run_resumes_exactly(model, stream, tmp_path)


def test_a_trained_classifier_initialises_a_backbone_strictly(tmp_path):
    """--t-checkpoint model.keras: the ResNet inside a saved kdface classifier initialises IGKD's teacher."""
    from kdface.backbones.resnet import build_resnet, model_arrays
    from kdface.errors import DataFormatError

    config = fer.FERConfig(image_size=32, bn_momentum=0.9)
    classifier = fer.ExpressionClassifier(fer.build_classifier(config, 7))
    classifier.deploy_model.save(tmp_path / "fer.keras")
    teacher = build_resnet(18, image_size=32, weights=str(tmp_path / "fer.keras"), name="teacher_resnet18")
    trained = model_arrays(classifier.network.get_layer("resnet18"))
    for key, value in model_arrays(teacher).items():
        np.testing.assert_array_equal(value, trained[key])
    with pytest.raises(DataFormatError, match="exactly"):  # a ResNet-50 cannot take ResNet-18 weights
        build_resnet(50, image_size=32, weights=str(tmp_path / "fer.keras"))
    inputs = keras.Input((8,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "other.keras")
    with pytest.raises(DataFormatError, match="exactly one resnet18 backbone"):
        build_resnet(18, image_size=32, weights=str(tmp_path / "other.keras"))
