"""Every mistake a user can make on a kdface command line (a path, a name, a choice, a value, a model of
the wrong task for the dataset) ends in one ``error:`` line that says what was wrong and what would
be right, exit status 2, no traceback, and nothing written (docs/reliability.md, "Mistakes on the
command line").

Most cases run in-process through the CLIs' ``main`` functions (a CLI subprocess costs seconds of
TensorFlow import); a few run the real scripts end to end, concurrently. The run-directory takeover
trains one step and is marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdface.cli import training_main
from kdface.convert.__main__ import main as convert_main
from kdface.data import synthfaces
from kdface.data.synthfaces.cli import main as synthfaces_main

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("kdface_test_py", ROOT / "test.py")
test_py = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_py)

CLIS = {
    "test.py": test_py.main,
    "train_teacher.py": lambda argv: training_main("teacher", "train a teacher", argv),
    "train_student.py": lambda argv: training_main("student", "train a student", argv),
    "convert": convert_main,
    "synthfaces": synthfaces_main,
}


def _tiny_model(path: Path, width: int, card: dict | None) -> None:
    import keras

    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.Dense(width)(keras.layers.Flatten()(inputs))).save(path)
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A working folder holding the inputs the mistakes name: text files posing as a photo and a
    model, tiny landmark and expression models with cards, an empty folder, a foreign folder."""
    work = tmp_path_factory.mktemp("mistakes")
    (work / "notes.txt").write_text("shopping list\n")
    (work / "notes.jpg").write_text("shopping list\n")  # renamed, still not an image
    (work / "fake.keras").write_text("not a zip\n")
    (work / "empty").mkdir()
    (work / "foreign" / "300w").mkdir(parents=True)  # someone else's folder (synthfaces --out)
    _tiny_model(work / "lm.keras", 136, {"task": "landmarks", "dataset": "synthface", "num_points": 68})
    _tiny_model(work / "ex.keras", 7, {"task": "expressions", "dataset": "synthface"})
    _tiny_model(work / "lm29.keras", 58, {"task": "landmarks", "dataset": "cofw", "num_points": 29})
    _tiny_model(work / "pair.keras", 8, {"task": "expressions", "dataset": "synthface-ck+", "input": "pair"})
    _tiny_model(work / "nocard.keras", 136, None)
    _tiny_model(work / "badcard.keras", 136, None)
    (work / "badcard.json").write_text("{not json")
    return work


def _tree(folder: Path) -> set:
    return {(str(p.relative_to(folder)), p.is_dir()) for p in folder.rglob("*")}


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


