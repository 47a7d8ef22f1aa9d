"""The demos' Makefile targets end to end at a tiny size: SynthFaces ``tiny``, one epoch of two steps.

What is checked is the wiring (face-id pretraining feeding the expression demos, the per-seed layout,
the aggregation over seeds with its claims), not accuracy: accuracy is evidence in docs/results.md.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "PY": sys.executable,
    "SYNTH_PRESET": "tiny",
    "FACEID_SYNTH_PRESET": "tiny",
    "TRAIN_FLAGS": "--epochs 1 --steps-per-epoch 2 --batch-size 8",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make"),
]


def _make(target, work, **variables):
    stamp = work / "installed"
    stamp.touch()
    settings = [f"{k}={v}" for k, v in {**TINY, "STAMP": stamp, **variables}.items()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(["make", "-f", ROOT / "Makefile", "-C", work, "-o", stamp, target, *settings],
                            env=env, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, f"make {target}: {result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_demo_scn_from_the_face_pretrained_start_over_two_seeds(tmp_path):
    out = _make("demo-scn", tmp_path, SEEDS="0 1", NOISE_LEVELS="30")
    assert "face-id pretraining" in out
    assert (tmp_path / "models/pretrained/synthface_faceid_resnet18.keras").is_file()
    assert (tmp_path / "runs/pretrain/report.md").is_file()
    for model in ("ce_noise30", "scn_noise30", "ce_noise30_s1", "scn_noise30_s1"):
        assert (tmp_path / f"models/teachers/synthface_{model}.keras").is_file()
    # every network started from the pretrained backbone (recorded in its run's config)
    config = (tmp_path / "runs/demo-scn/seed1/scn_noise30/config.json").read_text()
    assert "models/pretrained/synthface_faceid_resnet18.keras" in config
    seeds = (tmp_path / "runs/demo-scn/report_seeds.md").read_text()
    assert "# Over seeds 0, 1" in seeds
    assert "| scn_noise30 | ce_noise30 | test | accuracy |" in seeds
    assert "| scn_noise30 | chance (0.5) | training labels | importance_auc |" in seeds
    assert "Demo wall time (make demo-scn" in (tmp_path / "runs/demo-scn/report.md").read_text()


def test_demo_igkd_from_scratch_one_seed(tmp_path):
    _make("demo-igkd", tmp_path, FACE_START="none")
    assert not (tmp_path / "models/pretrained").exists()  # FACE_START=none skips the pretraining
    report = (tmp_path / "runs/demo-igkd/report.md").read_text()
    assert "synthface_igkd" in report and "occluded" in report
    assert not (tmp_path / "runs/demo-igkd/report_seeds.md").exists()  # one seed: nothing to aggregate


def test_demo_doe_one_seed(tmp_path):
    # FACE_START=none: the frozen encoders are random (spelt out as `none`), so no pretraining runs
    _make("demo-doe", tmp_path, FACE_START="none", DOE_FLAGS="--fold 0 --image-size 32")
    assert not (tmp_path / "models/pretrained").exists()
    for model in ("doe", "doe_target_only", "ddoe_step1", "ddoe_step2"):
        assert (tmp_path / f"models/teachers/synthface_{model}.keras").is_file()
    config = (tmp_path / "runs/demo-doe/ddoe_step2/config.json").read_text()
    assert "models/teachers/synthface_ddoe_step1.keras" in config  # step 2 took step 1's model
    report = (tmp_path / "runs/demo-doe/report.md").read_text()
    for model in ("doe", "doe_target_only", "ddoe_step1", "ddoe_step2"):
        assert f"synthface_{model} " in report
    assert "test-fold0" in report and "Demo wall time (make demo-doe" in report


def test_demo_vitse_one_seed(tmp_path):
    _make("demo-vitse", tmp_path, VITSE_FLAGS="--image-size 16")
    report = (tmp_path / "runs/demo-vitse/report.md").read_text()
    assert "synthface_vit_se " in report and "synthface_vit_no_se " in report
