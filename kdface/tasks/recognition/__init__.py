"""Face recognition: identity training sets (CASIA-WebFace RecordIO / folders / train.list, SynthFaces
identities), verification pair files (insightface ``.bin``), TinyFace folders, low-resolution synthesis,
the shared training pieces (:mod:`~kdface.tasks.recognition.training`: margin-head model, low-resolution
distiller, embedding model), and verification / identification evaluation.
"""

from kdface.tasks import Task, register_task

EVALUATION_DATASETS = ("synthface", "lfw", "agedb-30", "cfp-fp", "tinyface")


def _datasets() -> list[str]:
    from kdface.tasks.recognition.sources import identity_datasets

    return sorted({*EVALUATION_DATASETS, *identity_datasets()})


def _evaluate(model_paths, args):
    from kdface.tasks.recognition.evaluation import evaluate

    return evaluate(model_paths, args)


def _add_test_arguments(parser) -> None:
    group = parser.add_argument_group("recognition (verification / identification)")
    group.add_argument("--down-size", type=int, action="append",
                       help="test resolution(s) in pixels, repeatable (default: the model's training sizes, "
                            "e.g. 112 56 28 14 for a multi-resolution model)")  # fmt: skip
    group.add_argument(
        "--cross-resolution",
        action="store_true",
        help="degrade only the right image of each pair (the left stays at full size)",
    )


def _check(model_path, card, dataset, args) -> None:
    from kdface.errors import ConfigError

    if dataset in ("lfw", "agedb-30", "cfp-fp", "tinyface") and args.data_dir is None:
        raise ConfigError(f"--dataset {dataset} needs --data-dir (the folder holding its files); "
                          "--dataset synthface is generated here")  # fmt: skip
    for size in getattr(args, "down_size", None) or ():
        if size < 1:
            raise ConfigError(f"--down-size {size}: a side in pixels")


register_task(Task("recognition", "face verification (10-fold accuracy at each resolution, TAR@FAR) and "
                   "identification (TinyFace rank-k)", _datasets, _evaluate, None, _add_test_arguments, _check))  # fmt: skip
