"""Expression evaluation behind ``test.py``: models x test splits -> accuracy, per-class accuracy,
confusion matrices, per-image predictions, report; and expressions on the faces of a photo.

A model's class names come from its model card (``<model>.json``); labels are kdface indices
(:mod:`kdface.tasks.expressions.labels`), so any model is evaluated on any dataset. Test images of a class
the model does not have (contempt, for a 7-class model) are left out and counted in the report.

A model whose card says ``"input": "pair"`` (DoE) takes neutral/target pairs ``(B, 2, S, S, 3)``
(:mod:`kdface.tasks.expressions.pairs`): it is evaluated on a pair dataset's pairs, and
:func:`predict_expressions` takes ``(neutral, target)`` faces for it. On a pair dataset (``ck+``,
``synthface-ck+``), a model trained on one of its folds is tested on the fold it held out
(:func:`default_test_splits`), with the pair protocol its card records.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from kdface import metrics, report
from kdface.errors import ConfigError, UnknownNameError
from kdface.io import load_model, write_json
from kdface.io.atomic import write_text
from kdface.io.cards import model_dataset, read_model_card
from kdface.registry import unknown_name_message
from kdface.report import detect_faces
from kdface.tasks.expressions.labels import CLASS_NAMES
from kdface.tasks.expressions.pairs import IMAGE_INPUT, PAIR_INPUT, InputSpec
from kdface.tasks.expressions.pipeline import prepare_eval


def class_names_of(model, card: dict) -> tuple[str, ...]:
    """The model's class names: from its card, else kdface's order truncated to its output width."""
    k = int(model.output_shape[-1])
    names = tuple(card.get("class_names") or CLASS_NAMES[:k])
    if len(names) != k:
        raise ValueError(f"the model card lists {len(names)} classes but the model predicts {k}")
    return names


# Cards written before they named their per-image output: SCN's models, whose layer was this one.
LEGACY_PER_IMAGE_OUTPUT = "importance"


def per_image_output(model, card: dict) -> str | None:
    """The layer whose output the model's card asks to report per image (e.g. SCN's importance
    weight, shape (B, 1)), if the model has it."""
    name = card.get("per_image_output", LEGACY_PER_IMAGE_OUTPUT)
    return name if name in {layer.name for layer in model.layers} else None


def with_per_image_output(model, layer: str | None):
    """``model`` extended to also return ``layer``'s output, or None without a layer."""
    import keras

    if layer is None:
        return None
    if hasattr(model, "with_output"):  # an exported .tflite: the output was exported beside the main one
        return model.with_output(layer)
    return keras.Model(model.input, [model.output, model.get_layer(layer).output])


def takes_pairs(model, card: dict) -> bool:
    """Whether ``model`` takes neutral/target pairs: its card says so (``"input": "pair"``), or, for a
    model without a card, its input is ``(B, 2, S, S, 3)``."""
    return InputSpec.of(model, card).pairs


def input_size(model, pairs: bool) -> int:
    """The side ``S`` of the crops ``model`` takes (``(B, S, S, 3)``, or ``(B, 2, S, S, 3)`` for pairs)."""
    return (PAIR_INPUT if pairs else IMAGE_INPUT).image_size(model.input_shape)


def check_pair_dataset(model_path, card: dict, dataset: str) -> None:
    """A :class:`~kdface.errors.ConfigError` when a pair model is to be tested on a dataset without pairs."""
    from kdface.tasks.expressions.sources import is_pair_dataset, pair_datasets

    if InputSpec.from_card(card).pairs and not is_pair_dataset(dataset):
        raise ConfigError(f"{model_path} takes neutral/target pairs of one person; {dataset} has single images: "
                          f"test it on a pair dataset ({', '.join(pair_datasets())})")  # fmt: skip


def pair_options_of(card: dict, dataset: str):
    """The pair protocol (:class:`~kdface.tasks.expressions.sources.PairOptions`) a model was trained
    with, when it is tested on the dataset it was trained on; on another pair dataset its default
    protocol, with neutral pairs if the model was trained with them (``--neutral-class``)."""
    from kdface.tasks.expressions.sources import PairOptions

    recorded = card.get("pair_options") or {}
    if card.get("dataset") == dataset:
        return PairOptions(**recorded)
    return PairOptions(neutral_pairs=bool(recorded.get("neutral_pairs", False)))


