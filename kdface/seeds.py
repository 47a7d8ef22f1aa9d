"""Results over several seeds: mean ± std of every figure, and whether a method's gain over its baseline
is shown (larger than the seed spread) or not.

``python -m kdface.seeds --report 0=runs/demo-fskd/report.json --report runs/demo-fskd/seed1/report.json
... --compare synthface_fskd_8=synthface_nokd_8 --out runs/demo-fskd/report_seeds.md``

Each ``report.json`` is one seed's ``test.py`` report (any task); ``--label-report SEED=run/label_report.json``
adds an SCN run's label report (importance AUC, labels restored and corrupted by relabelling) under the
run folder's name, with its two claims: the AUC beats chance (0.5) and relabelling restores more
flipped labels than it corrupts clean ones (net > 0). Model names lose a trailing ``_s<seed>``
(``synthface_fskd_8_s1`` and ``synthface_fskd_8`` are one model over seeds) and a ``synthface_`` prefix
in the table. The rule for a claim "method beats baseline" on one figure:

* gain = mean(method) - mean(baseline), signed so that positive is better (lower is better for NME and
  failure rate);
* spread = the larger of the two sample standard deviations over seeds (ddof 1);
* **shown** when gain > spread and at least 2 seeds were run; otherwise "not shown" (a gain within the
  seed-to-seed variation, or a single seed) or "reversed" (the baseline is better by more than the spread).

A claim against a fixed value (an AUC above chance) uses the same rule with the value as the baseline
(spread: the model's own std).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from kdface.errors import DataFormatError

LOWER_IS_BETTER = {"nme", "failure_rate", "clean_made_wrong", "label_errors_left"}
# report.json key of a split's figure -> its name over seeds (the landmark report calls the failure rate "fr")
REPORT_METRICS = {"accuracy": "accuracy", "mean_class_accuracy": "mean_class_accuracy", "nme": "nme",
                  "fr": "failure_rate", "auc": "auc"}  # fmt: skip
LABEL_REPORT_WHERE = "training labels"
# the SCN claims a label report carries: (metric, value to beat, how the value is named)
LABEL_REPORT_CLAIMS = (("importance_auc", 0.5, "chance (0.5)"), ("net_restored", 0.0, "0"))
_SEED_SUFFIX = re.compile(r"_s(\d+)$")


@dataclasses.dataclass(frozen=True)
class SeedRecord:
    """One figure of one model at one place (a split, a test resolution) from one seed's run."""

    seed: int
    model: str
    where: str
    metric: str
    value: float


@dataclasses.dataclass(frozen=True)
class Aggregate:
    model: str
    where: str
    metric: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Claim:
    method: str
    baseline: str
    where: str
    metric: str
    gain: float  # positive: the method is better
    spread: float
    n: int
    verdict: str  # "shown", "not shown" or "reversed"


def model_key(name: str) -> str:
    """The model over seeds: ``synthface_fskd_8_s2`` -> ``synthface_fskd_8``."""
    return _SEED_SUFFIX.sub("", name)


def aggregate(records: Iterable[SeedRecord]) -> list[Aggregate]:
    """Group by (model, where, metric), in first-seen order; one value per seed (a repeat is an error)."""
    groups: dict[tuple, dict[int, float]] = {}
    for r in records:
        values = groups.setdefault((r.model, r.where, r.metric), {})
        if r.seed in values:
            raise ValueError(f"two values for seed {r.seed} of {r.model} {r.where} {r.metric}")
        values[r.seed] = float(r.value)
    return [
        Aggregate(m, w, k, tuple(v[s] for s in sorted(v)), tuple(sorted(v)))
        for (m, w, k), v in groups.items()
    ]


def compare(aggregates: list[Aggregate], method: str, baseline: str) -> list[Claim]:
    """The claim "``method`` beats ``baseline``" on every (where, metric) both have, seed sets equal."""
    by_key = {(a.model, a.where, a.metric): a for a in aggregates}
    claims = []
    for a in aggregates:
        if a.model != method or (baseline, a.where, a.metric) not in by_key:
            continue
        b = by_key[(baseline, a.where, a.metric)]
        if a.seeds != b.seeds:
            raise ValueError(
                f"{method} and {baseline} ran different seeds ({a.seeds} vs {b.seeds}) at {a.where}"
            )
        sign = -1.0 if a.metric in LOWER_IS_BETTER else 1.0
        gain = sign * (a.mean - b.mean)
        spread = max(a.std, b.std)
        claims.append(
            Claim(method, baseline, a.where, a.metric, gain, spread, a.n, _verdict(gain, spread, a.n))
        )
    return claims


def _verdict(gain: float, spread: float, n: int) -> str:
    if n >= 2 and gain > spread:
        return "shown"
    if n >= 2 and -gain > spread:
        return "reversed"
    return "not shown"


