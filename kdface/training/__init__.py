"""The shared trainer."""

from kdface.training.trainer import (
    RunDirectory,
    RunOptions,
    SaveDeployable,
    add_run_arguments,
    configure_determinism,
    deployable,
    fit,
    open_run,
    prepare_built_model,
    publish,
    run_options_from_args,
    save_model_atomically,
    seed_models,
)

__all__ = [
    "RunDirectory",
    "RunOptions",
    "SaveDeployable",
    "add_run_arguments",
    "configure_determinism",
    "deployable",
    "fit",
    "open_run",
    "prepare_built_model",
    "publish",
    "run_options_from_args",
    "save_model_atomically",
    "seed_models",
]
