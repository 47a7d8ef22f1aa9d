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


register_task(Task("landmarks", "facial landmarks (NME, failure rate, AUC)", _datasets, _evaluate, _predict_photo,
                   _test_arguments))  # fmt: skip

__all__ = ["landmarks_to_pixels"]
