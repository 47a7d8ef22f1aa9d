"""Facial landmarks: the 300W / COFW / WFLW readers and SynthFaces' 300W tree, the crop-and-augment
pipeline, NME / failure-rate / AUC evaluation, the model card's crop, and the photo mode.

Predictions are flat interleaved crop-normalised vectors; :func:`landmarks_to_pixels` maps them to
pixels of the crop or of the source image.
"""

from kdface.tasks import Task, register_task
from kdface.tasks.landmarks.points import landmarks_to_pixels


def _datasets() -> list[str]:
    from kdface.tasks.landmarks.sources import datasets

    return datasets()


def _evaluate(model_paths, args):
    from kdface.tasks.landmarks.evaluation import evaluate

    return evaluate(model_paths, args.dataset, args.split, args.data_dir, args.tfds_dir, args.out,
                    args.normaliser, args.on_bad_sample, args.unsafe_load_model)  # fmt: skip


def _predict_photo(model_path, photo, out_dir, unsafe_load_model=False):
    from kdface.tasks.landmarks.evaluation import predict_photo

    return predict_photo(model_path, photo, out_dir, unsafe_load_model)


def _test_arguments(parser) -> None:
    group = parser.add_argument_group("landmark models")
    group.add_argument("--normaliser", choices=("300w", "cofw", "wflw", "wflw_interpupil"),
                       help="NME normaliser (default: the dataset's; wflw_interpupil = the KD-Loss original's)")  # fmt: skip


def _check(model_path, card, dataset, args) -> None:
    from kdface.errors import ConfigError
    from kdface.tasks.landmarks.points import NORMALISERS, NUM_POINTS
    from kdface.tasks.landmarks.sources import check_landmark_inputs

    check_landmark_inputs(dataset, args.split)
    points, have = card.get("num_points"), NUM_POINTS[dataset]
    if points is not None and points != have:
        fitting = sorted(name for name, n in NUM_POINTS.items() if n == points)
        raise ConfigError(f"{model_path} predicts {points} landmarks (its model card) but {dataset} has {have}; "
                          f"test it on {', '.join(fitting) or f'a dataset with {points} landmarks'}")  # fmt: skip
    if args.normaliser and max(NORMALISERS[args.normaliser]) >= have:
        fitting = sorted(n for n, pair in NORMALISERS.items() if max(pair) < have)
        raise ConfigError(f"--normaliser {args.normaliser} uses points {NORMALISERS[args.normaliser]}, but {dataset} "
                          f"has {have} landmarks; for {dataset} choose {', '.join(fitting)}")  # fmt: skip
    check_landmark_inputs(dataset, (), args.data_dir, args.tfds_dir, check_dir=True)


register_task(Task("landmarks", "facial landmarks (NME, failure rate, AUC)", _datasets, _evaluate, _predict_photo,
                   _test_arguments, _check))  # fmt: skip

__all__ = ["landmarks_to_pixels"]
