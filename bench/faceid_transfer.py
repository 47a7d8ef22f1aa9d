"""How much expression information does the face-id pretrained backbone carry? A linear probe.

The expression demos start from ``make pretrain``'s face-id ResNet-18 (the papers start from MS-Celeb /
VGGFace2 networks). This fits a softmax regression (L2 1e-3, Adam 1e-2, 200 epochs) on the frozen
``embedding`` of the SynthFaces RAF-DB training images, once for the pretrained backbone and once for
the same backbone with random weights, and scores it on a held-out tenth of the *training* images (the
test split is never read).

Run: python bench/faceid_transfer.py [--root datasets/synthfaces/demo]
    [--weights models/pretrained/synthface_faceid_resnet18.keras]
The figures in docs/results.md ("The face-pretrained start") come from this script.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import keras
import numpy as np

from kdface.backbones import create_backbone


def training_images(root: Path, size: int):
    labels = (root / "rafdb/EmoLabel/list_patition_label.txt").read_text().split("\n")
    names = [line.split() for line in labels if line.startswith("train")]
    images = []
    for name, _ in names:
        image = cv2.imread(str(root / "rafdb/Image/aligned" / name.replace(".jpg", "_aligned.jpg")))
        images.append(
            cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA)
        )
    return np.stack(images).astype("float32") / 255, np.array([int(label) - 1 for _, label in names])


def probe(features, labels, train, held_out) -> tuple[float, float]:
    keras.utils.set_random_seed(0)
    features = (features - features[train].mean(0)) / (features[train].std(0) + 1e-6)
    classifier = keras.Sequential([keras.Input((features.shape[1],)),
                                   keras.layers.Dense(7, kernel_regularizer=keras.regularizers.l2(1e-3))])  # fmt: skip
    classifier.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])  # fmt: skip
    classifier.fit(features[train], labels[train], epochs=200, batch_size=256, verbose=0)
    return (classifier.evaluate(features[train], labels[train], verbose=0)[1],
            classifier.evaluate(features[held_out], labels[held_out], verbose=0)[1])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="datasets/synthfaces/demo", type=Path)
    parser.add_argument("--weights", default="models/pretrained/synthface_faceid_resnet18.keras")
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    images, labels = training_images(args.root, args.image_size)
    order = np.random.default_rng(0).permutation(len(labels))
    held_out, train = order[: len(labels) // 10], order[len(labels) // 10 :]
    print("| backbone | probe accuracy, held-out train images | on its training images |\n|---|---:|---:|")
    for name, weights in (("face-id pretrained", args.weights), ("random weights", None)):
        keras.utils.set_random_seed(0)
        backbone = create_backbone("resnet18", image_size=args.image_size, weights=weights)
        features = backbone.predict(images, batch_size=64, verbose=0)["embedding"]
        fit, score = probe(features, labels, train, held_out)
        print(f"| {name} | {score * 100:.1f} % ({len(held_out)}) | {fit * 100:.1f} % ({len(train)}) |")


if __name__ == "__main__":
    main()
