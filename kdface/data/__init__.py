"""Data shared by the tasks: bad-input policy (:mod:`.validation`), sources and streams, SynthFaces
(:mod:`.synthfaces`) and low-resolution synthesis for recognition (:mod:`.resolution`), whose
:func:`low_resolution` is public here: ``kdface.data.low_resolution(images, 14)``."""

from kdface.data.resolution import degrade_pair, draw_down_sizes, low_resolution, resolution_ladder

__all__ = ["degrade_pair", "draw_down_sizes", "low_resolution", "resolution_ladder"]
