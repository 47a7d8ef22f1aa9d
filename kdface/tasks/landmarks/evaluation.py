"""Landmark evaluation behind ``test.py``: models x test splits -> NME/FR/AUC, CED plot, overlays, report.

NME is computed in **source-image pixels** (predictions are mapped back through the crop), the
standard protocol; the KD-Loss original measured after its non-uniform 224x224 resize (spec §6.1.11),
which is what the crop-space ``val_nme`` during training corresponds to.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from kdface import metrics, report
from kdface.io import load_model as load_saved_model
from kdface.io import write_json
from kdface.io.cards import model_dataset, read_model_card
from kdface.report import detect_faces
from kdface.tasks.landmarks.pipeline import CropConfig, landmark_dataset
from kdface.tasks.landmarks.points import NORMALISERS, landmarks_to_pixels
from kdface.tasks.landmarks.sources import TEST_SPLITS, load_landmark_split

# Test splits that are unions of others: their NMEs are concatenated rather than predicted again.
UNION_SPLITS = {"full": ("common", "challenging")}

# What each normalising point pair (0-based, by number of landmarks) measures, for the report.
NORMALISER_NAMES = {
    (68, (36, 45)): "inter-ocular distance: outer eye corners, points 36 and 45",
    (98, (60, 72)): "inter-ocular distance: outer eye corners, points 60 and 72",
    (98, (96, 97)): "inter-pupil distance: pupils, points 96 and 97",
    (29, (8, 9)): "inter-ocular distance (HRNet's COFW pair): points 8 and 9",
}


def normaliser_name(norm, num_points: int | None = None) -> str:
    """What the NME normaliser ``(a, b)`` measures, e.g. "inter-ocular distance: outer eye corners, points
    36 and 45"; a pair kdface does not know is named by its points."""
    a, b = (int(v) for v in norm)
    for (n, pair), name in NORMALISER_NAMES.items():
        if pair == (a, b) and num_points in (None, n):
            return name
    return f"distance between points {a} and {b}"


def normaliser_notes(results: dict) -> str:
    """One Markdown list line per (dataset, normaliser) naming the models evaluated with it."""
    groups: dict[tuple, list[str]] = {}
    for name, result in results.items():
        groups.setdefault((result["dataset"], result["normaliser_name"]), []).append(name)
    return "\n".join(
        f"- NME normaliser on {dataset} ({', '.join(names)}): {norm_name}."
        for (dataset, norm_name), names in groups.items()
    )


def load_model(model_path, unsafe: bool = False) -> keras.Model:
    """A saved model, loaded with Keras' ``safe_mode`` unless ``unsafe`` (``--unsafe-load-model``); an
    exported ``.tflite`` runs on LiteRT (:mod:`kdface.io.litert`)."""
    return load_saved_model(model_path, unsafe=unsafe)


def predict_split(model, source, crop: CropConfig, batch_size=64):
    """Predictions mapped to source-image pixels, with ground truth, crops and crop-space points."""
    size = model.input_shape[1]
    ds = landmark_dataset(source.dataset, image_size=size, batch_size=batch_size, crop=crop, with_meta=True)
    preds, gts, boxes, crops, crop_gts = [], [], [], [], []
    for images, targets, meta in ds:
        preds.append(model.predict_on_batch(images))
        gts.append(meta["landmarks"].numpy())
        boxes.append(meta["box"].numpy())
        if sum(len(c) for c in crops) < 32:
            crops.append(images.numpy())
            crop_gts.append(targets.numpy())
    if not preds:
        raise ValueError(f"split {source.split!r} of {source.name!r} is empty")
    pred = np.concatenate(preds)
    boxes = np.concatenate(boxes)
    return {
        "pred": landmarks_to_pixels(pred, boxes=boxes),
        "gt": np.concatenate(gts),
        "crops": np.concatenate(crops)[:32],
        "crop_pred": landmarks_to_pixels(pred[:32], image_size=size),
        "crop_gt": landmarks_to_pixels(np.concatenate(crop_gts)[:32], image_size=size),
    }


