"""The benchmark suite (bench/run.py): its report format, on two cheap benchmarks at --quick settings.

No timing is asserted: the numbers depend on the machine; only that they are there, as medians with
their min and max, with the machine, the versions and the command that made them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.run import BENCHMARKS, fmt, select  # noqa: E402


def is_summary(stat) -> bool:
    return (
        isinstance(stat, dict)
        and {"median", "min", "max", "n", "runs"} <= set(stat)
        and stat["n"] == len(stat["runs"]) >= 1
        and stat["min"] <= stat["median"] <= stat["max"]
    )


def test_summary_interleave_and_formatting():
    stat = harness.summary([3.0, 1.0, 2.0, float("nan")], "x")
    assert stat == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "runs": [3.0, 1.0, 2.0], "unit": "x"}
    assert harness.ratio_summary([2.0, 4.0], [1.0, 1.0])["median"] == 3.0
    order = []
    results = harness.interleave(
        {"a": lambda: order.append("a") or 1, "b": lambda: order.append("b") or 2}, 3
    )
    assert order == ["a", "b"] * 3 and results == {"a": [1, 1, 1], "b": [2, 2, 2]}
    assert fmt(stat) == "2 [1–3]" and fmt(None) == "n/a"


def test_every_benchmark_is_registered_with_a_target_and_select_takes_patterns():
    expected = {"matmul_peak", "memory_vs_data", "inference", "kdloss_vs_original", "resnet_vs_torch"}
    methods = ("kdloss_teacher", "kdloss_student", "fer", "igkd", "scn", "fskd_teacher", "fskd_student")
    expected |= {f"train_{m}" for m in methods}
    assert set(BENCHMARKS) == expected
    assert all(b.target and b.measures for b in BENCHMARKS.values())
    assert select(["inference", "train_*", "matmul_peak"])[:2] == ["matmul_peak", "train_kdloss_teacher"]
    assert select(["inference", "train_*"])[-1] == "inference" and len(select(["train_*"])) == 7
    assert select(["train_fskd*"]) == ["train_fskd_teacher", "train_fskd_student"]
    with pytest.raises(SystemExit, match="no benchmark matches"):
        select(["nonsense"])


def test_every_method_has_a_task_a_paper_batch_and_valid_data():
    from bench import methods

    assert set(methods.TASKS) == set(methods.PAPER_BATCH) == set(methods.METHODS)
    assert set(methods.INFERENCE_METHODS) <= set(methods.METHODS)
    for quick in (True, False):  # the recognition tree's SynthFaces config (no TensorFlow, no files)
        methods.identities_config(quick).validate()
    assert methods.data_root_for("fskd_student", {"identities_root": "a", "data_root": "b"}) == "a"
    assert methods.data_root_for("fer", {"identities_root": "a", "data_root": "b"}) == "b"


@pytest.mark.slow
def test_quick_run_writes_the_report(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "matmul_peak", "memory_vs_data",
         "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "estimated duration" in proc.stdout and "## memory_vs_data" in proc.stdout
    [path] = out.glob("*.json")
    assert path.with_suffix(".md").read_text().count("## ") == 2
    report = json.loads(path.read_text())
    assert report["quick"] is True and report["command"].startswith("python bench/run.py --quick --only")
    assert {"cpu_model", "cores", "usable_cores", "ram_gib", "host"} <= set(report["machine"])
    assert report["machine"]["cores"] >= 1 and report["machine"]["ram_gib"] > 0
    assert {"python", "tensorflow", "keras", "torch", "numpy"} <= set(report["versions"])
    assert report["versions"]["tensorflow"].startswith("2.")
    assert list(report["results"]) == ["matmul_peak", "memory_vs_data"]
    [peak] = report["results"]["matmul_peak"]["rows"]
    assert is_summary(peak["flops_per_s"]) and peak["flops_per_s"]["max"] > 0
    assert peak["peak_flops_per_s"] == pytest.approx(peak["flops_per_s"]["max"], rel=1e-3)
    small, large = report["results"]["memory_vs_data"]["rows"]
    assert small["split"] == large["split"] == "file_backed"  # what expression training uses
    assert small["images"] < large["images"] and small["peak_rss_mb"] > 0 and large["peak_rss_mb"] > 0
    assert large["peak_over_smallest"] == pytest.approx(large["peak_rss_mb"] / small["peak_rss_mb"], rel=1e-2)
    assert report["targets"]["memory_vs_data"]