def default_test_splits(dataset: str, card: dict) -> tuple[str, ...]:
    """The splits ``test.py`` tests on without ``--split``: the dataset's test splits, except for a model
    trained on one fold of this pair dataset, tested on the fold it held out (its subjects unseen)."""
    from kdface.tasks.expressions.sources import EXPRESSION_TEST_SPLITS, held_out_split, is_pair_dataset

    trained_on = (card.get("config") or {}).get("train_split")
    if is_pair_dataset(dataset) and card.get("dataset") == dataset and trained_on:
        held = held_out_split(trained_on, pair_options_of(card, dataset).folds)
        if held is not None:
            return (held,)
    return EXPRESSION_TEST_SPLITS[dataset]


def predict_source(model, source, num_classes: int, batch_size: int = 64, both=None, pairs: bool = False):
    """``(labels, probabilities, keys, excluded, per_image)`` over a split (of pairs, for a model that
    takes ``pairs``: ``source`` is then a :class:`~kdface.tasks.expressions.sources.PairSource`);
    ``excluded`` counts test images whose class the model lacks; ``per_image`` is the per-image output
    of ``both`` (:func:`with_per_image_output`, built once per model), else None."""
    spec = PAIR_INPUT if pairs else IMAGE_INPUT
    ds = spec.eval_dataset(
        source.dataset, image_size=input_size(model, pairs), batch_size=batch_size, with_key=True
    )
    labels, probs, keys, weights, excluded = [], [], [], [], 0
    for images, y, k in ds:
        y = y.numpy()
        keep = y < num_classes
        excluded += int((~keep).sum())
        if keep.any():
            batch = images.numpy()[keep]
            if both is not None:
                p, w = both.predict_on_batch(batch)
                weights.append(np.asarray(w).reshape(-1))
            else:
                p = model.predict_on_batch(batch)
            probs.append(np.asarray(p))
            labels.append(y[keep])
            keys.extend(x.decode() for x in k.numpy()[keep])
    if not probs:
        raise ValueError(f"split {source.split!r} of {source.name!r} has no image of the model's classes")
    importance = np.concatenate(weights) if weights else None
    return np.concatenate(labels), np.concatenate(probs), keys, excluded, importance


def _predictions_csv(keys, labels, probabilities, names, importance=None, column: str = "") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "label", "predicted", *([column] if importance is not None else []),
                     *[f"p_{n}" for n in names]])  # fmt: skip
    for i, (key, label, p) in enumerate(zip(keys, labels, probabilities, strict=True)):
        weight = [f"{importance[i]:.5f}"] if importance is not None else []
        writer.writerow([key, names[int(label)], names[int(np.argmax(p))], *weight, *[f"{v:.5f}" for v in p]])
    return buf.getvalue()


def importance_summary(importance, labels, probabilities) -> dict:
    correct = np.argmax(probabilities, axis=-1) == labels

    def mean(mask):
        return float(importance[mask].mean()) if mask.any() else None

    return {"mean": float(importance.mean()), "mean_correct": mean(correct), "mean_wrong": mean(~correct)}


def plot_importance(importance, labels, probabilities, path, title, what: str = "importance weight") -> None:
    """Histograms of a per-image output of correctly and wrongly classified images."""
    correct = np.argmax(probabilities, axis=-1) == labels
    metrics.plot_weight_histograms(importance, [(correct, "correct"), (~correct, "wrong")], path, what, title)


