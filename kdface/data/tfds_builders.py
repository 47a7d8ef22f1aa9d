"""TFDS builders for the landmark and expression datasets: manual-download builders over the real
on-disk formats, and SynthFaces as generated builders over the same readers.

Every landmark builder emits the same features, so one pipeline serves them all:
``image`` (encoded), ``landmarks`` ``(N, 2)`` float32 kdface pixels, ``box`` ``(4,)`` float32 (the
dataset's face box, or the landmark box where the dataset has none), ``key`` (text).

Every expression builder (RAF-DB, FED-RO, FERPlus, AffectNet, SynthFaces' RAF-DB tree) emits
``image`` (encoded; in-memory pixels such as FER2013's are PNG-encoded), ``label`` (a
``ClassLabel`` over kdface's 8 class names, :data:`kdface.tasks.expressions.labels.CLASS_NAMES`, whatever
the dataset's class count), ``box`` ``(4,)`` float32 (the dataset's face box, or the full image
``(0, 0, W, H)`` when the image already is a face crop), ``key`` (text) and ``occlusion_code``
(int32; the occlusion list's code in the ``occlusion`` / ``occluded`` splits, else -1).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from kdface.data.validation import BadSamples, validated_samples
from kdface.errors import DataFormatError
from kdface.tasks.expressions import fedro, rafdb
from kdface.tasks.expressions.labels import CLASS_NAMES, NUM_BASIC, validated_expression_samples
from kdface.tasks.landmarks import cofw, w300, wflw
from kdface.tasks.landmarks.points import landmark_box

_HOMEPAGES = {
    "300w": "https://ibug.doc.ic.ac.uk/resources/300-W/",
    "cofw": "https://data.caltech.edu/records/bc0bf-nc666",
    "wflw": "https://wywu.github.io/projects/LAB/WFLW.html",
    "rafdb": "http://www.whdeng.cn/RAF/model1.html",
    "fedro": "https://github.com/mysee1989/PG-CNN",
    "ferplus": "https://github.com/microsoft/FERPlus",
    "affectnet": "http://mohammadmahoor.com/affectnet/",
    "occlusion_lists": "https://github.com/kaiwang960112/Challenge-condition-FER-dataset",
    "synthfaces": "https://github.com/kdface/kdface (kdface.data.synthfaces)",
}


def _features(num_points: int, extra: dict | None = None) -> tfds.features.FeaturesDict:
    spec = {
        "image": tfds.features.Image(shape=(None, None, 3)),
        "landmarks": tfds.features.Tensor(shape=(num_points, 2), dtype=np.float32),
        "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
        "key": tfds.features.Text(),
    }
    spec.update(extra or {})
    return tfds.features.FeaturesDict(spec)


def _example(sample, **extra):
    box = sample.box if sample.box is not None else landmark_box(sample.landmarks)
    image = sample.image_path if sample.image_path is not None else sample.image
    return sample.key, {
        "image": image,
        "landmarks": np.asarray(sample.landmarks, np.float32),
        "box": np.asarray(box, np.float32),
        "key": sample.key,
        **extra,
    }


class _LandmarkBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared by the landmark builders: the bad-sample policy and the validation of every sample.

    ``on_bad_sample`` is ``"error"`` (raise :class:`~kdface.errors.DataFormatError`) or ``"skip"``;
    the skipped samples are in ``self.bad_samples`` after preparing.
    """

    NUM_POINTS: int

    def __init__(self, *, on_bad_sample: str = "error", **kwargs):
        self.bad_samples = BadSamples(on_bad_sample)
        super().__init__(**kwargs)

    def _checked(self, samples, split: str):
        self.bad_samples.split = split  # TFDS generates one split at a time
        yield from validated_samples(samples, self.NUM_POINTS, self.bad_samples)


class KdfaceW300(_LandmarkBuilder):
    """300W (68 points): train 3148, common 554, challenging 135 (full = common + challenging)."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_POINTS = 68
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download 300W from https://ibug.doc.ic.ac.uk/resources/300-W/ (and the AFW/HELEN/LFPW/iBUG
    re-annotations from https://ibug.doc.ic.ac.uk/resources/facial-point-annotations/) and arrange:
      <manual_dir>/afw/  helen/trainset/  helen/testset/  lfpw/trainset/  lfpw/testset/  ibug/
    each folder holding images (.jpg/.png) with a same-named .pts file. Pass that folder as --data-dir.
    """

    def _info(self):
        return self.dataset_info_from_configs(features=_features(68), homepage=_HOMEPAGES["300w"])

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        return {split: self._generate_examples(root, split) for split in ("train", "common", "challenging")}

    def _generate_examples(self, root, split):
        for sample in self._checked(w300.read_split(root, split, bad=self.bad_samples), split):
            yield _example(sample)