def evaluate(model_paths, dataset=None, splits=None, data_dir=None, tfds_dir="datasets/tfds", out_dir="runs/test",
             normaliser=None, on_bad_sample="error", unsafe_load_model=False) -> dict:  # fmt: skip
    """Evaluate each model on each test split; writes report.json, report.md, CED plots and overlays."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows, images, skipped = {}, [], {}, []
    ced = {}
    for model_path in model_paths:
        card = read_model_card(model_path)
        name = Path(model_path).stem
        ds_name = model_dataset(model_path, card, dataset)
        norm = (
            tuple(NORMALISERS[normaliser])
            if normaliser
            else tuple(card.get("normaliser", NORMALISERS[ds_name]))
        )
        crop = CropConfig(**card["crop"]) if "crop" in card else CropConfig()
        model = load_model(model_path, unsafe_load_model)
        num_points = card.get("num_points") or int(model.output_shape[-1]) // 2
        results[name] = {"model": str(model_path), "dataset": ds_name, "normaliser": list(norm),
                         "normaliser_name": normaliser_name(norm, num_points), "splits": {}}  # fmt: skip
        computed = {}
        for split in splits or TEST_SPLITS[ds_name]:
            parts = UNION_SPLITS.get(split, ())
            if parts and all(part in computed for part in parts):
                nme = np.concatenate([computed[part] for part in parts])  # no second prediction pass
            else:
                source = load_landmark_split(ds_name, split, data_dir, tfds_dir, on_bad_sample=on_bad_sample)
                skipped.extend(r for r in source.skipped if r not in skipped)
                out = predict_split(model, source, crop)
                nme = metrics.nme_per_image(out["pred"], out["gt"], norm)
                grid = out_dir / f"overlays_{name}_{split}.png"
                title = f"{name} on {ds_name} {split}: first {len(out['crops'])} of {len(nme)} test crops"
                report.overlay_grid(out["crops"], out["crop_pred"], out["crop_gt"], grid, title=title)
                images[f"{name} on {split} (green: ground truth, red: prediction)"] = grid.name
            computed[split] = nme
            summary = metrics.summarize(nme)
            results[name]["splits"][split] = summary
            rows.append({"model": name, "split": split, "train_s": card.get("train_seconds", ""), **summary})
            ced[(name, split)] = nme
    if skipped:
        write_json(out_dir / "skipped_samples.json", {"count": len(skipped), "skipped": skipped})
        print(
            f"skipped {len(skipped)} bad sample(s) (--on-bad-sample skip); list: {out_dir / 'skipped_samples.json'}"
        )
    datasets = sorted({r["dataset"] for r in results.values()})
    norm_names = {r["normaliser_name"] for r in results.values()}
    unit = norm_names.pop().split(":")[0] if len(norm_names) == 1 else "the normalising distance"
    metrics.plot_ced(ced, out_dir / "ced.png", title=f"Cumulative error distribution on {', '.join(datasets)}",
                     xlabel=f"NME (% of {unit})")  # fmt: skip
    images = {"Cumulative error distribution": "ced.png", **images}
    report.write_report_json(out_dir / "report.json", results)
    columns = ["model", "split", "nme", "fr", "auc", "auc_original", "count", "train_s"]
    notes = (
        "NME in % of the normalising distance (source-image pixels), FR = % of images with NME > 10%, "
        "AUC = standard area under the CED up to NME 10% (normalised to 1); 'AUC (KD-Loss code)' is the "
        "original's non-standard variant (maximum 0.95). train_s = training wall time in seconds.\n\n"
        + normaliser_notes(results)
    )
    report.write_report_markdown(out_dir / "report.md", "Landmark evaluation", rows, columns, notes, images)
    for row in rows:
        print(f"{row['model']:>28s}  {row['split']:>12s}  NME {row['nme']:6.2f}%  FR {row['fr']:6.2f}%  "
              f"AUC {row['auc']:.4f}  (original AUC {row['auc_original']:.4f}, n={row['count']})")  # fmt: skip
    print(f"report: {out_dir / 'report.md'}")
    return results


# --- photos ---------------------------------------------------------------------------------------


def detection_to_crop_box(box, crop: CropConfig) -> np.ndarray:
    """Map a Haar box to the crop the model was trained on (landmark box + padding).

    The 68-point landmark box spans brows to chin and jaw to jaw; a Haar box starts at the forehead
    and ends above the chin, so it is moved down by 10 % and kept the same size (a heuristic).
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    y0, y1 = y0 + 0.1 * h, y1 + 0.1 * h
    pad_x = crop.pad_px + crop.pad_frac * w
    pad_y = crop.pad_px + crop.pad_frac * h
    return np.array([x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y], np.float32)


def predict_photo(model_path, photo, out_dir="runs/photo", unsafe_load_model: bool = False) -> dict:
    """Detect faces in a photo, predict landmarks for each, write an overlay and a JSON of the points.

    Each face in the JSON has ``face_box`` (the detector's), ``box`` (the crop the model saw) and
    ``landmarks``; the overlay draws all three with a key.
    """
    import tensorflow as tf

    from kdface.tasks.landmarks.pipeline import AugmentConfig, crop_and_augment

    image = report.read_photo(photo)
    card = read_model_card(model_path)
    crop = CropConfig(**card["crop"]) if "crop" in card else CropConfig()
    model = load_model(model_path, unsafe_load_model)
    size = model.input_shape[1]
    detections = detect_faces(image)
    boxes = np.array([detection_to_crop_box(b, crop) for b in detections], np.float32).reshape(-1, 4)
    faces, points = [], np.zeros((0, 0, 2))
    if len(boxes):
        crops = [
            crop_and_augment(image, tf.reshape(b, (2, 2)), b, tf.constant([0, 0], tf.int64), image_size=size,
                             crop=CropConfig(pad_px=0.0), augment=AugmentConfig.none())[0]
            for b in boxes
        ]  # fmt: skip
        pred = model.predict(np.stack(crops), verbose=0)
        points = landmarks_to_pixels(pred, boxes=boxes)
        faces = [{"face_box": d.tolist(), "box": b.tolist(), "landmarks": p.tolist()}
                 for d, b, p in zip(detections, boxes, points, strict=True)]  # fmt: skip
    title = f"{Path(model_path).stem} on {Path(photo).name}: {len(faces)} face(s)"
    overlay = report.photo_overlay(image, detections, boxes, points, title=title)
    return report.write_photo_result(out_dir, photo, "landmarks", overlay, faces)
