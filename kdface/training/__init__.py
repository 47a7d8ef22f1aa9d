"""The shared trainer."""

from kdface.training.run import TrainingData, train_run
from kdface.training.trainer import (
    EpochCounter,
    RunDirectory,
    RunOptions,
    SaveDeployable,
    add_run_arguments,
    configure_determinism,
    deployable,
    epoch_variable,
    fit,
    open_run,
    prepare_built_model,
    publish,
    run_options_from_args,
    save_model_atomically,
    seed_models,
)

__all__ = [
    "EpochCounter",
    "RunDirectory",
    "RunOptions",
    "SaveDeployable",
    "add_run_arguments",
    "configure_determinism",
    "deployable",
    "epoch_variable",
    "fit",
    "open_run",
    "prepare_built_model",
    "publish",
    "run_options_from_args",
    "save_model_atomically",
    "seed_models",
    "TrainingData",
    "train_run",
]