class KdfaceCofw(_LandmarkBuilder):
    """COFW (29 points, occlusion flags): train 1345, test 507."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_POINTS = 29
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download COFW_train_color.mat and COFW_test_color.mat (Caltech Occluded Faces in the Wild,
    https://data.caltech.edu/records/bc0bf-nc666) into one folder and pass it as --data-dir.
    """

    def _info(self):
        extra = {"occluded": tfds.features.Tensor(shape=(29,), dtype=np.bool_)}
        return self.dataset_info_from_configs(features=_features(29, extra), homepage=_HOMEPAGES["cofw"])

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        return {split: self._generate_examples(root, split) for split in ("train", "test")}

    def _generate_examples(self, root, split):
        for sample in self._checked(cofw.read_split(root, split, bad=self.bad_samples), split):
            yield _example(sample, occluded=np.asarray(sample.attributes["occluded"], np.bool_))


class KdfaceWflw(_LandmarkBuilder):
    """WFLW (98 points, 6 attribute flags): train 7500, test 2500 (subsets are attribute filters)."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_POINTS = 98
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download WFLW_images.tar.gz and WFLW_annotations.tar.gz from
    https://wywu.github.io/projects/LAB/WFLW.html, extract both into one folder so that it holds
    WFLW_images/ and WFLW_annotations/list_98pt_rect_attr_train_test/, and pass it as --data-dir.
    """

    def _info(self):
        extra = {"attributes": tfds.features.Tensor(shape=(6,), dtype=np.bool_)}
        return self.dataset_info_from_configs(features=_features(98, extra), homepage=_HOMEPAGES["wflw"])

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        return {split: self._generate_examples(root, split) for split in ("train", "test")}

    def _generate_examples(self, root, split):
        for sample in self._checked(wflw.read_split(root, split, bad=self.bad_samples), split):
            flags = [bool(sample.attributes[name]) for name in wflw.ATTRIBUTES]
            yield _example(sample, attributes=np.asarray(flags, np.bool_))


class KdfaceSynthfaces(KdfaceW300):
    """SynthFaces' 300W-style tree (68 points): a generated builder.

    ``root`` is a SynthFaces folder; if it holds no complete tree, ``preset`` is generated there
    first. The examples are then read by the 300W reader, exactly as real 300W is.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = None

    def __init__(self, *, root=None, preset: str = "demo", **kwargs):
        self._root = Path(root) if root is not None else None
        self._preset = preset
        super().__init__(**kwargs)

    def _info(self):
        return self.dataset_info_from_configs(
            features=_features(68), homepage="https://github.com/kdface/kdface (kdface.data.synthfaces)"
        )

    def _split_generators(self, dl_manager):
        from kdface.data import synthfaces

        if self._root is None:
            raise ValueError("KdfaceSynthfaces needs root=<SynthFaces folder> to prepare")
        if not (self._root / "synthfaces.json").exists():  # generate() writes it last
            synthfaces.generate(self._root, synthfaces.SynthFacesConfig.preset(self._preset))
        tree = self._root / "300w"
        return {split: self._generate_examples(tree, split) for split in ("train", "common", "challenging")}


# ------------------------------------------------------------------------------------------ expressions

# Default names of the RAN occlusion lists in the dataset roots (spec A2), used to decide whether a
# builder has an ``occlusion`` split (a reader module may define ``has_occlusion_list`` instead).
FERPLUS_OCCLUSION_LIST = "jianfei_occlusion_list.txt"
AFFECTNET_OCCLUSION_LIST = "occlusion_affectnet_list.txt"


def _expression_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            "box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "key": tfds.features.Text(),
            "occlusion_code": tfds.features.Tensor(shape=(), dtype=np.int32),
        }
    )


def _expression_example(sample, hw):
    height, width = hw
    box = sample.box if sample.box is not None else (0.0, 0.0, float(width), float(height))
    code = sample.attributes.get("occlusion_code")
    image = sample.image_path if sample.image_path is not None else np.asarray(sample.image, np.uint8)
    return sample.key, {
        "image": image,
        "label": int(sample.label),
        "box": np.asarray(box, np.float32),
        "key": sample.key,
        "occlusion_code": np.int32(-1 if code is None else int(code)),
    }


def _has_occlusion_list(module, root: Path, default_name: str) -> bool:
    check = getattr(module, "has_occlusion_list", None)
    return bool(check(root)) if callable(check) else (root / default_name).is_file()


class _ExpressionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared by the expression builders: the bad-sample policy, the validation of every sample (image
    decodes, label in ``0..NUM_CLASSES-1``, box inside the image, key unique within the split).

    ``on_bad_sample`` is ``"error"`` (raise :class:`~kdface.errors.DataFormatError`) or ``"skip"``;
    the skipped samples are in ``self.bad_samples`` after preparing. Subclasses define
    ``_samples(root, split)`` (the reader call) and the split names.
    """

    VERSION = tfds.core.Version("1.0.0")
    NUM_CLASSES: int = NUM_BASIC
    HOMEPAGE: str = ""

    def __init__(self, *, on_bad_sample: str = "error", **kwargs):
        self.bad_samples = BadSamples(on_bad_sample)
        super().__init__(**kwargs)

    def _info(self):
        return self.dataset_info_from_configs(features=_expression_features(), homepage=self.HOMEPAGE)

    def _samples(self, root: Path, split: str):
        raise NotImplementedError

    def _generate_examples(self, root, split):
        self.bad_samples.split = split  # TFDS generates one split at a time
        seen: set[str] = set()
        samples = self._samples(root, split)
        for sample, hw in validated_expression_samples(
            samples, self.NUM_CLASSES, self.bad_samples, with_size=True
        ):
            if sample.key in seen:
                self.bad_samples.handle(DataFormatError(sample.origin or sample.key, "each image once in a split",
                                                        got=f"key {sample.key} again"))  # fmt: skip
                continue
            seen.add(sample.key)
            yield _expression_example(sample, hw)
        if not seen:  # TFDS would fail with a bare AssertionError on an empty split
            skipped = sum(1 for record in self.bad_samples.skipped if record.split == split)
            raise DataFormatError(
                root,
                f"at least one valid sample in the {split!r} split",
                got=f"none ({skipped} bad samples skipped)",
            )