def evaluate(model_paths, dataset=None, splits=None, data_dir=None, tfds_dir="datasets/tfds", out_dir="runs/test",
             on_bad_sample="error", unsafe_load_model=False) -> dict:  # fmt: skip
    """Evaluate each model on each test split; writes report.json, report.md, confusion matrices and
    per-image predictions (``predictions_<model>_<split>.csv``). A model whose card names a per-image
    output (SCN: ``importance``) also gets that column, its mean in the report and a histogram
    (``--split train`` dumps the training set's)."""
    from kdface.tasks.expressions.sources import EXPRESSION_TEST_SPLITS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows, images, skipped, per_image_columns = {}, [], {}, [], set()
    for model_path in model_paths:
        card = read_model_card(model_path)
        name = Path(model_path).stem
        ds_name = model_dataset(model_path, card, dataset)
        if ds_name not in EXPRESSION_TEST_SPLITS:
            raise UnknownNameError(
                unknown_name_message("expression dataset", ds_name, EXPRESSION_TEST_SPLITS)
            )
        check_pair_dataset(model_path, card, ds_name)
        model = load_model(model_path, unsafe=unsafe_load_model)
        pairs = takes_pairs(model, card)
        layer = per_image_output(model, card)
        both = with_per_image_output(model, layer)
        names = class_names_of(model, card)
        results[name] = {
            "model": str(model_path),
            "dataset": ds_name,
            "input": "pair" if pairs else "image",
            "class_names": list(names),
            "splits": {},
        }
        for split in splits or default_test_splits(ds_name, card):
            spec = PAIR_INPUT if pairs else IMAGE_INPUT
            source = spec.load_split(
                ds_name, split, data_dir, tfds_dir, on_bad_sample, pair_options_of(card, ds_name)
            )
            skipped.extend(r for r in source.skipped if r not in skipped)
            labels, probs, keys, excluded, importance = predict_source(
                model, source, len(names), both=both, pairs=pairs
            )
            summary = metrics.summarize_classification(labels, probs, names)
            summary["excluded_classes_count"] = excluded
            if importance is not None:
                summary[layer] = importance_summary(importance, labels, probs)
                plot = out_dir / f"{layer}_{name}_{split}.png"
                plot_importance(
                    importance, labels, probs, plot, title=f"{name} on {ds_name} {split}", what=layer
                )
                images[f"{name} on {split}: {layer}"] = plot.name
            results[name]["splits"][split] = summary
            plot = out_dir / f"confusion_{name}_{split}.png"
            metrics.plot_confusion(summary["confusion"], names, plot, title=f"{name} on {ds_name} {split}")
            images[f"{name} on {split}: confusion matrix (% of the true class)"] = plot.name
            write_text(
                out_dir / f"predictions_{name}_{split}.csv",
                _predictions_csv(keys, labels, probs, names, importance, layer),
            )
            row = {"model": name, "split": split, "accuracy": summary["accuracy"],
                   "mean_class_accuracy": summary["mean_class_accuracy"], "count": summary["count"],
                   "train_s": card.get("train_seconds", "")}  # fmt: skip
            row.update({n: summary["per_class"][n]["accuracy"] for n in names})
            if importance is not None:
                row["per_image_output"] = round(summary[layer]["mean"], 4)
                per_image_columns.add(layer)
            rows.append(row)
            print(f"{name:>32s}  {split:>10s}  accuracy {summary['accuracy']:6.2f}%  "
                  f"mean class accuracy {summary['mean_class_accuracy']:6.2f}%  (n={summary['count']}"
                  + (f", {excluded} of classes the model lacks left out)" if excluded else ")"))  # fmt: skip
    if skipped:
        write_json(out_dir / "skipped_samples.json", {"count": len(skipped), "skipped": skipped})
        print(
            f"skipped {len(skipped)} bad sample(s) (--on-bad-sample skip); list: {out_dir / 'skipped_samples.json'}"
        )
    report.write_report_json(out_dir / "report.json", results)
    all_names = [n for n in CLASS_NAMES if any(n in r for r in rows)]
    columns = [("model", "model"), ("split", "split"), ("accuracy", "Accuracy %"),
               ("mean_class_accuracy", "Mean class acc. %"), ("count", "Images"),
               *[(n, f"{n} %") for n in all_names], ("train_s", "train_s")]  # fmt: skip
    if per_image_columns:
        columns.insert(5, ("per_image_output", f"Mean {'/'.join(sorted(per_image_columns))}"))
    notes = (
        "Accuracy = % of test images classified correctly; mean class accuracy = the per-class accuracies "
        "(recall) averaged over the classes present; per-class columns in %. train_s = training wall time."
    )
    report.write_report_markdown(out_dir / "report.md", "Expression evaluation", rows, columns, notes, images)
    print(f"report: {out_dir / 'report.md'}")
    return results


# --- the public predict helper and photos -----------------------------------------------------------------


