"""TFDS builders for identity training sets: CASIA-WebFace (manual download, any of insightface's layouts)
and SynthFaces' train identities (generated), over the same readers.

Each emits one ``train`` split of ``image`` (the encoded aligned crop, kept as stored), ``label`` (int64
class ``0..C-1``) and ``key`` (text). Every image is checked (it decodes, sane size) under the
``--on-bad-sample`` policy; labels must lie in ``0..C-1``.

CASIA-WebFace layouts, tried in this order in ``--data-dir``:

1. ``train.rec`` + ``train.idx`` (insightface's ``faces_webface_112x112`` as shipped; read without mxnet,
   :mod:`kdface.tasks.recognition.recordio`): the class is the record's label;
2. ``train.list`` + ``image/`` (what the originals' ``load_images_from_bin.py`` extracts): classes as
   written;
3. ``image/<id>/<n>.jpg`` or ``<id>/<n>.jpg`` folders: classes in sorted folder order.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from kdface.data.builders import SYNTHFACES_HOMEPAGE, RecordingBuilder, SynthFacesBuilder
from kdface.data.validation import check_image_bytes
from kdface.errors import DataFormatError
from kdface.tasks.recognition import casia

CASIA_HOMEPAGE = "https://github.com/deepinsight/insightface/tree/master/recognition/_datasets_"


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
            "key": tfds.features.Text(),
        }
    )


class _IdentityBuilder(RecordingBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    HOMEPAGE = ""

    def _info(self):
        return self.dataset_info_from_configs(features=_features(), homepage=self.HOMEPAGE)

    def _items(self, root: Path):
        """``(key, encoded bytes or None, path or None, label, origin, line)`` per image."""
        raise NotImplementedError

    def _generate_examples(self, root):
        self.bad_samples.split = "train"
        count = 0
        for key, data, path, label, origin, line in self._items(Path(root)):
            try:
                if data is None:
                    try:
                        data = Path(path).read_bytes()
                    except OSError as exc:
                        raise DataFormatError(origin, "a readable image file", line=line,
                                              got=f"{path}: {exc.strerror or exc}") from None  # fmt: skip
                check_image_bytes(data, path or origin, line)
            except DataFormatError as error:
                self.bad_samples.handle(error)
                continue
            count += 1
            yield key, {"image": io.BytesIO(data), "label": np.int64(label), "key": key}
        if not count:
            raise DataFormatError(
                root, "at least one valid training image", got=f"none ({len(self.bad_samples)} bad)"
            )


def _folder_items(root: Path):
    identities = casia.read_identity_folders(root)
    for path, label in identities.items:
        yield f"{path.parent.name}/{path.name}", None, path, label, path, None


class KdfaceCasiaWebface(_IdentityBuilder):
    """CASIA-WebFace as insightface ships it (``train.rec``/``train.idx``), or extracted."""

    HOMEPAGE = CASIA_HOMEPAGE
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "the folder of insightface's faces_webface_112x112 (train.rec + train.idx), or the extracted layout "
        "(train.list + image/<id>/<n>.jpg), or identity folders <id>/<n>.jpg"
    )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(Path(dl_manager.manual_dir))}

    def _items(self, root):
        if (root / "train.rec").is_file() and (root / "train.idx").is_file():
            from kdface.tasks.recognition.recordio import RecordIOReader

            with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
                for key in reader.image_keys:
                    try:
                        label, data = reader.read(key)
                    except DataFormatError as error:
                        self.bad_samples.handle(error)
                        continue
                    yield f"rec/{key:09d}", data, None, label, root / "train.rec", key
        elif (root / "train.list").is_file():
            image_dir = root / "image" if (root / "image").is_dir() else root
            identities = casia.read_train_list(root / "train.list", image_dir, bad=self.bad_samples)
            for path, label in identities.items:
                yield f"{path.parent.name}/{path.name}", None, path, label, path, None
        else:
            yield from _folder_items(root / "image" if (root / "image").is_dir() else root)


class KdfaceSynthfacesIdentities(SynthFacesBuilder, _IdentityBuilder):
    """SynthFaces' train identities (``identities/<id>/<k>.jpg``, 112 px ArcFace-like crops), read as
    CASIA-WebFace identity folders; the held-out identities (``identities_test/``) only appear in the
    verification pairs."""

    HOMEPAGE = SYNTHFACES_HOMEPAGE

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(self.synthfaces_tree("identities"))}

    def _items(self, root):
        yield from _folder_items(root)
