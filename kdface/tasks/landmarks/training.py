"""What every landmark method's training shares: the crop and augmentation fields of the config, the
training data (epoch stream + validation set) and the model card's landmark fields.

Models take RGB face crops in ``[0, 1]`` and return the flat, interleaved, crop-normalised landmark
vector ``(B, 2N)`` (:func:`kdface.tasks.landmarks.points.landmarks_to_pixels`).
"""

from __future__ import annotations

import dataclasses

import keras

from kdface.backbones import create_backbone
from kdface.config import ExperimentConfig, option
from kdface.heads import landmark_head
from kdface.tasks.landmarks.pipeline import (
    AugmentConfig,
    CropConfig,
    landmark_dataset,
    landmark_training_stream,
)
from kdface.tasks.landmarks.sources import LandmarkSource, check_landmark_inputs, load_landmark_split
from kdface.training.run import TrainingData

# Datasets that ship a face box: the KD-Loss original united it with the landmark box (spec §4.2, §4.3).
UNION_BOX_DATASETS = ("cofw", "wflw")


@dataclasses.dataclass
class LandmarkConfig(ExperimentConfig):
    """A landmark experiment: the crop around the face and the online augmentation."""

    dataset: str = option("synthface", "synthface (generated here), 300w, cofw or wflw")
    pad_px: float | None = option(None, "crop padding around the landmark box, pixels per side")
    pad_frac: float | None = option(
        None, "crop padding around the landmark box, fraction of its size per side"
    )
    augment: bool | None = option(
        None, "online augmentation (flip with landmark relabelling, rotation, zoom, shift, colour)"
    )
    max_rotation: float | None = option(None, "augmentation rotation range, +- radians")
    val_fraction: float = option(
        0.05, "fraction of the training split held out for validation / best-model selection"
    )

    def check_inputs(self) -> None:
        super().check_inputs()
        check_landmark_inputs(self.dataset, [self.splits()[0]], self.data_dir, self.tfds_dir, check_dir=True)

    def crop(self) -> CropConfig:
        return CropConfig(pad_px=self.pad_px, pad_frac=self.pad_frac,
                          union_dataset_box=self.dataset in UNION_BOX_DATASETS)  # fmt: skip

    def augmentation(self) -> AugmentConfig:
        return AugmentConfig(rotation=self.max_rotation) if self.augment else AugmentConfig.none()


@dataclasses.dataclass
class LandmarkData(TrainingData):
    """:class:`TrainingData` plus the training split it streams."""

    source: LandmarkSource | None = None


def load_split(config: LandmarkConfig, split: str, on_bad_sample: str = "error") -> LandmarkSource:
    return load_landmark_split(
        config.dataset, split, config.data_dir, config.tfds_dir, on_bad_sample=on_bad_sample
    )


def training_data(config: LandmarkConfig, on_bad_sample="error", *, target_transform=None, extra=None,
                  source=None) -> LandmarkData:  # fmt: skip
    """The training stream and validation set of ``config``.

    ``target_transform`` applies to the training targets only: validation is never augmented and
    always measures against the hard ground truth. ``extra`` (aligned with the training split) is
    attached to the inputs (cached teacher predictions). ``source``: the training split, if the caller
    loaded it already.
    """
    train_split, val_split = config.splits()
    source = source or load_split(config, train_split, on_bad_sample)
    common = dict(image_size=config.image_size, batch_size=config.batch_size, crop=config.crop())

    def stream(start_epoch: int = 0, skip_batches: int = 0):
        return landmark_training_stream(source.dataset, augment=config.augmentation(), seed=config.seed,
                                        target_transform=target_transform, start_epoch=start_epoch,
                                        skip_batches=skip_batches, extra=extra, **common)  # fmt: skip

    val = None
    if val_split is not None:
        val = landmark_dataset(load_split(config, val_split, on_bad_sample).dataset, cache=True, **common)
    card = {"task": "landmarks", "num_points": source.num_points, "normaliser": list(source.normaliser),
            "image_size": config.image_size, "crop": dataclasses.asdict(config.crop())}  # fmt: skip
    # Full batches per epoch (the training stream drops the remainder).
    per_pass = source.size // config.batch_size
    return LandmarkData(stream=stream, steps_per_epoch=config.steps_per_epoch or per_pass, batches_per_pass=per_pass,
                        val=val, monitor="val_nme", mode="min",
                        skipped=source.skipped, card=card, source=source)  # fmt: skip


def build_regressor(backbone: str, num_points: int, image_size: int, dropout: float = 0.0, weights=None,
                    name: str = "landmark_regressor", bn_momentum=None) -> keras.Model:  # fmt: skip
    """Backbone -> embedding (global average pooling) -> (Dropout) -> Dense(2N) named ``landmarks``."""
    features = create_backbone(backbone, image_size=image_size, weights=weights, bn_momentum=bn_momentum)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    outputs = landmark_head(num_points, dropout)(features(inputs)["embedding"])
    return keras.Model(inputs, outputs, name=name)
