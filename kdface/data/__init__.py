"""Data shared by the tasks: bad-input policy (:mod:`.validation`), sources and streams, SynthFaces
(:mod:`.synthfaces`) and low-resolution synthesis for recognition (:mod:`.low_resolution`: the module,
whose :func:`~kdface.data.low_resolution.low_resolution` function degrades images)."""

from kdface.data import low_resolution

__all__ = ["low_resolution"]
