"""What the TFDS builders of every task share: the bad-sample policy they record into, and
SynthFaces generation on first use (its builders are generated datasets over the real readers).

Preparation always records bad samples (``BadSamples("skip")``, see :mod:`kdface.data.sources`);
loading a split under ``--on-bad-sample error`` raises the first one recorded for it.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from kdface.data.validation import BadSamples

SYNTHFACES_HOMEPAGE = "https://github.com/kdface/kdface (kdface.data.synthfaces)"


class RecordingBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A builder that validates every sample and records the bad ones in ``self.bad_samples``."""

    def __init__(self, *, on_bad_sample: str = "skip", **kwargs):
        self.bad_samples = BadSamples(on_bad_sample)
        super().__init__(**kwargs)


class SynthFacesBuilder(RecordingBuilder, skip_registration=True):
    """A generated builder over a SynthFaces folder ``root``: ``preset`` is generated there first
    unless a tree of the current generator version is there."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = None

    def __init__(self, *, root=None, preset: str = "demo", **kwargs):
        self._root = Path(root) if root is not None else None
        self._preset = preset
        super().__init__(**kwargs)

    def synthfaces_tree(self, tree: str) -> Path:
        if self._root is None:
            raise ValueError(f"{type(self).__name__} needs root=<SynthFaces folder> to prepare")
        ensure_synthfaces(self._root, self._preset, tree)
        return self._root / tree


def ensure_synthfaces(root: Path, preset: str, tree: str | None = None) -> None:
    """Generate SynthFaces under ``root`` unless a tree of this generator version is there. A tree of an
    older version (no occlusion list yet) is regenerated with the config it records.

    ``tree="ckplus"``: the CK+ tree is needed; a tree whose config has none gets the ``preset``'s added
    (in a tree of this version, only ``ckplus/`` is written; the other trees keep their files).
    """
    import dataclasses
    import json

    from kdface.data import synthfaces
    from kdface.errors import ConfigError

    marker = root / "synthfaces.json"
    config = synthfaces.SynthFacesConfig.preset(preset)
    if tree == synthfaces.CKPLUS_DIR and not config.ckplus_subjects:
        raise ConfigError(
            f"the SynthFaces preset {preset!r} has no CK+ tree (ckplus_subjects=0); use demo, tiny or full"
        )
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
        recorded = synthfaces.SynthFacesConfig.from_dict(info.get("config") or {})
        if tree == synthfaces.CKPLUS_DIR and not recorded.ckplus_subjects:
            ckplus_fields = {name: getattr(config, name) for name in synthfaces.CKPLUS_FIELDS}
            recorded = dataclasses.replace(recorded, **ckplus_fields)
        elif info.get("generator_version") == synthfaces.GENERATOR_VERSION:
            return
        config = recorded
    synthfaces.generate(root, config)
