"""SynthFacesConfig, what ``generate`` writes (sizes, presets), and the train/test identity split."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from kdface.data.synthfaces.sampling import _TAG_SPLIT
from kdface.errors import ConfigError, UnknownNameError
from kdface.registry import unknown_name_message

VERIFICATION_FOLDS = 10  # the InsightFace .bin convention: 10 contiguous folds
# The CK+ tree's fields: left out of to_dict() when ckplus_subjects is 0, so that a config without a CK+
# tree records what configs recorded before the tree existed (their trees stay up to date).
CKPLUS_FIELDS = (
    "ckplus_subjects",
    "ckplus_sequences",
    "ckplus_min_frames",
    "ckplus_max_frames",
    "ckplus_labelled_fraction",
    "ckplus_width",
    "ckplus_height",
)


@dataclass
class SynthFacesConfig:
    """What :func:`generate` writes. The defaults are the ``demo`` preset."""

    seed: int = 0
    num_identities: int = 120
    test_identity_fraction: float = 0.2  # identities reserved for the test splits
    # 300W-style landmark tree
    image_size: int = 128  # square images
    face_fraction: float = 0.667  # face width / image width (image = 1.5x the face)
    w300_train: int = 2000  # split over lfpw/trainset, helen/trainset, afw in the real proportions
    w300_common: int = 300  # lfpw/testset + helen/testset
    w300_challenging: int = 100  # ibug: stronger pose jitter, more occlusion, harsher imaging
    # RAF-DB basic-expression tree (aligned faces)
    rafdb_size: int = 100
    rafdb_train: int = 1500
    rafdb_test: int = 400
    # CASIA-WebFace-style identity folders for identities 0..num_identity_folders-1: the train ones
    # under identities/, the held-out (test) ones under identities_test/
    identity_size: int = 112
    num_identity_folders: int = 100
    images_per_identity: int = 6  # images per identity folder
    # verification/synthface.bin: pairs of held-out identities' images in 10 folds, each half
    # same-identity and half different pairs (a multiple of 20; 0 writes no file)
    verification_pairs: int = 200
    # appearance
    occlusion_fraction: float = 0.3
    challenging_occlusion_fraction: float = 0.5
    rafdb_test_occlusion_fraction: float = 0.5  # RAF-DB test images only (its occlusion list)
    pose_jitter: float = 1.0
    challenging_pose_jitter: float = 2.0
    expression_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # RAF-DB order 1..7
    jpeg_quality: int = 95
    # CK+ tree (ckplus/, the real CK+ layout): subjects of their own, each with >= 1 sequence going from
    # a neutral onset to a peak; labelled_fraction of the sequences carry a CK+ emotion file (327 of 593
    # in CK+); frames are grey PNGs of width x height (CK+: 640 x 490). 0 subjects: no CK+ tree.
    ckplus_subjects: int = 60
    ckplus_sequences: int = 240
    ckplus_min_frames: int = 5
    ckplus_max_frames: int = 8
    ckplus_labelled_fraction: float = 0.55
    ckplus_width: int = 256
    ckplus_height: int = 196

    @classmethod
    def demo(cls, **overrides) -> SynthFacesConfig:
        """About 2000/300/100 300W images, 1500/400 RAF-DB, 100 x 6 identity images, 200 verification
        pairs, a CK+ tree of 60 subjects x 4 sequences of 5-8 frames at 256 x 196 (< 1 min)."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> SynthFacesConfig:
        """A few dozen images per split, for unit tests (a couple of seconds)."""
        values = dict(
            num_identities=12,
            test_identity_fraction=0.25,
            image_size=96,
            w300_train=24,
            w300_common=10,
            w300_challenging=8,
            rafdb_train=24,
            rafdb_test=12,
            num_identity_folders=12,
            images_per_identity=3,
            verification_pairs=20,
            ckplus_subjects=10,  # one a fold of CK+'s 10-fold cross-validation
            ckplus_sequences=20,
            ckplus_min_frames=3,
            ckplus_max_frames=5,
            ckplus_width=128,
            ckplus_height=98,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def full(cls, **overrides) -> SynthFacesConfig:
        """Roughly the real datasets' sizes (300W 3148/554/135, RAF-DB 12271/3068, 1000 x 20 identities,
        6000 verification pairs like LFW and AgeDB-30)."""
        values = dict(
            num_identities=1000,
            w300_train=3148,
            w300_common=554,
            w300_challenging=135,
            rafdb_train=12271,
            rafdb_test=3068,
            num_identity_folders=1000,
            images_per_identity=20,
            verification_pairs=6000,
            ckplus_subjects=123,  # CK+: 123 subjects, 593 sequences (327 labelled), 10-60 frames of 640 x 490
            ckplus_sequences=593,
            ckplus_min_frames=10,
            ckplus_max_frames=30,
            ckplus_width=640,
            ckplus_height=490,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def faceid(cls, **overrides) -> SynthFacesConfig:
        """Face-identification pretraining and verification: 500 identities, of which 400 train
        identities x 16 images (6400 images in identities/) and 100 held-out identities x 16
        (identities_test/), and 600 verification pairs (10 folds of 30 same + 30 different).

        Why these sizes: 16 images per class give a margin head (CosFace/ArcFace) several views of
        each identity (pose, light, expression, occluder) to pull together in every epoch
        (CASIA-WebFace averages 46 per class); 400 classes make the embedding separate many
        identities rather than memorise a few; 100 held-out identities give 4950 different-identity
        combinations and 12000 same-identity image pairs, so the 600 pairs repeat nothing, and 60
        pairs per fold keep the 10-fold standard deviation meaningful (a fold's binomial standard
        error is about 4 points at 90 % accuracy) while evaluation stays small (1200 pair images,
        like a tenth of LFW). The landmark and expression trees are kept to the minimum the config
        allows (no 300W images; RAF-DB 2 images per identity), and there is no CK+ tree.
        Generation: 9000 images (6400 + 1600 identity, 1000 RAF-DB), 96 MB, in 42 s on the
        development machine (2 CPU cores, 2 worker processes; measured with the CLI).
        """
        values = dict(
            num_identities=500,
            test_identity_fraction=0.2,
            w300_train=0,
            w300_common=0,
            w300_challenging=0,
            rafdb_train=800,
            rafdb_test=200,
            num_identity_folders=500,
            images_per_identity=16,
            verification_pairs=600,
            ckplus_subjects=0,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def preset(cls, name: str, **overrides) -> SynthFacesConfig:
        presets = {"demo": cls.demo, "tiny": cls.tiny, "full": cls.full, "faceid": cls.faceid}
        if name not in presets:
            raise UnknownNameError(unknown_name_message("SynthFaces preset", name, presets))
        return presets[name](**overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["expression_weights"] = list(self.expression_weights)
        if not self.ckplus_subjects:
            for name in CKPLUS_FIELDS:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, recorded: dict) -> SynthFacesConfig:
        """The config a ``synthfaces.json`` records (:meth:`to_dict`); unknown keys are ignored, and a
        record without the CK+ fields had no CK+ tree."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in recorded.items() if k in known}
        if "expression_weights" in values:
            values["expression_weights"] = tuple(values["expression_weights"])
        values.setdefault("ckplus_subjects", 0)
        return cls(**values)

    def without_ckplus(self) -> dict:
        """:meth:`to_dict` less the CK+ fields: what the other trees are a function of."""
        return {k: v for k, v in self.to_dict().items() if k not in CKPLUS_FIELDS}

    def validate(self) -> None:
        """Raise :class:`~kdface.errors.ConfigError` (a ``ValueError``) for values out of range."""
        for name in ("image_size", "rafdb_size", "identity_size"):
            if getattr(self, name) < 8:  # the smallest image kdface's readers accept
                raise ConfigError(f"{name} must be at least 8 pixels, got {getattr(self, name)}")
        for name in (
            "w300_train",
            "w300_common",
            "w300_challenging",
            "num_identity_folders",
            "images_per_identity",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.num_identities < 2:
            raise ConfigError("num_identities must be >= 2 (train and test identities are disjoint)")
        train_ids, test_ids = identity_split(self)
        if self.rafdb_train < 2 * len(train_ids) or self.rafdb_test < 2 * len(test_ids):
            raise ConfigError(
                f"rafdb_train/rafdb_test ({self.rafdb_train}/{self.rafdb_test}) must be at least twice the "
                f"number of train/test identities ({len(train_ids)}/{len(test_ids)}): every identity gets "
                "a neutral/expressive pair"
            )
        if self.num_identity_folders > self.num_identities:
            raise ConfigError("num_identity_folders must not exceed num_identities")
        if self.verification_pairs < 0 or self.verification_pairs % (2 * VERIFICATION_FOLDS):
            raise ConfigError(
                f"verification_pairs must be a non-negative multiple of {2 * VERIFICATION_FOLDS} ("
                f"{VERIFICATION_FOLDS} folds, each half same and half different pairs), got {self.verification_pairs}"
            )
        held_out = held_out_folder_identities(self)
        if self.verification_pairs and (len(held_out) < 2 or self.images_per_identity < 2):
            raise ConfigError(
                f"verification_pairs needs at least 2 held-out identities with folders and 2 images each; "
                f"this config has {len(held_out)} held-out identities among the {self.num_identity_folders} "
                f"identity folders and {self.images_per_identity} images per identity (raise "
                "num_identity_folders or test_identity_fraction, or set verification_pairs=0)"
            )
        if (
            len(self.expression_weights) != 7
            or min(self.expression_weights) < 0
            or sum(self.expression_weights) <= 0
        ):
            raise ConfigError("expression_weights needs 7 non-negative weights (RAF-DB order 1..7)")
        fractions = (
            self.occlusion_fraction,
            self.challenging_occlusion_fraction,
            self.rafdb_test_occlusion_fraction,
        )
        if not all(0 <= f <= 1 for f in fractions):
            raise ConfigError("occlusion fractions must be in [0, 1]")
        self._validate_ckplus()

    def _validate_ckplus(self) -> None:
        if not self.ckplus_subjects:
            return
        if not 0 < self.ckplus_subjects <= 995:
            raise ConfigError(
                f"ckplus_subjects must be 0..995 (CK+ names subjects S005..S999), got {self.ckplus_subjects}"
            )
        if not self.ckplus_subjects <= self.ckplus_sequences <= 999 * self.ckplus_subjects:
            raise ConfigError(
                f"ckplus_sequences must be between ckplus_subjects ({self.ckplus_subjects}: one a subject at "
                f"least) and 999 a subject, got {self.ckplus_sequences}"
            )
        if not 2 <= self.ckplus_min_frames <= self.ckplus_max_frames <= 9999:
            raise ConfigError(
                "CK+ sequences need 2 <= ckplus_min_frames <= ckplus_max_frames <= 9999 (an onset and a "
                f"peak at least), got {self.ckplus_min_frames}..{self.ckplus_max_frames}"
            )
        if not 0 <= self.ckplus_labelled_fraction <= 1:
            raise ConfigError(
                f"ckplus_labelled_fraction must be in [0, 1], got {self.ckplus_labelled_fraction}"
            )
        if min(self.ckplus_width, self.ckplus_height) < 64:
            raise ConfigError(
                f"CK+ frames must be at least 64 pixels a side (the face is a third of the width), got "
                f"{self.ckplus_width} x {self.ckplus_height}"
            )


def identity_split(config: SynthFacesConfig) -> tuple[list[int], list[int]]:
    """(train identity ids, test identity ids), disjoint, deterministic from the seed."""
    rng = np.random.default_rng([int(config.seed), _TAG_SPLIT])
    perm = rng.permutation(config.num_identities)
    n_test = min(
        config.num_identities - 1, max(1, int(round(config.test_identity_fraction * config.num_identities)))
    )
    return sorted(int(i) for i in perm[n_test:]), sorted(int(i) for i in perm[:n_test])


def held_out_folder_identities(config: SynthFacesConfig) -> list[int]:
    """The test identities that get a folder (under ``identities_test/``), sorted."""
    _, test_ids = identity_split(config)
    return [i for i in test_ids if i < config.num_identity_folders]