def predict_expressions(model_path, faces, unsafe_load_model: bool = False) -> list[dict]:
    """Expressions of face crops: ``faces`` is a list of ``H x W x 3`` uint8 RGB images (any size), or,
    for a model that takes pairs (its card says ``"input": "pair"``: DoE), a list of
    ``(neutral, target)`` crops of one person each, e.g. the first frame of a sequence and the frame
    to classify::

        kdface.predict_expressions("models/teachers/ck+_doe_mobilenet_v3_large_fold0.keras",
                                   [(neutral_face, smiling_face)])

    Each face is resized and centre-cropped exactly as in training (the model card's sizes); returns
    one ``{"expression": name, "probabilities": {name: p}}`` per face (per pair).
    """
    model = load_model(model_path, unsafe=unsafe_load_model)
    card = read_model_card(model_path)
    names = class_names_of(model, card)
    probs = _predict_crops(model, faces, pairs=takes_pairs(model, card))
    return [{"expression": names[int(np.argmax(p))], "probabilities": dict(zip(names, map(float, p), strict=True))}
            for p in probs]  # fmt: skip


def _crop(face, size: int) -> np.ndarray:
    import tensorflow as tf

    face = np.asarray(face)
    if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
        raise ValueError(f"expected H x W x 3 uint8 RGB faces, got {face.shape} {face.dtype}")
    box = tf.constant([0.0, 0.0, face.shape[1], face.shape[0]])
    return prepare_eval(tf.io.encode_png(face), box, size).numpy()


def _predict_crops(model, faces, pairs: bool = False) -> np.ndarray:
    size = input_size(model, pairs)
    batch = []
    for face in faces:
        if pairs:
            if len(face) != 2 or np.asarray(face[0]).ndim != 3:
                raise ValueError("this model compares a neutral and a target face of one person: pass "
                                 "(neutral, target) pairs of H x W x 3 uint8 RGB faces")  # fmt: skip
            batch.append(np.stack([_crop(image, size) for image in face]))  # (2, S, S, 3): neutral first
        elif isinstance(face, tuple | list) and len(face) == 2:
            raise ValueError("this model classifies single faces; (neutral, target) pairs are for a model "
                             'whose card says "input": "pair"')  # fmt: skip
        else:
            batch.append(_crop(face, size))
    if not batch:
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    return np.asarray(model.predict(np.stack(batch), verbose=0))


def predict_photo(model_path, photo, out_dir="runs/photo", unsafe_load_model: bool = False) -> dict:
    """Detect faces in a photo (OpenCV Haar cascade), print and overlay each face's expression."""
    card = read_model_card(model_path)
    if InputSpec.from_card(card).pairs:
        raise ConfigError(f"{model_path} compares a neutral and a target face of one person, which a photo "
                          "does not give; use kdface.predict_expressions(model, [(neutral, target)])")  # fmt: skip
    image = report.read_photo(photo)
    model = load_model(model_path, unsafe=unsafe_load_model)
    names = class_names_of(model, card)
    h, w = image.shape[:2]
    detections, boxes = detect_faces(image), []
    for x0, y0, x1, y1 in detections:
        pad = 0.1 * (x1 - x0)  # aligned FER crops include a little context around the Haar box
        boxes.append([max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)])
    crops = [image[int(b[1]) : int(np.ceil(b[3])), int(b[0]) : int(np.ceil(b[2]))] for b in boxes]
    probs = _predict_crops(model, crops)
    faces, labels = [], []
    for detection, box, p in zip(detections, boxes, probs, strict=True):
        label = names[int(np.argmax(p))]
        faces.append({"face_box": detection.tolist(), "box": [float(v) for v in box], "expression": label,
                      "probabilities": dict(zip(names, map(float, p), strict=True))})  # fmt: skip
        labels.append(f"{label} {100 * p.max():.0f}%")
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        print(f"face at ({x0}, {y0}, {x1}, {y1}): {label} ({100 * p.max():.1f}%)")
    title = f"{Path(model_path).stem} on {Path(photo).name}: {len(faces)} face(s)"
    overlay = report.photo_overlay(image, detections, boxes, labels=labels, title=title)
    return report.write_photo_result(out_dir, photo, "expressions", overlay, faces)
