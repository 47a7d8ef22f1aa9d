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
        ensure_synthfaces(self._root, self._preset)
        return self._root / tree


def ensure_synthfaces(root: Path, preset: str) -> None:
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
