#!/usr/bin/env python
"""Evaluate trained models on a dataset's test splits, or predict landmarks or expressions on a photo.

Examples: python test.py --model models/students/synthface_kd.keras --dataset synthface
          python test.py --model models/students/synthface_kd.keras --image photo.jpg
          python test.py --model models/students/synthface_igkd_resnet18_resnet18.keras --dataset synthface
          python test.py --model models/students/raf-db_igkd_resnet50_resnet18.keras --dataset occlusion-raf-db \
              --data-dir datasets/RAF-DB
          python test.py --model models/teachers/synthface_scn_resnet18_noise20.keras --split test --split train

The task (landmarks or expressions) comes from each model's card (<model>.json). For SCN models the
per-image predictions also hold each image's importance weight (--split train: the training set's).
"""

import argparse

from kdface.cli import HelpFormatter, quiet_tensorflow, run_cli


def main(argv=None):
    quiet_tensorflow()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=HelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="a saved .keras model; repeat to compare several in one report")  # fmt: skip
    parser.add_argument(
        "--dataset",
        help="landmarks: synthface, 300w, cofw, wflw; expressions: synthface, raf-db, occlusion-raf-db, "
        "ferplus, occlusion-ferplus, affectnet, occlusion-affectnet, fed-ro "
        "(default: the model card's dataset)",
    )
    parser.add_argument("--split", action="append",
                        help="test split(s) (default: all of the dataset's, e.g. common/challenging/full, or test/occluded)")  # fmt: skip
    parser.add_argument("--data-dir", help="raw dataset folder (default: SynthFaces demo folder)")
    parser.add_argument("--tfds-dir", default="datasets/tfds", help="where prepared TFDS records are kept")
    parser.add_argument("--normaliser", choices=("300w", "cofw", "wflw", "wflw_interpupil"),
                        help="NME normaliser (default: the dataset's; wflw_interpupil = the KD-Loss original's)")  # fmt: skip
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
    args = parser.parse_args(argv)
    run_cli(_run, args)


def _task(model_paths) -> str:
    from kdface.tasks.landmarks.evaluation import read_model_card

    tasks = {read_model_card(path).get("task", "landmarks") for path in model_paths}
    if len(tasks) > 1:
        raise SystemExit(
            f"--model files mix tasks {sorted(tasks)}; evaluate landmark and expression models separately"
        )
    return tasks.pop()


def _run(args):
    from kdface.tasks.landmarks import evaluation

    if _task(args.model) == "expressions":
        from kdface.tasks.expressions import evaluation as expression_evaluation

        if args.image:
            for model in args.model:
                expression_evaluation.predict_photo(model, args.image, args.out, args.unsafe_load_model)
        else:
            expression_evaluation.evaluate(args.model, args.dataset, args.split, args.data_dir, args.tfds_dir,
                                           args.out, args.on_bad_sample, args.unsafe_load_model)  # fmt: skip
        return
    if args.image:
        for model in args.model:
            evaluation.predict_photo(model, args.image, args.out, args.unsafe_load_model)
    else:
        evaluation.evaluate(args.model, args.dataset, args.split, args.data_dir, args.tfds_dir, args.out,
                            args.normaliser, args.on_bad_sample, args.unsafe_load_model)  # fmt: skip


if __name__ == "__main__":
    main()
