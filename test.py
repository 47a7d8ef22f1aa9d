#!/usr/bin/env python
"""Evaluate trained models on a dataset's test splits, or predict landmarks or expressions on a photo.

Examples: python test.py --model models/students/synthface_kd.keras --dataset synthface
          python test.py --model models/students/synthface_kd.keras --image photo.jpg
          python test.py --model models/students/synthface_igkd_resnet18_resnet18.keras --dataset synthface
          python test.py --model models/students/raf-db_igkd_resnet50_resnet18.keras --dataset occlusion-raf-db \
              --data-dir datasets/RAF-DB
          python test.py --model models/teachers/synthface_scn_resnet18_noise20.keras --split test --split train
          python test.py --model models/teachers/synthface-ck+_doe_resnet18_fold0.keras   (pairs, fold 0's subjects)

The task (landmarks, expressions, ...) comes from each model's card (<model>.json) and decides the
evaluation. Models with a per-image output (SCN's importance weight) also get it per image.
"""

from kdface.cli import ArgumentParser, HelpFormatter, add_verbose_argument, quiet_tensorflow, run_cli

MODEL_HINT = ("trained models are in models/teachers and models/students (train one with train_teacher.py or "
              "train_student.py; `make demo` trains the demo's)")  # fmt: skip


def main(argv=None):
    quiet_tensorflow(argv)
    from kdface.tasks import get_task, task_names

    tasks = [get_task(name) for name in task_names()]
    datasets = sorted({name for task in tasks for name in task.datasets()})
    parser = ArgumentParser(description=__doc__.splitlines()[1], formatter_class=HelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="a saved .keras model or an exported .tflite (python -m kdface.export); repeat to compare several in one report")  # fmt: skip
    parser.add_argument("--dataset", choices=datasets, metavar="DATASET",
                        help="; ".join(f"{t.name}: {', '.join(t.datasets())}" for t in tasks)
                        + " (default: the model card's dataset)")  # fmt: skip
    parser.add_argument("--split", action="append",
                        help="test split(s) (default: all of the dataset's, e.g. common/challenging/full, or test/occluded)")  # fmt: skip
    parser.add_argument("--data-dir", help="raw dataset folder (default: SynthFaces demo folder)")
    parser.add_argument("--tfds-dir", default="datasets/tfds", help="where prepared TFDS records are kept")
    parser.add_argument(
        "--image", help="a photo: detect faces (OpenCV Haar cascade), predict, write an overlay"
    )
    parser.add_argument(
        "--out", default="runs/test", help="output folder for report.json/report.md and plots"
    )
    parser.add_argument("--on-bad-sample", choices=("error", "skip"), default="error",
                        help="a bad test image or annotation stops with an error naming it, or is skipped, "
                             "counted and listed in --out")  # fmt: skip
    parser.add_argument("--unsafe-load-model", action="store_true",
                        help="allow models that contain Python code (Lambda layers); only for files you trust")  # fmt: skip
    for task in tasks:
        if task.add_test_arguments is not None:
            task.add_test_arguments(parser)
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    run_cli(_run, args)


def _task(model_paths):
    from kdface.errors import RunError
    from kdface.io.cards import model_task
    from kdface.tasks import get_task

    tasks = {model_task(path) for path in model_paths}
    if len(tasks) > 1:
        raise RunError(f"--model files mix tasks {sorted(tasks)}; evaluate models of one task at a time")
    return get_task(tasks.pop())


def _check(args, task) -> None:
    """Every input checked before anything is written: the photo, or each model's dataset (a
    dataset of the model's task), splits and data folder; the output folder."""
    from kdface.errors import ConfigError
    from kdface.io.cards import model_dataset, read_model_card
    from kdface.io.paths import check_can_create
    from kdface.report import read_photo
    from kdface.tasks import get_task, task_names

    if args.image:
        read_photo(args.image, flag="--image")
    else:
        for model in args.model:
            card = read_model_card(model)
            dataset = model_dataset(model, card, args.dataset)
            if dataset not in task.datasets():
                owners = [name for name in task_names() if dataset in get_task(name).datasets()]
                named = f"--dataset {dataset}" if args.dataset else f"the dataset its card names, {dataset},"
                what = (
                    f"belongs to the {owners[0]} task"
                    if owners
                    else f"is not a dataset of the {task.name} task"
                )
                source = (
                    "its model card says so" if card else "it has no model card: taken as a landmark model"
                )
                raise ConfigError(f"{named} {what}, but {model} is a model of the {task.name} task ({source}); "
                                  f"its datasets: {', '.join(task.datasets())}")  # fmt: skip
            if task.check is not None:
                task.check(model, card, dataset, args)
    check_can_create(args.out, "--out")


def _run(args):
    from kdface.io.safe_load import check_model_file

    for model in args.model:
        check_model_file(model, "--model", hint=MODEL_HINT, exported=True)
    task = _task(args.model)
    _check(args, task)
    if args.image:
        for model in args.model:
            task.predict_photo(model, args.image, args.out, args.unsafe_load_model)
    else:
        task.evaluate(args.model, args)


if __name__ == "__main__":
    main()