class KdfaceRafdb(_ExpressionBuilder):
    """RAF-DB basic (7 classes): train 12271, test 3068, and ``occlusion`` (Occlusion-RAF-DB, 735 test
    images) when ``rafdb_occlusion_list.txt`` is in the folder. SCN or IGKD layout (:mod:`kdface.tasks.expressions.rafdb`)."""

    HOMEPAGE = _HOMEPAGES["rafdb"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Request RAF-DB from {_HOMEPAGES["rafdb"]} and pass as --data-dir the "basic" folder in either layout:
      SCN:  EmoLabel/list_patition_label.txt + Image/aligned/*_aligned.jpg
      IGKD: Annotated/train_labels.txt, Annotated/val_labels.txt + train/<class>/..., val/<class>/...
    For Occlusion-RAF-DB also put RAN's rafdb_occlusion_list.txt ({_HOMEPAGES["occlusion_lists"]},
    RAF_DB_dir/) into that folder.
    """

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        splits = {split: self._generate_examples(root, split) for split in rafdb.SPLITS}
        if rafdb.has_occlusion_list(root):
            splits["occlusion"] = self._generate_examples(root, "occlusion")
        return splits

    def _samples(self, root, split):
        if split == "occlusion":
            return rafdb.read_occlusion_list(root, bad=self.bad_samples)
        return rafdb.read_split(root, split, bad=self.bad_samples)


class KdfaceFedro(_ExpressionBuilder):
    """FED-RO (7 classes, 400 occluded test images), class folders or a list (:mod:`kdface.tasks.expressions.fedro`)."""

    HOMEPAGE = _HOMEPAGES["fedro"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Get FED-RO (links in the {_HOMEPAGES["fedro"]} README) and arrange it as one folder per class,
    <data-dir>/<class>/*.jpg (class: surprise, fear, disgust, happiness, sadness, anger, neutral or a
    synonym such as happy, angry), or write <data-dir>/fedro_list.txt with lines '<relative path> <label>'.
    """

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        return {"test": self._generate_examples(root, "test")}

    def _samples(self, root, split):
        return fedro.read_split(root, split, bad=self.bad_samples)


class KdfaceFerplus(_ExpressionBuilder):
    """FERPlus (8 classes, majority vote): train, valid, trainvalid (both: the usual training set),
    test, and ``occlusion`` (Occlusion-FERPlus) when the RAN list is in the folder. Read by :mod:`kdface.tasks.expressions.ferplus`."""

    NUM_CLASSES = len(CLASS_NAMES)
    HOMEPAGE = _HOMEPAGES["ferplus"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Get the FERPlus labels from {_HOMEPAGES["ferplus"]} and the FER2013 pixels (Kaggle fer2013.csv),
    put them into one folder as kdface.tasks.expressions.ferplus describes, and pass it as --data-dir. For
    Occlusion-FERPlus also put RAN's {FERPLUS_OCCLUSION_LIST} ({_HOMEPAGES["occlusion_lists"]}) there.
    """

    def _split_generators(self, dl_manager):
        from kdface.tasks.expressions import ferplus

        root = Path(dl_manager.manual_dir)
        # trainvalid: the RAN / SCN protocol trains on FER2013Train + FER2013Valid (28,236 images)
        splits = {
            split: self._generate_examples(root, split) for split in ("train", "valid", "trainvalid", "test")
        }
        if _has_occlusion_list(ferplus, root, FERPLUS_OCCLUSION_LIST):
            splits["occlusion"] = self._generate_examples(root, "occlusion")
        return splits

    def _samples(self, root, split):
        from kdface.tasks.expressions import ferplus

        if split == "occlusion":
            return ferplus.read_occlusion_list(root, bad=self.bad_samples)
        if split == "trainvalid":
            return itertools.chain(
                *(ferplus.read_split(root, part, bad=self.bad_samples) for part in ("train", "valid"))
            )
        return ferplus.read_split(root, split, bad=self.bad_samples)


class KdfaceAffectnet(_ExpressionBuilder):
    """AffectNet (``num_classes`` 8, or 7 without contempt): train, val, and ``occlusion``
    (Occlusion-AffectNet) when the RAN list is in the folder. Read by :mod:`kdface.tasks.expressions.affectnet`.

    With ``num_classes=7`` contempt images are filtered out (not counted as bad samples).
    """

    HOMEPAGE = _HOMEPAGES["affectnet"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Request AffectNet from {_HOMEPAGES["affectnet"]}, arrange it as kdface.tasks.expressions.affectnet describes
    and pass the folder as --data-dir. For Occlusion-AffectNet also put RAN's
    {AFFECTNET_OCCLUSION_LIST} ({_HOMEPAGES["occlusion_lists"]}) there.
    """

    def __init__(self, *, num_classes: int = 8, **kwargs):
        if num_classes not in (NUM_BASIC, len(CLASS_NAMES)):
            raise ValueError(f"AffectNet num_classes must be 7 or 8, got {num_classes}")
        self.NUM_CLASSES = num_classes
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        from kdface.tasks.expressions import affectnet

        root = Path(dl_manager.manual_dir)
        splits = {split: self._generate_examples(root, split) for split in ("train", "val")}
        if _has_occlusion_list(affectnet, root, AFFECTNET_OCCLUSION_LIST):
            splits["occlusion"] = self._generate_examples(root, "occlusion")
        return splits

    def _samples(self, root, split):
        from kdface.tasks.expressions import affectnet

        if split == "occlusion":
            samples = affectnet.read_occlusion_list(root, num_classes=self.NUM_CLASSES, bad=self.bad_samples)
        else:
            samples = affectnet.read_split(root, split, num_classes=self.NUM_CLASSES, bad=self.bad_samples)
        # 7 classes: contempt is left out of the task, not a bad sample (the reader filters it too).
        return (s for s in samples if not (self.NUM_CLASSES == NUM_BASIC and s.label == NUM_BASIC))


def _ensure_synthfaces(root: Path, preset: str) -> None:
    """Generate SynthFaces under ``root`` unless a tree of this generator version is there. A tree of an
    older version (no occlusion list yet) is regenerated with the config it records."""
    import dataclasses
    import json

    from kdface.data import synthfaces

    marker = root / "synthfaces.json"
    config = synthfaces.SynthFacesConfig.preset(preset)
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("generator_version") == synthfaces.GENERATOR_VERSION:
            return
        known = {f.name for f in dataclasses.fields(synthfaces.SynthFacesConfig)}
        recorded = {k: v for k, v in (info.get("config") or {}).items() if k in known}
        if "expression_weights" in recorded:
            recorded["expression_weights"] = tuple(recorded["expression_weights"])
        config = synthfaces.SynthFacesConfig(**recorded)
    synthfaces.generate(root, config)


class KdfaceSynthfacesExpressions(_ExpressionBuilder):
    """SynthFaces' RAF-DB tree (7 classes): a generated builder with splits ``train``, ``test`` and
    ``occluded`` (the test images of ``rafdb/rafdb_occlusion_list.txt``, with their occluder code).

    ``root`` is a SynthFaces folder; ``preset`` is generated there first if it holds no tree of the
    current generator version. Read by the RAF-DB reader, exactly as real RAF-DB is.
    """

    HOMEPAGE = _HOMEPAGES["synthfaces"]
    MANUAL_DOWNLOAD_INSTRUCTIONS = None

    def __init__(self, *, root=None, preset: str = "demo", **kwargs):
        self._root = Path(root) if root is not None else None
        self._preset = preset
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        if self._root is None:
            raise ValueError("KdfaceSynthfacesExpressions needs root=<SynthFaces folder> to prepare")
        _ensure_synthfaces(self._root, self._preset)
        tree = self._root / "rafdb"
        return {split: self._generate_examples(tree, split) for split in ("train", "test", "occluded")}

    def _samples(self, root, split):
        if split == "occluded":
            return rafdb.read_occlusion_list(root, bad=self.bad_samples)
        return rafdb.read_split(root, split, bad=self.bad_samples)
