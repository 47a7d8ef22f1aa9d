"""Recognition evaluation behind ``test.py``: verification (10 folds, the originals' threshold rule) at each
test resolution, TAR@FAR and ROC curves, cross-resolution pairs, and TinyFace rank-k identification.

Spec ``fskd_lowres_fr.md`` §6: both images of a pair are degraded to the test side ``d`` (down-then-up
with the model's training degradation; ``--cross-resolution`` degrades only the right image), each
image's feature is ``[emb(x), emb(flip x)]`` (1024-d for a 512-d embedding), and
:func:`kdface.metrics.verification_10_fold` scores the folds. A model trained at one fixed side is
evaluated at that side unless ``--down-size`` says otherwise; a multi-resolution model at every side of
its ladder; an HR model at full size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdface import report
from kdface.data.resolution import samples_blocks
from kdface.io import load_model, write_json
from kdface.io.cards import model_dataset, read_model_card
from kdface.metrics.verification import plot_roc, roc_curve_points, tar_at_far, verification_10_fold
from kdface.tasks.recognition.pipeline import pair_images_dataset

FARS = (1e-3, 1e-2, 1e-1)


def flip_features(model, images: np.ndarray, *, size=None, degradation: str = "nearest",
                  batch_size: int = 64) -> np.ndarray:  # fmt: skip
    """``[emb(x), emb(flip x)]`` of uint8 images ``(N, S, S, 3)`` degraded to ``size``."""
    features = []
    for x, flipped in pair_images_dataset(images, batch_size=batch_size, size=size, degradation=degradation):
        both = np.asarray(model.predict_on_batch(np.concatenate([x.numpy(), flipped.numpy()])), np.float32)
        n = len(x)
        features.append(np.concatenate([both[:n], both[n:]], axis=1))
    return np.concatenate(features)


def default_sizes(card: dict, image_size: int) -> list[int]:
    """The sides a model is evaluated at by default (spec §6.1): its training ladder's."""
    sizes = card.get("resolution", {}).get("sizes") or [image_size]
    return sorted({int(s) for s in sizes}, reverse=True)


def evaluation_sizes(requested, card: dict, image_size: int) -> list[int]:
    """The sides to test at: ``--down-size`` values (capped at the model's size), else the card's ladder.
    A side that the model's down-then-up degradation cannot make is a :class:`ConfigError`."""
    from kdface.errors import ConfigError

    degradation = card.get("resolution", {}).get("degradation", "nearest")
    sizes = [min(int(s), image_size) for s in requested] if requested else default_sizes(card, image_size)
    if samples_blocks(degradation):
        bad = [s for s in sizes if image_size % s]
        if bad:
            raise ConfigError(
                f"--down-size {bad[0]}: {degradation} down-then-up needs a side that divides the model's image "
                f"size {image_size}, e.g. {image_size}, {image_size // 2}, {image_size // 4}, {image_size // 8}"
            )
    return sizes


def verify(model, pairs, *, size: int, degradation: str, cross: bool = False) -> dict:
    """One verification row: the fold accuracies, TAR@FAR and the ROC points at side ``size``."""
    left, right = pairs.images[0::2], pairs.images[1::2]
    full = pairs.images.shape[1]
    left_size = full if cross else size
    f_left = flip_features(model, left, size=left_size, degradation=degradation)
    f_right = flip_features(model, right, size=size, degradation=degradation)
    result = verification_10_fold(f_left, f_right, pairs.issame, pairs.folds)
    normalized = [f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12) for f in (f_left, f_right)]
    scores = np.sum(normalized[0] * normalized[1], axis=1)
    tars = tar_at_far(scores, pairs.issame, fars=FARS)
    return {
        "size": int(size),
        "cross_resolution": bool(cross),
        "accuracy": float(100 * result.mean),
        "std": float(100 * result.std),
        "fold_accuracies": [float(v) for v in 100 * np.asarray(result.accuracies)],
        "thresholds": [float(v) for v in result.thresholds],
        "tar_at_far": {
            f"{far:g}": (None if np.isnan(tar) else float(100 * tar)) for far, tar in tars.items()
        },
        "pairs": int(len(pairs.issame)),
        "roc": roc_curve_points(scores, pairs.issame),
    }


