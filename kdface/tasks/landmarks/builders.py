"""TFDS builders for the landmark datasets: manual-download builders over the real on-disk formats
(300W, COFW, WFLW), and SynthFaces' 300W tree as a generated builder over the same reader.

Every builder emits the same features, so one pipeline serves them all: ``image`` (encoded),
``landmarks`` ``(N, 2)`` float32 kdface pixels, ``box`` ``(4,)`` float32 (the dataset's face box, or
the landmark box where the dataset has none), ``key`` (text).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from kdface.data.builders import SYNTHFACES_HOMEPAGE, RecordingBuilder, SynthFacesBuilder
from kdface.data.validation import validated_samples
from kdface.tasks.landmarks import cofw, w300, wflw
from kdface.tasks.landmarks.points import landmark_box

_HOMEPAGES = {
    "300w": "https://ibug.doc.ic.ac.uk/resources/300-W/",
    "cofw": "https://data.caltech.edu/records/bc0bf-nc666",
    "wflw": "https://wywu.github.io/projects/LAB/WFLW.html",
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


class _LandmarkBuilder(RecordingBuilder, skip_registration=True):
    """Shared by the landmark builders: the validation of every sample (bad ones recorded in
    ``self.bad_samples``)."""

    NUM_POINTS: int

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


class KdfaceSynthfaces(SynthFacesBuilder, KdfaceW300):
    """SynthFaces' 300W-style tree (68 points): a generated builder over ``root`` (see
    :class:`~kdface.data.builders.SynthFacesBuilder`), read by the 300W reader exactly as real 300W is."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(features=_features(68), homepage=SYNTHFACES_HOMEPAGE)

    def _split_generators(self, dl_manager):
        tree = self.synthfaces_tree("300w")
        return {split: self._generate_examples(tree, split) for split in ("train", "common", "challenging")}
