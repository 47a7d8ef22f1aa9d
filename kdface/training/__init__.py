"""The shared trainer."""

from kdface.training.trainer import SaveDeployable, deployable, fit, save_model_atomically, write_config

__all__ = ["SaveDeployable", "deployable", "fit", "save_model_atomically", "write_config"]