def evaluate(model_paths, args) -> dict:
    """Every model x (dataset) x resolution: report.json, report.md, roc_<dataset>.png."""
    from kdface.tasks.recognition.sources import load_verification

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows, curves = {}, [], {}
    for model_path in model_paths:
        card = read_model_card(model_path)
        name = Path(model_path).stem
        dataset = model_dataset(model_path, card, args.dataset)
        if dataset in ("casia-webface",):  # a training set: verify on the SynthFaces-style default instead
            dataset = "lfw"
        model = load_model(model_path, unsafe=args.unsafe_load_model)
        image_size = int(model.input_shape[1])
        if dataset == "tinyface":
            results[name] = identify_tinyface(model, args.data_dir, image_size)
            rows.append({"model": name, "dataset": dataset, "size": image_size,
                         **{f"rank{k}": v for k, v in results[name]["cmc"].items()}})  # fmt: skip
            continue
        sizes = evaluation_sizes(
            args.down_size, card, image_size
        )  # before any work: a side it cannot be tested at
        pairs = load_verification(dataset, args.data_dir, image_size)
        degradation = card.get("resolution", {}).get("degradation", "nearest")
        results[name] = {"model": str(model_path), "dataset": dataset, "rows": []}
        for size in sizes:
            row = verify(model, pairs, size=size, degradation=degradation,
                         cross=args.cross_resolution)  # fmt: skip
            curves[f"{name} {row['size']}px"] = row.pop("roc")
            results[name]["rows"].append(row)
            tar = row["tar_at_far"]
            rows.append({"model": name, "dataset": dataset, "size": row["size"],
                         "accuracy": f"{row['accuracy']:.2f} ± {row['std']:.2f}",
                         **{f"tar@{k}": ("-" if v is None else round(v, 2)) for k, v in tar.items()},
                         "pairs": row["pairs"], "train_s": card.get("train_seconds", "")})  # fmt: skip
            mode = "cross-resolution (left 112, right degraded)" if args.cross_resolution else "both degraded"
            print(f"{name:>36s}  {dataset:>9s}  {row['size']:>4d} px  accuracy {row['accuracy']:6.2f} ± "
                  f"{row['std']:.2f}%  ({mode}, {row['pairs']} pairs)")  # fmt: skip
    images = {}
    if curves:
        plot = out_dir / "roc.png"
        plot_roc(curves, plot, title=f"ROC ({', '.join(sorted({r['dataset'] for r in rows}))})")
        images["ROC"] = plot.name
    write_json(out_dir / "report.json", results)
    columns = [
        ("model", "model"),
        ("dataset", "dataset"),
        ("size", "side px"),
        ("accuracy", "Accuracy % ± std"),
        *[(f"tar@{far:g}", f"TAR@FAR={far:g} %") for far in FARS],
        ("pairs", "pairs"),
        ("train_s", "train_s"),
    ]
    if any("rank1" in r for r in rows):
        columns += [(f"rank{k}", f"rank-{k} %") for k in (1, 5, 10, 20)]
    notes = (
        "Verification: 10 folds, threshold = mean of the maximising thresholds on the other nine folds "
        "(strict inequalities), features [emb(x), emb(flip x)] after subtracting the other folds' mean "
        "feature. side px = the test resolution (both images degraded down-then-up, unless cross-resolution)."
    )
    report.write_report_markdown(
        out_dir / "report.md", "Recognition evaluation", rows, columns, notes, images
    )
    print(f"report: {out_dir / 'report.md'}")
    return results


def identify_tinyface(model, data_dir, image_size: int) -> dict:
    """TinyFace closed-set identification (spec §6.2): flip-averaged, L2-normalised features, CMC ranks."""
    import cv2

    from kdface.errors import ConfigError, DataFormatError
    from kdface.metrics.verification import cmc_ranks
    from kdface.tasks.recognition.tinyface import read_tinyface

    if data_dir is None:
        raise ConfigError("--dataset tinyface needs --data-dir: the folder holding Probe/, Gallery_Match/, "
                          "Gallery_Distractor/")  # fmt: skip
    data = read_tinyface(data_dir)

    def features(paths):
        images = []
        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise DataFormatError(path, "a readable image")
            image = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (image_size, image_size),
                               interpolation=cv2.INTER_LINEAR)  # fmt: skip
            images.append(image)
        both = flip_features(model, np.stack(images))
        half = both.shape[1] // 2
        mean = (both[:, :half] + both[:, half:]) / 2
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)

    probe = features(data.probe_paths)
    gallery = features(data.gallery_paths)
    cmc = cmc_ranks(probe, np.asarray(data.probe_labels), gallery, np.asarray(data.gallery_labels))
    return {"dataset": "tinyface", "cmc": {int(k): float(100 * v) for k, v in cmc.items()},
            "probes": len(data.probe_paths), "gallery": len(data.gallery_paths)}  # fmt: skip