# (CLI, arguments, what the error line must contain). Relative paths are in the `work` folder.
MISTAKES = [
    # --- flags
    ("test.py", [], ["the following arguments are required: --model"]),
    ("test.py", ["--model", "lm.keras", "--normalizer", "300w"],
     ["unrecognized arguments: --normalizer 300w", "did you mean --normaliser?"]),
    ("train_teacher.py", [], ["the following arguments are required: --teacher"]),
    ("train_teacher.py", ["--method", "fer", "--lerning-rate", "0.1", "--bach-size=8"],
     ["--lerning-rate 0.1 --bach-size=8", "did you mean --learning-rate for --lerning-rate, --batch-size for --bach-size?"]),
    ("convert", ["resnet", "--depth", "18", "--checkpoint", "notes.txt", "--out", "r.npz", "--strides-on", "1x1"],
     ["did you mean --stride-on?"]),
    # --- test.py: models
    ("test.py", ["--model", "models/students/does_not_exist.keras"],
     ["--model models/students/does_not_exist.keras: no such model file", "models/teachers and models/students"]),
    ("test.py", ["--model", "empty"], ["--model empty is a folder, not a model file"]),
    ("test.py", ["--model", "notes.txt"], ["--model notes.txt", "a Keras model file (.keras"]),
    ("test.py", ["--model", "fake.keras"], ["--model fake.keras", "not a Keras v3 model archive"]),
    ("test.py", ["--model", "nocard.keras"], ["nocard.keras has no model card naming its dataset; pass --dataset"]),
    ("test.py", ["--model", "badcard.keras"], ["badcard.json: expected a model card"]),
    ("test.py", ["--model", "lm.keras", "--model", "ex.keras"], ["mix tasks"]),
    # --- test.py: names and the model's fit to the dataset
    ("test.py", ["--model", "lm.keras", "--dataset", "synthfaces"],
     ["--dataset", "'synthfaces'", "did you mean 'synthface'?"]),
    ("test.py", ["--model", "lm.keras", "--dataset", "raf-db"],
     ["--dataset raf-db belongs to the expressions task", "lm.keras is a model of the landmarks task", "300w"]),
    ("test.py", ["--model", "ex.keras", "--dataset", "300w"],
     ["--dataset 300w belongs to the landmarks task", "ex.keras is a model of the expressions task", "raf-db"]),
    ("test.py", ["--model", "nocard.keras", "--dataset", "ferplus"], ["no model card: taken as a landmark model"]),
    ("test.py", ["--model", "lm.keras", "--dataset", "cofw"], ["predicts 68 landmarks", "cofw has 29", "300w"]),
    ("test.py", ["--model", "lm.keras", "--split", "commn"], ["unknown split 'commn'", "did you mean 'common'?"]),
    ("test.py", ["--model", "ex.keras", "--split", "tset"], ["unknown split 'tset'", "did you mean 'test'?"]),
    ("test.py", ["--model", "lm.keras", "--normaliser", "wflw"], ["--normaliser wflw", "synthface has 68", "300w"]),
    ("test.py", ["--model", "lm.keras", "--normaliser", "300W"], ["--normaliser", "did you mean '300w'?"]),
    ("test.py", ["--model", "lm.keras", "--on-bad-sample", "skp"], ["--on-bad-sample", "did you mean 'skip'?"]),
    # --- test.py: data folders, photo, output
    ("test.py", ["--model", "lm.keras", "--dataset", "300w"],
     ["--data-dir is required for '300w'", "ibug.doc.ic.ac.uk", "README.md"]),
    ("test.py", ["--model", "lm.keras", "--dataset", "300w", "--data-dir", "datasets/300W"],
     ["--data-dir datasets/300W: no such folder", "300w expects", "helen/trainset"]),
    ("test.py", ["--model", "ex.keras", "--dataset", "raf-db", "--data-dir", "empty"],
     ["--data-dir empty is empty", "raf-db expects", "EmoLabel"]),
    ("test.py", ["--model", "lm.keras", "--data-dir", "notes.txt"], ["cannot write to --data-dir notes.txt"]),
    ("test.py", ["--model", "lm.keras", "--tfds-dir", "notes.txt"], ["cannot write to --tfds-dir notes.txt"]),
    ("test.py", ["--model", "lm.keras", "--out", "notes.txt/report"],
     ["cannot write to --out notes.txt/report", "notes.txt is a file"]),
    ("test.py", ["--model", "lm.keras", "--image", "holiday.jpg"], ["--image holiday.jpg: no such photo"]),
    ("test.py", ["--model", "lm.keras", "--image", "empty"], ["--image empty is a folder, not a photo"]),
    ("test.py", ["--model", "ex.keras", "--image", "notes.txt"], ["--image notes.txt", "a photo OpenCV can read"]),
    ("test.py", ["--model", "lm.keras", "--image", "notes.jpg"], ["--image notes.jpg", "JPEG, PNG"]),
    # --- training: names and choices
    ("train_teacher.py", ["--method", "fre"], ["--method", "did you mean 'fer'?"]),
    ("train_teacher.py", ["--teacher", "tuogh"], ["--teacher", "did you mean 'tough'?"]),
    ("train_teacher.py", ["--teacher", "tough", "--dataset", "300W"], ["--dataset", "did you mean '300w'?"]),
    ("train_teacher.py", ["--teacher", "tough", "--preset", "dmeo"], ["--preset", "did you mean 'demo'?"]),
    ("train_teacher.py", ["--teacher", "tough", "--teacher-backbone", "resnet19"],
     ["--teacher-backbone", "did you mean 'resnet18'?"]),
    ("train_teacher.py", ["--teacher", "tough", "--lr-schedule", "cosin"], ["did you mean 'cosine'?"]),
    ("train_teacher.py", ["--teacher", "tough", "--strategy", "mirored"], ["did you mean 'mirrored'?"]),
    ("train_teacher.py", ["--method", "fer", "--backbone", "resnet19"], ["--backbone", "did you mean 'resnet18'?"]),
    ("train_teacher.py", ["--method", "fer", "--augment-style", "standrd"],
     ["--augment-style 'standrd'", "did you mean 'standard'?"]),
    ("train_teacher.py", ["--method", "fer", "--train-split", "trian"],
     ["unknown split 'trian'", "did you mean 'train'?"]),
    ("train_teacher.py", ["--method", "scn", "--relabel-scope", "lw"], ["--relabel-scope", "did you mean 'low'?"]),
    ("train_teacher.py", ["--method", "igkd"], ["--method igkd has no teacher to train", "train_student.py"]),
    ("train_student.py", ["--dataset", "synthfce"], ["--dataset", "'synthfce'", "did you mean 'synthface'?"]),
    ("train_student.py", ["--method", "igdk"], ["--method", "did you mean 'igkd'?"]),
    ("train_student.py", ["--method", "scn"], ["--method scn has no student to train"]),
    ("train_teacher.py", ["--method", "vit-se", "--se-variant", "b2"], ["--se-variant", "choose from A, B"]),
    ("train_teacher.py", ["--method", "vit-se", "--backbone", "resnet18"], ["--backbone", "vit_b16, vit_tiny"]),
    ("train_student.py", ["--method", "vit-se"], ["--method vit-se has no student", "train_teacher.py --method vit-se"]),
    # --- training: paths
    ("train_teacher.py", ["--teacher", "tough", "--dataset", "300w"], ["--data-dir is required for '300w'"]),
    ("train_teacher.py", ["--teacher", "tough", "--dataset", "wflw", "--data-dir", "datasets/WFLW"],
     ["--data-dir datasets/WFLW: no such folder", "wflw expects", "WFLW_annotations"]),
    ("train_teacher.py", ["--teacher", "tough", "--dataset", "cofw", "--data-dir", "empty"],
     ["--data-dir empty is empty", "COFW_train_color.mat"]),
    ("train_teacher.py", ["--method", "fer", "--dataset", "raf-db"], ["--data-dir is required for 'raf-db'"]),
    ("train_teacher.py", ["--method", "fer", "--data-dir", "notes.txt"], ["cannot write to --data-dir notes.txt"]),
    ("train_teacher.py", ["--method", "fer", "--tfds-dir", "notes.txt"], ["cannot write to --tfds-dir notes.txt"]),
    ("train_teacher.py", ["--teacher", "tough", "--weights", "resnet18_msceleb.npz"],
     ["--backbone-weights resnet18_msceleb.npz: no such file", "python -m kdface.convert"]),
    ("train_teacher.py", ["--teacher", "tough", "--weights", "notes.txt"], ["--backbone-weights notes.txt", "a weights file"]),
    ("train_teacher.py", ["--teacher", "tough", "--teacher-backbone", "resnet18", "--weights", "imagenet"],
     ["--backbone-weights imagenet is only available for the keras.applications backbones", "resnet18"]),
    ("train_teacher.py", ["--method", "fer", "--weights", "ferplus.npz"], ["--backbone-weights ferplus.npz: no such file"]),
    ("train_teacher.py", ["--method", "scn", "--weights", "ijba_res18_naive.npz"],
     ["--backbone-weights ijba_res18_naive.npz: no such file"]),
    ("train_teacher.py", ["--method", "vit-se", "--backbone-weights", "vit_b16_in21k.npz"],
     ["--backbone-weights vit_b16_in21k.npz: no such file"]),
    ("train_student.py", [], ["--tough models/teachers/synthface_tough.keras: no such model file",
                              "train_teacher.py --teacher tough"]),
    ("train_student.py", ["--tough", "notes.txt"], ["--tough notes.txt", "a Keras model file"]),
    ("train_student.py", ["--tough", "lm.keras", "--tolerant", "fake.keras"],
     ["--tolerant fake.keras", "not a Keras v3 model archive"]),
    ("train_student.py", ["--tough", "ex.keras", "--tolerant", "lm.keras"],
     ["--tough ex.keras is a model of the expressions task", "landmark teachers"]),
    ("train_student.py", ["--tough", "lm.keras", "--tolerant", "lm29.keras"],
     ["--tolerant lm29.keras predicts 29 landmarks", "synthface has 68"]),
    ("train_student.py", ["--method", "igkd", "--t-checkpoint", "resnet50_teacher.npz"],
     ["--t-checkpoint resnet50_teacher.npz: no such file"]),
    ("train_student.py", ["--method", "igkd", "--s-checkpoint", "empty"], ["--s-checkpoint empty is a folder"]),
    ("train_teacher.py", ["--method", "fer", "--out", "fer.h5"], ["--out fer.h5", "name it fer.keras"]),
    ("train_teacher.py", ["--method", "fer", "--out", "empty"], ["--out empty is a folder"]),
    ("train_teacher.py", ["--method", "fer", "--out", "notes.txt/fer.keras"],
     ["cannot write to --out notes.txt/fer.keras", "notes.txt is a file"]),
    ("train_teacher.py", ["--method", "fer", "--run-dir", "notes.txt"], ["cannot write to --run-dir notes.txt"]),
    # --- training: values
    ("train_teacher.py", ["--method", "fer", "--epochs", "0"], ["epochs must be at least 1, got 0"]),
    ("train_teacher.py", ["--method", "fer", "--learning-rate", "-0.1"], ["learning_rate must be positive"]),
    ("train_teacher.py", ["--method", "fer", "--val-fraction", "1"], ["val_fraction must be in [0, 1)"]),
    ("train_teacher.py", ["--method", "fer", "--label-noise", "1.5"], ["label_noise must be in [0, 1)"]),
    ("train_teacher.py", ["--method", "fer", "--num-classes", "9"], ["--num-classes 9", "7 or 8"]),
    ("train_teacher.py", ["--method", "fer", "--batch-size", "many"], ["--batch-size", "invalid int value"]),
    ("train_teacher.py", ["--method", "fer", "--resume", "--restart"], ["--resume and --restart contradict"]),
    ("train_teacher.py", ["--method", "fer", "--backup-every", "-1"], ["--backup-every must be >= 0"]),
    ("train_teacher.py", ["--method", "scn", "--beta", "2"], ["beta must be in (0, 1)"]),
    ("train_teacher.py", ["--method", "vit-se", "--image-size", "60"],
     ["--image-size 60", "vit_tiny needs a multiple of its patch size 8"]),
    ("train_teacher.py", ["--method", "vit-se", "--preset", "paper", "--image-size", "200"],
     ["--image-size 200", "vit_b16 needs a multiple of its patch size 16"]),
    ("train_teacher.py", ["--method", "vit-se", "--lr-step-epochs", "0"], ["lr_step_epochs must be at least 1"]),
    # --- pair methods (DoE, Disentangled DoE) and their frozen encoders
    ("train_teacher.py", ["--method", "doe"], ["--backbone-weights is needed: DoE's encoder is frozen", "imagenet"]),
    ("train_teacher.py", ["--method", "doe", "--dataset", "raf-db"],
     ["--dataset", "invalid choice 'raf-db'", "ck+, synthface-ck+"]),
    ("train_teacher.py", ["--method", "doe", "--fold", "10", "--backbone-weights", "none"],
     ["--fold 10: the folds are 0..9"]),
    ("train_teacher.py", ["--method", "doe", "--backbone-weights", "mobilenet.keras"],
     ["--backbone-weights mobilenet.keras: no such file"]),
    ("train_teacher.py", ["--method", "ddoe-step1"], ["--identity-weights is needed", "python -m kdface.convert resnet"]),
    ("train_teacher.py", ["--method", "ddoe-step1", "--dataset", "raf-db", "--fold", "2", "--identity-weights", "none"],
     ["--fold 2: raf-db has no folds"]),
    ("train_teacher.py", ["--method", "ddoe-step1", "--dataset", "raf-db", "--neutral-class", "--identity-weights", "none"],
     ["--neutral-class: raf-db has no neutral pairs", "ck+, synthface-ck+"]),
    ("train_teacher.py", ["--method", "ddoe-step2"], ["the following arguments are required: --step1"]),
    ("train_teacher.py", ["--method", "ddoe-step2", "--step1", "step1.keras"],
     ["--step1 step1.keras: no such model file", "--method ddoe-step1"]),
    ("train_teacher.py", ["--method", "ddoe-step2", "--step1", "lm.keras", "--image-size", "16"],
     ["--step1 lm.keras is a model of the landmarks task"]),
    ("train_teacher.py", ["--method", "ddoe-step2", "--step1", "ex.keras"],
     ["--step1 ex.keras has no model card naming its image size"]),
    ("train_student.py", ["--method", "doe"], ["--method doe has no student to train", "train_teacher.py --method doe"]),
    ("test.py", ["--model", "pair.keras", "--dataset", "raf-db"],
     ["pair.keras takes neutral/target pairs of one person", "ck+, synthface-ck+"]),
    # --- python -m kdface.convert
    ("convert", ["resnt"], ["did you mean 'resnet'?"]),
    ("convert", ["resnet", "--depth", "19", "--checkpoint", "notes.txt", "--out", "r.npz"], ["--depth", "18, 50"]),
    ("convert", ["resnet", "--depth", "18", "--checkpoint", "resnet18.pth", "--out", "r.npz"],
     ["--checkpoint resnet18.pth: no such file"]),
    ("convert", ["resnet", "--depth", "18", "--checkpoint", "notes.txt", "--out", "r.pt"],
     ["--out must end in .npz or .weights.h5, got r.pt"]),
    ("convert", ["resnet", "--depth", "18", "--checkpoint", "notes.txt", "--out", "notes.txt/r.npz"],
     ["cannot write to --out notes.txt/r.npz"]),
    ("convert", ["resnet", "--depth", "18", "--checkpoint", "notes.txt", "--out", "r.npz", "--format", "trch"],
     ["--format", "did you mean 'torch'?"]),
    ("convert", ["resnet", "--depth", "18", "--stride-on", "1x1", "--checkpoint", "notes.txt", "--out", "r.npz"],
     ["--stride-on 1x1 applies only to --depth 50"]),
    ("convert", ["iresnet", "--depth", "18", "--checkpoint", "notes.txt", "--out", "r.weights.h5", "--drop-fc"],
     ["--drop-fc writes an .npz"]),
    # --- python -m kdface.data.synthfaces
    ("synthfaces", ["--preset", "tny"], ["--preset", "did you mean 'tiny'?"]),
    ("synthfaces", ["--out", "notes.txt"], ["cannot write to --out notes.txt"]),
    ("synthfaces", ["--out", "foreign"], ["foreign already holds ['300w']", "choose another --out"]),
    ("synthfaces", ["--out", "sf", "--image-size", "0"], ["image_size must be at least 8 pixels"]),
    ("synthfaces", ["--out", "sf", "--num-identities", "1"], ["num_identities must be >= 2"]),
    ("synthfaces", ["--out", "sf", "--workers", "0"], ["--workers must be at least 1"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cli", "argv", "expected"), MISTAKES, ids=[f"{c} {' '.join(a)}" for c, a, _ in MISTAKES]
)
def test_mistake_is_one_error_line_and_nothing_written(work, monkeypatch, capsys, cli, argv, expected):
    monkeypatch.chdir(work)
    before = _tree(work)
    with pytest.raises(SystemExit) as info:
        CLIS[cli](argv)
    assert info.value.code == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith("error: "), line
    for text in expected:
        assert text in line, f"{text!r} not in {line!r}"
    assert _tree(work) == before, "something was written"


# --- the real scripts, end to end (each costs a TensorFlow import: they run concurrently) ------------

README_EXPRESSION_MODEL = "models/students/synthface_igkd_resnet18_resnet18.keras"
END_TO_END = {
    "missing model (README command after `make demo`)": (
        ["test.py", "--dataset", "synthface", "--model", README_EXPRESSION_MODEL],
        [f"--model {README_EXPRESSION_MODEL}: no such model file"],
    ),
    "not a photo": (["test.py", "--model", "lm.keras", "--image", "notes.jpg"], ["--image notes.jpg"]),
    "misspelt dataset (test.py)": (
        ["test.py", "--model", "lm.keras", "--dataset", "synthfaces"],
        ["did you mean 'synthface'?"],
    ),
    "misspelt dataset (training)": (
        ["train_student.py", "--dataset", "synthfce"],
        ["did you mean 'synthface'?"],
    ),
    "missing teacher": (
        ["train_student.py", "--tough", "tough.keras", "--tolerant", "lm.keras"],
        ["--tough tough.keras: no such model file"],
    ),
    "missing checkpoint (convert)": (
        ["-m", "kdface.convert", "resnet", "--depth", "18", "--checkpoint", "r18.pth", "--out", "r18.npz"],
        ["--checkpoint r18.pth: no such file"],
    ),
}


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "TF_CPP_MIN_LOG_LEVEL": "2"}  # fmt: skip


@pytest.fixture(scope="module")
def end_to_end(work):
    before = _tree(work)
    processes = {
        name: subprocess.Popen(
            [sys.executable, *(str(ROOT / a) if a.endswith(".py") else a for a in argv)],
            cwd=work,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name, (argv, _) in END_TO_END.items()
    }
    results = {name: (p.wait(timeout=300), *p.communicate()) for name, p in processes.items()}
    return results, before, _tree(work)


@pytest.mark.parametrize("name", list(END_TO_END))
def test_real_cli_prints_one_error_line_no_traceback(end_to_end, name):
    results, before, after = end_to_end
    code, stdout, stderr = results[name]
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    line = _error_line(stderr)
    assert line.startswith("error: "), stderr[-3000:]
    for text in END_TO_END[name][1]:
        assert text in line, line
    assert after == before, "something was written"


@pytest.mark.slow  # trains one step (about 40 s on 2 cores)
def test_a_run_stopped_by_a_bad_input_is_taken_over_by_the_corrected_command(tmp_path):
    """A mistake found only once the data is read (the wrong folder for 300w) leaves a run directory
    that never trained a step: the corrected command with the same --run-dir runs, without
    --resume or --restart."""
    data = tmp_path / "synthfaces"
    synthfaces.generate(data, synthfaces.SynthFacesConfig.tiny())
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "300W.zip.part").write_text("still downloading")
    run_dir, out = tmp_path / "runs" / "tough", tmp_path / "models" / "tough.keras"
    common = ["--teacher", "tough", "--run-dir", run_dir, "--out", out, "--tfds-dir", tmp_path / "tfds",
              "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "1",
              "--val-fraction", "0", "--teacher-backbone", "mobilenet_v2"]  # fmt: skip

    def train(*extra):
        args = [sys.executable, ROOT / "train_teacher.py", *common, *extra]
        return subprocess.run(list(map(str, args)), cwd=tmp_path, env=_env(), capture_output=True, text=True)

    wrong = train("--dataset", "300w", "--data-dir", tmp_path / "downloads")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr, wrong.stderr[-3000:]
    assert _error_line(wrong.stderr).startswith("error: ") and "300W folders" in _error_line(wrong.stderr)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json"] and not out.exists()

    fixed = train("--dataset", "synthface", "--data-dir", data)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "taken over" in fixed.stdout and out.is_file()
    assert json.loads((run_dir / "config.json").read_text())["config"]["dataset"] == "synthface"
