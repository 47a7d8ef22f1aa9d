"""Facial expressions: the RAF-DB / FERPlus / AffectNet / FED-RO readers, the occlusion lists and
SynthFaces' RAF-DB tree in one class order, the face-crop pipeline (augmentations, erasing, epoch
sampler), the shared training pieces (:mod:`~kdface.tasks.expressions.training`), accuracy /
confusion evaluation, the model card's class names, and the photo mode.
"""

from kdface.tasks import Task, register_task


def _datasets() -> list[str]:
    from kdface.tasks.expressions.sources import expression_datasets

    return expression_datasets()


def _evaluate(model_paths, args):
    from kdface.tasks.expressions.evaluation import evaluate

    return evaluate(model_paths, args.dataset, args.split, args.data_dir, args.tfds_dir, args.out,
                    args.on_bad_sample, args.unsafe_load_model)  # fmt: skip


def _predict_photo(model_path, photo, out_dir, unsafe_load_model=False):
    from kdface.tasks.expressions.evaluation import predict_photo

    return predict_photo(model_path, photo, out_dir, unsafe_load_model)


def _check(model_path, card, dataset, args) -> None:
    from kdface.tasks.expressions.evaluation import check_pair_dataset
    from kdface.tasks.expressions.sources import check_expression_inputs

    check_pair_dataset(model_path, card, dataset)
    check_expression_inputs(dataset, args.split, args.data_dir, args.tfds_dir, check_dir=True)


register_task(Task("expressions", "facial expression classes (accuracy, per-class accuracy, confusion)",
                   _datasets, _evaluate, _predict_photo, check=_check))  # fmt: skip
