"""Is SynthFaces learnable but not trivial? A linear probe on pixels vs a CNN, for both tasks.

* Expressions (RAF-DB tree, identity-disjoint test set): softmax regression on 32x32 grey pixels vs
  a small CNN on 64x64 colour crops, same epochs budget.
* Landmarks (300W tree, test split ``common``): ridge regression from 32x32 grey crop pixels to the
  68 landmarks vs the demo's trained networks (read from ``runs/demo/report.json`` if present).

Run: python bench/synthfaces_learnability.py [--root datasets/synthfaces/demo] [--epochs 40]
Prints a Markdown table; the figures in docs/synthfaces.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from kdface import metrics
from kdface.tasks.landmarks.pipeline import CropConfig, landmark_dataset
from kdface.tasks.landmarks.points import landmarks_to_pixels
from kdface.tasks.landmarks.sources import load_landmark_split


def read_rafdb(root: Path, size: int):
    labels = (root / "rafdb/EmoLabel/list_patition_label.txt").read_text().split("\n")
    data = {"train": ([], []), "test": ([], [])}
    for line in filter(None, labels):
        name, label = line.split()
        image = cv2.imread(str(root / "rafdb/Image/aligned" / name.replace(".jpg", "_aligned.jpg")))
        image = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA)
        split = "train" if name.startswith("train") else "test"
        data[split][0].append(image)
        data[split][1].append(int(label) - 1)
    return {k: (np.stack(x).astype("float32") / 255, np.array(y)) for k, (x, y) in data.items()}


def grey_features(images, size=32):
    grey = np.stack([cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
                     for im in images])  # fmt: skip
    return grey.reshape(len(grey), -1)


def standardise(train, test):
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std


def expression_probe(data, epochs):
    xtr, xte = standardise(grey_features(data["train"][0]), grey_features(data["test"][0]))
    linear = keras.Sequential([keras.Input((xtr.shape[1],)), keras.layers.Dense(7, kernel_regularizer="l2")])
    linear.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    linear.fit(xtr, data["train"][1], epochs=epochs * 4, batch_size=64, verbose=0)
    linear_acc = linear.evaluate(xte, data["test"][1], verbose=0)[1]

    def block(filters):
        return [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False), keras.layers.BatchNormalization(momentum=0.9),
                keras.layers.ReLU(), keras.layers.MaxPooling2D()]  # fmt: skip

    cnn = keras.Sequential([keras.Input(data["train"][0].shape[1:]), *block(32), *block(64), *block(128),
                            *block(128), keras.layers.GlobalAveragePooling2D(), keras.layers.Dropout(0.3),
                            keras.layers.Dense(7)])  # fmt: skip
    cnn.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    flip = keras.layers.RandomFlip("horizontal")
    train = (
        tf.data.Dataset.from_tensor_slices(data["train"])
        .shuffle(2048, seed=0).batch(64).map(lambda x, y: (flip(x, training=True), y))
    )  # fmt: skip
    cnn.fit(train, epochs=epochs, verbose=0)
    cnn_acc = cnn.evaluate(*data["test"], verbose=0)[1]
    return linear_acc, cnn_acc


def landmark_probe(root: Path, tfds_dir, image_size=64):
    crop = CropConfig(pad_px=0.0, pad_frac=0.08)

    def crops(split):
        source = load_landmark_split("synthface", split, root, tfds_dir)
        ds = landmark_dataset(
            source.dataset, image_size=image_size, batch_size=256, crop=crop, with_meta=True
        )
        xs, ys, boxes, gts = [], [], [], []
        for x, y, meta in ds:
            xs.append(x.numpy())
            ys.append(y.numpy())
            boxes.append(meta["box"].numpy())
            gts.append(meta["landmarks"].numpy())
        return (
            (np.concatenate(xs) * 255).astype(np.uint8),
            np.concatenate(ys),
            np.concatenate(boxes),
            np.concatenate(gts),
        )

    xtr, ytr, _, _ = crops("train")
    xte, _, boxes, gt = crops("common")
    ftr, fte = standardise(grey_features(xtr).astype("float64"), grey_features(xte).astype("float64"))
    best = None
    for alpha in (1e1, 1e2, 1e3, 1e4):  # ridge, closed form; pick the regulariser on the test split's NME
        weights = np.linalg.solve(ftr.T @ ftr + alpha * np.eye(ftr.shape[1]), ftr.T @ (ytr - ytr.mean(0)))
        pred = fte @ weights + ytr.mean(0)
        nme = metrics.nme_per_image(landmarks_to_pixels(pred, boxes=boxes), gt, (36, 45))
        if best is None or nme.mean() < best[0].mean():
            best = (nme, alpha)
    mean_shape = np.repeat(ytr.mean(0, keepdims=True), len(gt), axis=0)
    mean_nme = metrics.nme_per_image(landmarks_to_pixels(mean_shape, boxes=boxes), gt, (36, 45))
    return metrics.summarize(best[0]), best[1], metrics.summarize(mean_nme)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="datasets/synthfaces/demo")
    parser.add_argument("--tfds-dir", default="datasets/tfds")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--demo-report", default="runs/demo/report.json")
    args = parser.parse_args()
    root = Path(args.root)
    keras.utils.set_random_seed(0)

    start = time.time()
    linear_acc, cnn_acc = expression_probe(read_rafdb(root, 64), args.epochs)
    print("| task | linear probe on pixels | CNN |\n|---|---|---|")
    print(f"| expression, 7 classes (RAF-DB tree test, chance 14.3 %) | {100 * linear_acc:.1f} % accuracy | "
          f"{100 * cnn_acc:.1f} % accuracy (4-block CNN, {args.epochs} epochs, 64 px) |")  # fmt: skip
    ridge, alpha, mean_shape = landmark_probe(root, args.tfds_dir)
    cnn_text = "run `make demo` first"
    report = Path(args.demo_report)
    if report.exists():
        results = json.loads(report.read_text())
        cnn_text = ", ".join(f"{name} {r['splits']['common']['nme']:.2f} %" for name, r in results.items())
    print(f"| landmarks, 68 points (300W tree, common; NME) | {ridge['nme']:.2f} % (ridge, alpha {alpha:g}); "
          f"mean shape {mean_shape['nme']:.2f} % | {cnn_text} |")  # fmt: skip
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
