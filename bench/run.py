"""kdface's benchmark suite: speed and memory you can measure, on the machine it runs on.

    python bench/run.py [--quick] [--only NAME ...] [--out bench/results]

writes ``<out>/<date>-<host>.json`` and ``.md`` (the markdown table, also printed): the machine (CPU
model, cores, RAM), the versions (python, tensorflow, keras, torch, numpy), the command, and for every
benchmark its rows, each measured quantity as median with min and max over repeats. Ratios are taken
per repeat between contenders measured in turn (A, B, A, B, ...) in one process. Every measurement
runs in its own subprocess (its peak RSS is its own). ``--quick`` runs the same code at toy settings
(for CI: seconds per benchmark, numbers meaningless); ``--list`` lists the benchmarks. See
bench/README.md for the columns and targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fnmatch
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``kdface`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.harness import JobError  # noqa: E402
from bench.methods import INFERENCE_METHODS, METHODS, data_root_for  # noqa: E402

TRAIN_METHODS = tuple(METHODS)  # kdloss_teacher, kdloss_student, fer, igkd, scn, fskd_teacher, fskd_student


@dataclasses.dataclass
class Settings:
    """How long each measurement runs: the full run is sized for ~20 minutes on 2 quiet cores."""

    quick: bool
    repeats: int
    window_s: float  # seconds of steady training per timed window
    max_steps: int
    sizes: tuple  # "demo" / "paper"
    matmul_n: int
    matmul_repeats: int
    matmul_n_train: int  # the matmul measured beside every train window
    memory_counts: tuple
    memory_max_batches: int | None
    inference_calls: int
    torch_sizes: tuple
    torch_batch: int
    job_timeout_s: float
    speed: dict = dataclasses.field(default_factory=dict)  # kdface's speed options for every TF step

    @classmethod
    def make(cls, quick: bool, speed: dict | None = None) -> Settings:
        speed = speed or {}
        if quick:
            return cls(True, 2, 0.3, 3, ("demo",), 1024, 3, 512, (500, 5000), 40, 3, (96,), 8, 600, speed)
        return cls(False, 3, 2.0, 40, ("demo", "paper"), 4096, 5, 2048, (10_000, 100_000), None, 15, (96, 112), 32,
                   1800, speed)  # fmt: skip


class Suite:
    """The state one ``bench/run.py`` invocation shares between benchmarks."""

    def __init__(self, settings: Settings, work: Path, selected=()):
        self.settings = settings
        self.work = work
        self.selected = tuple(selected)
        self._data = None
        self.results: dict[str, dict] = {}
        # Rows another benchmark's process measured for this one (inference latencies and the KD-Loss
        # original-loop comparison run inside the train processes when both are selected).
        self.folded: dict[str, list] = {}

    def job(self, function: str, **kwargs) -> dict:
        return harness.run_job(function, kwargs, timeout=self.settings.job_timeout_s)

    def data(self) -> dict:
        """The SynthFaces tree and its prepared records (generated once per work folder)."""
        if self._data is None:
            print("  preparing SynthFaces data ...", flush=True)
            self._data = self.job("methods:prepare_data", root=str(self.work / ("quick" if self.settings.quick else "full")),
                                  quick=self.settings.quick)  # fmt: skip
        return self._data


@dataclasses.dataclass
class Benchmark:
    name: str
    measures: str
    target: str
    run: object  # (Suite) -> {"rows": [...]}
    estimate_s: object  # (Settings, selected names) -> seconds on 2 quiet cores
    columns: object  # (row, Suite) -> {column: text}


BENCHMARKS: dict[str, Benchmark] = {}


def register(name, measures, target, estimate_s, columns):
    def wrap(run):
        BENCHMARKS[name] = Benchmark(name, measures, target, run, estimate_s, columns)
        return run

    return wrap


def _safe(run_one):
    """Run one job; a failure becomes a row saying why instead of ending the suite."""
    try:
        return run_one()
    except JobError as exc:
        print(f"    FAILED: {exc}", file=sys.stderr, flush=True)
        return {"error": str(exc)[-2000:]}


# --- formatting -------------------------------------------------------------------------------------


def fmt(stat, digits: int = 3, scale: float = 1.0, pct: bool = False) -> str:
    """``median [min-max]`` of a summary (or a plain number)."""
    if stat is None:
        return "n/a"
    if isinstance(stat, int | float):
        return _num(stat * scale, digits, pct)
    if stat.get("median") is None:
        return "n/a"
    med, lo, hi = (_num(stat[k] * scale, digits, pct) for k in ("median", "min", "max"))
    return med if stat.get("n", 0) < 2 else f"{med} [{lo}–{hi}]"


def _num(value, digits, pct=False) -> str:
    if pct:
        return f"{100 * value:.{max(digits - 2, 0)}f} %"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def verdict(stat, threshold: float, at_most: bool = False) -> str:
    """``yes``/``no``: the median against a ``>= threshold`` target (``<=`` with ``at_most``)."""
    value = stat.get("median") if isinstance(stat, dict) else stat
    if value is None:
        return "n/a"
    return "yes" if (value <= threshold if at_most else value >= threshold) else "no"


# --- 1. the fp32 yardstick ---------------------------------------------------------------------------


@register("matmul_peak", "fp32 matmul FLOP/s (tf.matmul n x n, TF's thread settings), best of N",
          "none: the yardstick for FLOP/s fractions",
          lambda s, selected: 10 if not s.quick else 8,
          lambda r, suite: {"n": str(r["n"]), "GFLOP/s (best per round)": fmt(r["flops_per_s"], scale=1e-9),
                            "peak GFLOP/s": fmt(r["peak_flops_per_s"] * 1e-9),
                            "TF threads (intra, inter)": f"{r['threads']['intra_op_effective']}, {r['threads']['inter_op']}"})  # fmt: skip
def bench_matmul_peak(suite: Suite) -> dict:
    s = suite.settings
    return {"rows": [_safe(lambda: suite.job("peak:matmul_peak", n=s.matmul_n, repeats=s.matmul_repeats))]}


# --- 2. training: kdface step, pipeline, bare fit, FLOPs, RSS ---------------------------------------------

# Seconds per size on 2 quiet cores, full settings (process start, build, tracing, windows, FLOPs), from
# a full run on the 2-core development machine scaled for the other load it carried.
TRAIN_ESTIMATE_S = {
    "kdloss_teacher": {"demo": 35, "paper": 110},
    "kdloss_student": {"demo": 40, "paper": 60},
    "fer": {"demo": 25, "paper": 45},
    "igkd": {"demo": 47, "paper": 170},
    "scn": {"demo": 32, "paper": 65},
    "fskd_teacher": {"demo": 35, "paper": 100},  # measured at load average ~1.5: 134 s for both sizes
    "fskd_student": {"demo": 45, "paper": 120},  # 165 s
}
FLOPS_TARGET = {"resnet": 0.5, "mobilenet": 0.2}  # of the measured fp32 matmul peak, training at batch 32


def _train_columns(row, suite):
    target = FLOPS_TARGET.get(row["family"])
    fraction = row["fraction_of_peak"]
    return {
        "size": f"{row['size']} {row['image_size']} px, b{row['batch_size']}",
        "kdface img/s": fmt(row["kdface_images_per_s"]),
        "bare fit img/s": fmt(row["bare_images_per_s"]),
        "kdface / bare (>= 0.9)": f"{fmt(row['kdface_over_bare'])} {verdict(row['kdface_over_bare'], 0.9)}",
        "epoch ratio est.": fmt(row.get("epoch_ratio_estimate")),
        "pipeline img/s": fmt(row["pipeline_images_per_s"]),
        "pipeline / step (>= 3)": f"{fmt(row['pipeline_over_step'])} {verdict(row['pipeline_over_step'], 3.0)}",
        "train GFLOP/img": f"{row['flops_per_image']['train_step'] / 1e9:.3g}",
        "matmul GFLOP/s": fmt(row["matmul_flops_per_s"], scale=1e-9),
        "% of matmul peak": f"{fmt(fraction, pct=True)} "
        + (f"(>= {target:.0%}) {verdict(fraction, target)}" if target else "(no target)"),
        "peak RSS MB": f"{row['peak_rss_mb']:.0f}",
        "first fit s": f"{row['first_fit_seconds']:.0f}",
    }


def _train_benchmark(method: str):
    def run(suite: Suite) -> dict:
        s = suite.settings
        data = suite.data()
        # When latencies (or the KD-Loss original-loop comparison) are asked for too, they are measured
        # in the train processes: the model is built and traced there already.
        rows = []
        for size in s.sizes:
            print(f"  {method} at {size} size ...", flush=True)
            calls = (s.inference_calls if "inference" in suite.selected and size == s.sizes[-1]
                     and method in INFERENCE_METHODS else 0)  # fmt: skip
            original = method == "kdloss_student" and "kdloss_vs_original" in suite.selected
            rows.append(_safe(lambda size=size, original=original, calls=calls: suite.job(
                "training:train_step", method=method, size=size, data_root=data_root_for(method, data),
                tfds_dir=data["tfds_dir"], quick=s.quick, window_seconds=s.window_s, repeats=s.repeats,
                max_steps=s.max_steps, matmul_n=s.matmul_n_train, inference_calls=calls,
                original_loop=original, speed=s.speed)))  # fmt: skip
            for key, name in (("inference", "inference"), ("vs_original", "kdloss_vs_original")):
                if key in rows[-1]:
                    suite.folded.setdefault(name, []).append(rows[-1].pop(key))
        return {"rows": rows}

    register(
        f"train_{method}",
        f"{METHODS[method]}: train-step images/s through kdface's fit on its real stream; the input "
        "pipeline alone; a bare Keras fit of the same compiled model on an in-memory batch; FLOPs and "
        "the fraction of the fp32 matmul rate measured beside it; peak RSS",
        "kdface/bare >= 0.9; pipeline/step >= 3; FLOP/s >= 50 % of the matmul peak (ResNet family), "
        ">= 20 % (MobileNetV2); none for EfficientNet-B3",
        lambda s, selected: sum(TRAIN_ESTIMATE_S[method][size] for size in s.sizes) if not s.quick else 35,
        _train_columns,
    )(run)


for _method in TRAIN_METHODS:
    _train_benchmark(_method)


# --- 3. memory against data size ---------------------------------------------------------------------


def _memory_columns(row, suite):
    st = row["rss_mb_stages"]
    return {"images": f"{row['images']:,}", "split": row.get("split", ""), "encoded MB": f"{row['encoded_mb']:.0f}",
            "RSS after import / split / stream / epoch MB": " / ".join(f"{st[k]:.0f}" for k in
                                                                       ("after_import", "after_split", "after_stream", "after_epoch")),
            "peak RSS MB": f"{row['peak_rss_mb']:.0f}", "epoch img/s": f"{row['images_per_s']:.0f}",
            "peak / smallest": fmt(row.get("peak_over_smallest")),
            "within 10 %": verdict(row.get("peak_over_smallest"), 1.1, at_most=True)}  # fmt: skip


@register("memory_vs_data", "peak RSS of loading an expression training split of N encoded JPEGs as training "
          "does (FileBackedSplit), building its training stream and iterating one epoch, N = 10k and 100k "
          "(each in its own process)",
          "peak RSS at 100k within 10 % of the peak at 10k",
          lambda s, selected: 85 if not s.quick else 20, _memory_columns)  # fmt: skip
def bench_memory_vs_data(suite: Suite) -> dict:
    s = suite.settings
    rows = [_safe(lambda n=n: suite.job("memory:stream_memory", count=n, max_batches=s.memory_max_batches))
            for n in s.memory_counts]  # fmt: skip
    good = [r for r in rows if "peak_rss_mb" in r]
    for r in good:
        r["peak_over_smallest"] = round(r["peak_rss_mb"] / good[0]["peak_rss_mb"], 3)
    return {"rows": rows}


# --- 4. inference -----------------------------------------------------------------------------------


def _inference_columns(row, suite):
    return {"size": f"{row['size']} {row['image_size']} px", "params": f"{row['params'] / 1e6:.2f} M",
            ".keras MB": f"{row['keras_bytes'] / 2**20:.1f}" + (" (with optimizer)" if row.get("keras_has_optimizer") else ""),
            "predict b1 ms": fmt(row["predict_b1_ms"]), "predict b32 ms/face": fmt(row["predict_b32_ms"]),
            "predict_on_batch b1 ms": fmt(row["predict_on_batch_b1_ms"]), "model(x) b1 ms": fmt(row["call_b1_ms"]),
            "LiteRT b1 ms": fmt(row["litert_b1_ms"]) if row.get("litert_b1_ms") else row.get("litert", "n/a"),
            "LiteRT b32 ms/face": fmt(row["litert_b32_ms"]) if row.get("litert_b32_ms") else "n/a",
            ".tflite MB": f"{int(row['litert'].split()[0]) / 2**20:.1f}" if row.get("litert_b1_ms") else "n/a"}  # fmt: skip


@register("inference", "latency per face of each method's deployable model at the paper size (the demo size "
          "with --quick): Keras predict at batch 1 and 32, "
          "predict_on_batch and model(x, training=False) at batch 1, LiteRT at batch 1 and 32 (when kdface.export "
          "is importable); parameters, .keras and .tflite bytes", "none (deployment information)",
          lambda s, selected: sum((20 if f"train_{m}" in selected else 45) * (2 if m.startswith("fskd") else 1)
                                  for m in INFERENCE_METHODS) * (1 if not s.quick else 0.5), _inference_columns)  # fmt: skip
def bench_inference(suite: Suite) -> dict:
    s = suite.settings
    data = suite.data()
    rows = []
    for method in INFERENCE_METHODS:
        measured = [r for r in suite.folded.get("inference", []) if r["method"] == method]
        if measured:  # measured in the train processes of this run
            rows.extend(measured)
            continue
        print(f"  {method} ...", flush=True)
        result = _safe(lambda method=method: suite.job(
            "inference:inference", method=method, data_root=data_root_for(method, data), tfds_dir=data["tfds_dir"],
            quick=s.quick, sizes=[s.sizes[-1]], calls=s.inference_calls, repeats=s.repeats,
            speed=s.speed))  # fmt: skip
        rows.extend(result.get("rows", [result]))
    return {"rows": rows}


# --- 5. KD-Loss: kdface against the original's loop ----------------------------------------------------


def _kdloss_columns(row, suite):
    return {"size": f"{row['size']} {row['image_size']} px, b{row['batch_size']}", "setup": "; ".join(row["notes"]),
            "kdface img/s": fmt(row["kdface_images_per_s"]), "original loop img/s": fmt(row["original_images_per_s"]),
            "kdface / original (>= 3)": f"{fmt(row['kdface_over_original'])} {verdict(row['kdface_over_original'], 3.0)}"}  # fmt: skip


@register("kdloss_vs_original", "KD-Loss student images/s: kdface's fit against an original-style loop (eager "
          "GradientTape step, cv2.imread per batch from files, both teachers predict_on_batch every step; "
          "bench/original_kdloss_loop.py, spec §3.1) on the same models, batch and data",
          "kdface >= 3x the original loop",
          lambda s, selected: (50 if "train_kdloss_student" in selected else 160) if not s.quick else 40,
          _kdloss_columns)  # fmt: skip
def bench_kdloss_vs_original(suite: Suite) -> dict:
    s = suite.settings
    data = suite.data()
    if suite.folded.get("kdloss_vs_original"):  # measured in the train_kdloss_student processes
        return {"rows": suite.folded["kdloss_vs_original"]}
    rows = []
    for size in s.sizes:
        print(f"  {size} size ...", flush=True)
        rows.append(_safe(lambda size=size: suite.job(
            "original_kdloss_loop:kdloss_vs_original", size=size, data_root=data["data_root"],
            tfds_dir=data["tfds_dir"], quick=s.quick, window_seconds=s.window_s, repeats=s.repeats,
            max_steps=s.max_steps, speed=s.speed)))  # fmt: skip
    return {"rows": rows}


# --- 6. ResNet-18 / IResNet-18 against PyTorch -----------------------------------------------------------


def _torch_columns(row, suite):
    if "skipped" in row:
        return {"network": row["network"], "size": "", "TF img/s": "", "torch img/s": "",
                "TF / torch (>= 1.2)": f"skipped: {row['skipped']}"}  # fmt: skip
    return {"network": row["network"], "size": f"{row['image_size']} px, b{row['batch_size']}",
            "TF img/s": fmt(row["tf_images_per_s"]), "torch img/s": fmt(row["torch_images_per_s"]),
            "TF / torch (>= 1.2)": f"{fmt(row['tf_over_torch'])} {verdict(row['tf_over_torch'], 1.2)}",
            "threads TF / torch": f"{row['tf_threads']['intra_op_effective']} / {row['torch_threads']}"}  # fmt: skip


@register("resnet_vs_torch", "ResNet-18 and IResNet-18 train step (7-class head, Adam + coupled L2, "
          "cross-entropy, in-memory batch) in kdface/TensorFlow against the same step in PyTorch, same threads",
          "TF >= 1.2x torch", lambda s, selected: 135 if not s.quick else 40, _torch_columns)  # fmt: skip
def bench_resnet_vs_torch(suite: Suite) -> dict:
    s = suite.settings
    rows = []
    for network in ("resnet18", "iresnet18"):
        print(f"  {network} ...", flush=True)
        result = _safe(lambda network=network: suite.job(
            "vs_torch:vs_torch", network=network, sizes=list(s.torch_sizes), batch_size=s.torch_batch,
            window_seconds=s.window_s, repeats=s.repeats, max_steps=s.max_steps, speed=s.speed))  # fmt: skip
        rows.extend(result.get("rows", [result]))
    return {"rows": rows}


# --- the report -----------------------------------------------------------------------------------------


def markdown(report: dict, suite: Suite) -> str:
    m, v = report["machine"], report["versions"]
    lines = [f"# kdface benchmarks, {report['started'][:16].replace('T', ' ')}", "",
             f"`{report['command']}`" + (" (**--quick: toy settings, numbers are not measurements**)" if report["quick"] else ""),
             "", f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores of {m['cores']}, {m['ram_gib']} GiB RAM, "
             f"{m['os']}; host {m['host']}; load average at start {m['load_average']}, at end {report['load_average_end']}.",
             "", "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val), "",
             "Cells are median [min–max] over repeats; ratios are per repeat between contenders run in turn. "
             "bench/README.md explains every column.", ""]  # fmt: skip
    for name, result in report["results"].items():
        bench = BENCHMARKS[name]
        lines += [f"## {name}", "", f"{bench.measures}. Target: {bench.target}.", ""]
        table = []
        for row in result.get("rows", []):
            if "error" in row:
                table.append({"error": row["error"].splitlines()[0][:200]})
                continue
            label = {"method": row["method"]} if "method" in row else {}
            try:
                table.append({**label, **bench.columns(row, suite)})
            except (KeyError, TypeError) as exc:  # a row the renderer cannot read: show it raw
                table.append({**label, "row": f"unrenderable ({exc!r})"})
        headers = list(dict.fromkeys(key for row in table for key in row))
        if headers:
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            lines += ["| " + " | ".join(str(row.get(h, "")) for h in headers) + " |" for row in table]
        lines.append("")
    return "\n".join(lines)


def select(names: list[str] | None) -> list[str]:
    if not names:
        return list(BENCHMARKS)
    chosen = []
    for pattern in names:
        matches = [n for n in BENCHMARKS if fnmatch.fnmatch(n, pattern)]
        if not matches:
            raise SystemExit(f"error: no benchmark matches {pattern!r}; known: {', '.join(BENCHMARKS)}")
        chosen += matches
    return [name for name in BENCHMARKS if name in chosen]  # registry order: train before inference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="toy settings (seconds per benchmark; for CI)")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="benchmarks to run (names or shell patterns)"
    )
    parser.add_argument("--out", default="bench/results", help="folder for <date>-<host>.json and .md")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kdface-bench"),
                        help="scratch folder (SynthFaces data, prepared records), reused between runs")  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    speed = parser.add_argument_group("kdface's speed options (docs/speed.md), applied to every TensorFlow step "
                                      "measured (default: kdface's defaults)")  # fmt: skip
    speed.add_argument("--jit-compile", action="store_true", help="XLA-compiled steps")
    speed.add_argument("--mixed-precision", choices=("none", "float16", "bfloat16"), default="none")
    speed.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--job-args", help=argparse.SUPPRESS)
    parser.add_argument("--job-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        harness.job_main(args.job, args.job_args, args.job_out)
        return 0
    speed_options = {"jit_compile": args.jit_compile, "mixed_precision": args.mixed_precision,
                     "steps_per_execution": args.steps_per_execution}  # fmt: skip
    defaults = {"jit_compile": False, "mixed_precision": "none", "steps_per_execution": 1}
    settings = Settings.make(args.quick, {k: v for k, v in speed_options.items() if v != defaults[k]})
    if args.list:
        for b in BENCHMARKS.values():
            print(
                f"{b.name:22s} ~{b.estimate_s(settings, [b.name]) / 60:4.1f} min  {b.measures}\n{'':30s}target: {b.target}"
            )
        return 0
    names = select(args.only)
    estimate = sum(BENCHMARKS[n].estimate_s(settings, names) for n in names)
    if any(n.startswith(("train_", "inference", "kdloss")) for n in names):
        estimate += 60 if not args.quick else 25  # SynthFaces data (a no-op when --work has it)
    command = "python " + " ".join(
        shlex.quote(a) for a in ["bench/run.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(f"kdface benchmarks: {', '.join(names)}\nestimated duration on 2 quiet cores: ~{estimate / 60:.0f} min "
          f"({'quick' if args.quick else 'full'} settings; busy machines take longer)", flush=True)  # fmt: skip
    started = datetime.datetime.now().astimezone()
    report = {"suite": "kdface bench", "schema": 1, "command": command, "quick": args.quick,
              "started": started.isoformat(timespec="seconds"), "machine": harness.machine(),
              "versions": harness.versions(), "settings": dataclasses.asdict(settings), "results": {}}  # fmt: skip
    suite = Suite(settings, Path(args.work), names)
    clock = time.perf_counter()
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        if name not in suite.results:
            suite.results[name] = BENCHMARKS[name].run(suite)
        suite.results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    report["results"] = {n: suite.results[n] for n in names}
    report["duration_s"] = round(time.perf_counter() - clock, 1)
    report["load_average_end"] = harness.machine()["load_average"]
    report["targets"] = {n: BENCHMARKS[n].target for n in report["results"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d-%H%M}-{report['machine']['host']}"
    text = markdown(report, suite)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / f"{stem}.md").write_text(text + "\n")
    print("\n" + text)
    print(f"wrote {out / stem}.json and .md in {report['duration_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