def compare_to_value(
    aggregates: list[Aggregate], model: str, metric: str, value: float, name: str
) -> list[Claim]:
    """The claim "``model``'s ``metric`` beats ``value``" (named ``name``) wherever ``model`` has it."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return [
        Claim(
            model,
            name,
            a.where,
            metric,
            sign * (a.mean - value),
            a.std,
            a.n,
            _verdict(sign * (a.mean - value), a.std, a.n),
        )
        for a in aggregates
        if a.model == model and a.metric == metric
    ]


def records_from_label_report(report: dict, seed: int, model: str) -> list[SeedRecord]:
    """An SCN ``label_report.json`` (:func:`kdface.methods.scn.label_report`) as records of ``model``."""
    try:
        figures = {
            "importance_auc": report["importance_auc_clean_over_flipped"],
            "flipped_restored": report["flipped_restored"],
            "clean_made_wrong": report["clean_changed_to_wrong"],
            "net_restored": report["flipped_restored"] - report["clean_changed_to_wrong"],
            "label_errors_left": report["final_label_errors"],
        }
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an SCN label report (missing {exc})") from None
    return [SeedRecord(seed, model, LABEL_REPORT_WHERE, k, v) for k, v in figures.items() if v is not None]


def records_from_report(report: dict, seed: int) -> list[SeedRecord]:
    """The figures of one ``test.py`` report.json: recognition rows (accuracy per test side),
    expression splits (accuracy, mean class accuracy) and landmark splits (NME, failure rate, AUC)."""
    if not isinstance(report, dict) or not all(isinstance(r, dict) for r in report.values()):
        raise ValueError("not a test.py report (an object of model name -> results)")
    out = []
    for name, result in report.items():
        model = model_key(name)
        if "rows" in result:  # recognition
            for row in result["rows"]:
                where = f"{row['size']} px" + (" cross" if row.get("cross_resolution") else "")
                out.append(SeedRecord(seed, model, where, "accuracy", row["accuracy"]))
        for split, summary in (result.get("splits") or {}).items():
            for key, metric in REPORT_METRICS.items():
                if isinstance(summary.get(key), int | float):
                    out.append(SeedRecord(seed, model, split, metric, summary[key]))
    return out


def _seed_and_json(path: Path, seed: int | None, what: str) -> tuple[int, dict]:
    """The seed and the parsed file; a file that cannot be read is the error before a missing seed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataFormatError(path, what, got=str(exc)[:120]) from None
    if seed is None:
        found = [int(m.group(1)) for part in path.parts if (m := re.fullmatch(r"seed(\d+)", part))]
        if not found:
            raise DataFormatError(path, f"{what} inside a seed<N> folder (or pass its seed)")
        seed = found[-1]
    return seed, data


def read_report(path, seed: int | None = None) -> list[SeedRecord]:
    """``path``'s records; the seed comes from ``seed`` or a ``seed<N>`` folder in the path."""
    seed, report = _seed_and_json(Path(path), seed, "a test.py report.json")
    try:
        return records_from_report(report, seed)
    except ValueError as exc:
        raise DataFormatError(path, "a test.py report.json", got=str(exc)) from None


def read_label_report(path, seed: int | None = None) -> list[SeedRecord]:
    """An SCN run's ``label_report.json``, as records of the model named after the run folder."""
    path = Path(path)
    seed, report = _seed_and_json(path, seed, "an SCN label_report.json")
    try:
        return records_from_label_report(report, seed, path.parent.name)
    except ValueError as exc:
        raise DataFormatError(path, "an SCN label_report.json", got=str(exc)) from None


def _short(model: str) -> str:
    return model.removeprefix("synthface_")


def markdown(aggregates: list[Aggregate], claims: list[Claim]) -> str:
    seeds = sorted({s for a in aggregates for s in a.seeds})
    lines = [f"# Over seeds {', '.join(map(str, seeds))}", "",
             "mean ± sample std over seeds (n = number of seeds).", "",
             "| model | where | metric | mean ± std | n | per seed |", "|---|---|---|---|---:|---|"]  # fmt: skip
    for a in aggregates:
        per_seed = ", ".join(f"{v:.2f}" for v in a.values)
        lines.append(
            f"| {_short(a.model)} | {a.where} | {a.metric} | {a.mean:.2f} ± {a.std:.2f} | {a.n} | {per_seed} |"
        )
    if claims:
        lines += ["", "## Claims", "", "A gain is **shown** when it exceeds the larger seed std of the two models "
                  "(and 2+ seeds ran); otherwise not shown (or reversed).", "",
                  "| method | baseline | where | metric | gain | spread | n | verdict |",
                  "|---|---|---|---|---:|---:|---:|---|"]  # fmt: skip
        for c in claims:
            lines.append(f"| {_short(c.method)} | {_short(c.baseline)} | {c.where} | {c.metric} | {c.gain:+.2f} | "
                         f"{c.spread:.2f} | {c.n} | {c.verdict} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from kdface.cli import ArgumentParser, HelpFormatter, run_cli

    parser = ArgumentParser(prog="python -m kdface.seeds", description=__doc__.split("\n")[0],
                            formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument(
        "--report", action="append", required=True, help="a seed's report.json (in a seed<N> folder)"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="METHOD=BASELINE",
        help="model names without the seed suffix, e.g. synthface_fskd_8=synthface_nokd_8",
    )
    parser.add_argument(
        "--label-report",
        action="append",
        default=[],
        metavar="SEED=PATH",
        help="an SCN run's label_report.json (the model is the run folder's name; its AUC and relabelling claims "
        "are added)",
    )
    parser.add_argument("--out", help="markdown file to write (default: print)")
    args = parser.parse_args(argv)

    def read_all(specs, reader):
        records = []
        for spec in specs:
            seed, sep, path = spec.partition("=")
            records += reader(path, int(seed)) if sep and seed.isdigit() else reader(spec)
        return records

    def run():
        label_records = read_all(args.label_report, read_label_report)
        aggregates = aggregate(read_all(args.report, read_report) + label_records)
        claims = []
        for model in dict.fromkeys(r.model for r in label_records):
            for metric, value, name in LABEL_REPORT_CLAIMS:
                claims += compare_to_value(aggregates, model, metric, value, name)
        for pair in args.compare:
            method, sep, baseline = pair.partition("=")
            if not sep:
                raise DataFormatError("--compare", "METHOD=BASELINE", got=pair)
            claims += compare(aggregates, method, baseline)
        text = markdown(aggregates, claims)
        if args.out:
            from kdface.io.atomic import write_text

            write_text(args.out, text)
            print(f"wrote {args.out}")
        else:
            print(text)

    run_cli(run)


if __name__ == "__main__":
    main()
