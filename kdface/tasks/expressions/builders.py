"""TFDS builders for the expression datasets: manual-download builders over the real on-disk formats
(RAF-DB, FED-RO, FERPlus, AffectNet, the occlusion lists, CK+), and SynthFaces' RAF-DB and CK+ trees as
generated builders over the same readers.

Every builder emits ``image`` (encoded; in-memory pixels such as FER2013's are PNG-encoded),
``label`` (a ``ClassLabel`` over kdface's 8 class names,
:data:`kdface.tasks.expressions.labels.CLASS_NAMES`, whatever the dataset's class count), ``box``
``(4,)`` float32 (the dataset's face box, or the full image ``(0, 0, W, H)`` when the image already is
a face crop), ``key`` (text) and ``occlusion_code`` (int32; the occlusion list's code in the
``occlusion`` / ``occluded`` splits, else -1).

The CK+ builders emit **pairs** of one subject (:mod:`kdface.tasks.expressions.ckplus`), one split per
cross-validation fold (``fold0`` ...): ``neutral`` and ``target`` (encoded), ``neutral_box`` and
``target_box`` (each frame's face box), ``label``, ``key`` (``<neutral frame>+<target frame>``),
``subject`` (``S005``), ``sequence`` (the target's, ``S005/001``) and ``fold``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from kdface.data.builders import SYNTHFACES_HOMEPAGE, RecordingBuilder, SynthFacesBuilder
from kdface.errors import DataFormatError
from kdface.tasks.expressions import ckplus, fedro, rafdb
from kdface.tasks.expressions.labels import CLASS_NAMES, NUM_BASIC, validated_expression_samples

_HOMEPAGES = {
    "rafdb": "http://www.whdeng.cn/RAF/model1.html",
    "fedro": "https://github.com/mysee1989/PG-CNN",
    "ferplus": "https://github.com/microsoft/FERPlus",
    "affectnet": "http://mohammadmahoor.com/affectnet/",
    "occlusion_lists": "https://github.com/kaiwang960112/Challenge-condition-FER-dataset",
    "ckplus": "https://www.jeffcohn.net/Resources/",
}


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


class _ExpressionBuilder(RecordingBuilder, skip_registration=True):
    """Shared by the expression builders: the bad-sample policy, the validation of every sample (image
    decodes, label in ``0..NUM_CLASSES-1``, box inside the image, key unique within the split).

    Bad samples are recorded in ``self.bad_samples``. Subclasses define ``_samples(root, split)``
    (the reader call) and the split names.
    """

    VERSION = tfds.core.Version("1.0.0")
    NUM_CLASSES: int = NUM_BASIC
    HOMEPAGE: str = ""

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


class KdfaceSynthfacesExpressions(SynthFacesBuilder, _ExpressionBuilder):
    """SynthFaces' RAF-DB tree (7 classes): a generated builder with splits ``train``, ``test`` and
    ``occluded`` (the test images of ``rafdb/rafdb_occlusion_list.txt``, with their occluder code),
    read by the RAF-DB reader exactly as real RAF-DB is."""

    HOMEPAGE = SYNTHFACES_HOMEPAGE

    def _split_generators(self, dl_manager):
        tree = self.synthfaces_tree("rafdb")
        return {split: self._generate_examples(tree, split) for split in ("train", "test", "occluded")}

    def _samples(self, root, split):
        if split == "occluded":
            return rafdb.read_occlusion_list(root, bad=self.bad_samples)
        return rafdb.read_split(root, split, bad=self.bad_samples)


def _pair_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            "neutral": tfds.features.Image(shape=(None, None, 3)),
            "target": tfds.features.Image(shape=(None, None, 3)),
            "neutral_box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "target_box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            "key": tfds.features.Text(),
            "subject": tfds.features.Text(),
            "sequence": tfds.features.Text(),
            "fold": tfds.features.Tensor(shape=(), dtype=np.int32),
        }
    )


class _CkplusBuilder(RecordingBuilder, skip_registration=True):
    """CK+ pairs, one split per fold (``fold0`` .. ``fold{folds-1}``: that fold's subjects' pairs).

    ``folds``, ``peak_frames`` and ``neutral_pairs`` are the protocol's options
    (:mod:`kdface.tasks.expressions.ckplus`); they change what is prepared, so they are builder
    arguments (and part of the prepared copy's name, :func:`kdface.data.sources.prepare_builder`).
    Problems of the whole tree (an entry that is no subject folder) are recorded before any split, for
    every split; a sequence's or a pair's in its subject's fold.
    """

    VERSION = tfds.core.Version("1.0.0")
    NUM_CLASSES = ckplus.NUM_CLASSES
    HOMEPAGE: str = _HOMEPAGES["ckplus"]

    def __init__(self, *, folds: int = ckplus.DEFAULT_FOLDS, peak_frames: int = ckplus.DEFAULT_PEAK_FRAMES,
                 neutral_pairs: bool = False, **kwargs):  # fmt: skip
        if folds < 2 or peak_frames < 1:
            raise ValueError(f"CK+ needs folds >= 2 and peak_frames >= 1, got {folds} and {peak_frames}")
        self.folds, self.peak_frames, self.neutral_pairs = int(folds), int(peak_frames), bool(neutral_pairs)
        super().__init__(**kwargs)

    def _info(self):
        return self.dataset_info_from_configs(features=_pair_features(), homepage=self.HOMEPAGE)

    def _ckplus_root(self, dl_manager) -> Path:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        root = self._ckplus_root(dl_manager)
        self.bad_samples.split = None  # the whole tree's problems hold for every split
        folds = ckplus.dataset_folds(root, self.folds, self.bad_samples)
        return {
            f"fold{k}": self._generate_examples(root, k, [s for s, fold in folds.items() if fold == k])
            for k in range(self.folds)
        }

    def _generate_examples(self, root: Path, fold: int, subjects: list[str]):
        self.bad_samples.split = f"fold{fold}"  # TFDS generates one split at a time
        found = 0
        for subject in subjects:
            sequences = ckplus.read_subject(root, subject, self.bad_samples)
            pairs = ckplus.subject_pairs(
                root, sequences, fold, self.peak_frames, self.neutral_pairs, self.bad_samples
            )
            for pair, _, _ in ckplus.validated_pairs(pairs, self.bad_samples):
                found += 1
                yield (
                    pair.key,
                    {
                        "neutral": pair.neutral.path,
                        "target": pair.target.path,
                        "neutral_box": np.asarray(pair.neutral_box, np.float32),
                        "target_box": np.asarray(pair.target_box, np.float32),
                        "label": int(pair.label),
                        "key": pair.key,
                        "subject": pair.subject,
                        "sequence": pair.sequence,
                        "fold": np.int32(fold),
                    },
                )
        if not found:  # TFDS would fail with a bare AssertionError on an empty split
            skipped = sum(1 for record in self.bad_samples.skipped if record.split == f"fold{fold}")
            raise DataFormatError(
                root,
                f"at least one valid pair in fold {fold} (subjects {', '.join(subjects)})",
                got=f"none ({skipped} bad samples skipped)",
            )


class KdfaceCkplus(_CkplusBuilder):
    """CK+ (593 sequences of 123 subjects, 327 labelled) as pairs of one subject, by fold."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Request CK+ from {_HOMEPAGES["ckplus"]}, unpack extended-cohn-kanade-images.zip, Emotion_labels.zip and
    (for the face boxes) Landmarks.zip into one folder, so that it holds cohn-kanade-images/S005/001/...,
    Emotion/S005/001/... and Landmarks/S005/001/..., and pass that folder as --data-dir.
    """

    def _ckplus_root(self, dl_manager) -> Path:
        return Path(dl_manager.manual_dir)


class KdfaceSynthfacesCkplus(SynthFacesBuilder, _CkplusBuilder):
    """SynthFaces' CK+ tree (``ckplus/``), read by the CK+ reader exactly as CK+ is."""

    HOMEPAGE = SYNTHFACES_HOMEPAGE

    def _ckplus_root(self, dl_manager) -> Path:
        return self.synthfaces_tree("ckplus")
