"""Aggregation over seeds on hand-made run records: mean, sample std, and the shown / not shown rule."""

import json

import pytest

from kdface.seeds import SeedRecord, aggregate, compare, main, markdown, model_key, read_report


def _records(values, model, where="8 px", metric="accuracy"):
    return [SeedRecord(seed, model, where, metric, v) for seed, v in enumerate(values)]


def test_mean_and_sample_std():
    (a,) = aggregate(_records([90.0, 92.0, 94.0], "fskd"))
    assert a.mean == pytest.approx(92.0) and a.std == pytest.approx(2.0) and a.n == 3 and a.seeds == (0, 1, 2)


def test_a_gain_larger_than_the_spread_is_shown_and_a_smaller_one_is_not():
    aggs = aggregate(_records([95.0, 96.0, 97.0], "fskd") + _records([90.0, 91.0, 92.0], "nokd")
                     + _records([91.0, 93.0, 98.0], "askd"))  # fmt: skip
    (shown,) = compare(aggs, "fskd", "nokd")
    assert (
        shown.gain == pytest.approx(5.0) and shown.spread == pytest.approx(1.0) and shown.verdict == "shown"
    )
    (within,) = compare(aggs, "askd", "nokd")  # gain 3.0, askd's std 3.61
    assert within.gain == pytest.approx(3.0) and within.spread == pytest.approx(3.6056, abs=1e-3)
    assert within.verdict == "not shown"
    (reversed_,) = compare(aggs, "nokd", "fskd")
    assert reversed_.verdict == "reversed"


def test_lower_is_better_for_nme_and_one_seed_shows_nothing():
    aggs = aggregate(_records([8.0, 8.2, 8.1], "kd", "common", "nme") + _records([9.0, 9.1, 9.2], "no_kd", "common",
                                                                                   "nme"))  # fmt: skip
    (claim,) = compare(aggs, "kd", "no_kd")
    assert claim.gain == pytest.approx(1.0) and claim.verdict == "shown"
    single = aggregate(_records([99.0], "a") + _records([50.0], "b"))
    assert compare(single, "a", "b")[0].verdict == "not shown"


def test_different_seed_sets_and_repeated_seeds_are_errors():
    with pytest.raises(ValueError, match="two values for seed 0"):
        aggregate(_records([1.0], "a") + _records([2.0], "a"))
    aggs = aggregate(_records([1.0, 2.0], "a") + [SeedRecord(5, "b", "8 px", "accuracy", 1.0)])
    with pytest.raises(ValueError, match="different seeds"):
        compare(aggs, "a", "b")


def test_reports_of_each_task_and_the_cli(tmp_path):
    assert model_key("synthface_fskd_8_s12") == "synthface_fskd_8" and model_key("kd_student") == "kd_student"
    for seed, (fskd, nokd) in enumerate([(95.0, 90.0), (96.0, 91.0), (97.0, 92.0)]):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        suffix = f"_s{seed}" if seed else ""
        report = {
            f"synthface_fskd_8{suffix}": {"rows": [{"size": 8, "accuracy": fskd}]},
            f"synthface_nokd_8{suffix}": {"rows": [{"size": 8, "accuracy": nokd}]},
            f"kd{suffix}": {"splits": {"common": {"nme": 8.0 + seed, "fr": 20.0, "auc": 0.3, "count": 9}}},
        }
        (folder / "report.json").write_text(json.dumps(report))
    records = read_report(tmp_path / "seed2" / "report.json")
    assert {r.seed for r in records} == {2} and {r.metric for r in records} == {
        "accuracy",
        "nme",
        "failure_rate",
        "auc",
    }
    out = tmp_path / "seeds.md"
    (tmp_path / "seed0" / "report.json").rename(tmp_path / "report.json")  # seed 0 at the top, as the demos
    reports = ["--report", f"0={tmp_path / 'report.json'}"]
    reports += [a for s in (1, 2) for a in ("--report", str(tmp_path / f"seed{s}" / "report.json"))]
    main([*reports,
          "--compare", "synthface_fskd_8=synthface_nokd_8", "--out", str(out)])  # fmt: skip
    text = out.read_text()
    assert "| fskd_8 | 8 px | accuracy | 96.00 ± 1.00 | 3 | 95.00, 96.00, 97.00 |" in text
    assert "| fskd_8 | nokd_8 | 8 px | accuracy | +5.00 | 1.00 | 3 | shown |" in text
    assert markdown([], []).startswith("# Over seeds")


def _label_report(auc, restored, clean_wrong):
    return {"samples": 100, "flipped": 30, "importance_auc_clean_over_flipped": auc, "flipped_restored": restored,
            "clean_changed_to_wrong": clean_wrong, "final_label_errors": 30 - restored + clean_wrong}  # fmt: skip


def test_scn_label_reports_over_seeds_give_the_auc_and_relabelling_claims(tmp_path):
    specs = []
    for seed, (auc, restored, wrong) in enumerate([(0.80, 20, 5), (0.84, 22, 4), (0.82, 18, 30)]):
        run = tmp_path / f"seed{seed}" / "scn_noise30"
        run.mkdir(parents=True)
        (run / "label_report.json").write_text(json.dumps(_label_report(auc, restored, wrong)))
        specs += ["--label-report", str(run / "label_report.json")]
    report = tmp_path / "seed0" / "report.json"
    report.write_text(json.dumps({}))
    out = tmp_path / "seeds.md"
    main(["--report", str(report), *specs, "--out", str(out)])
    text = out.read_text()
    # AUC mean 0.82, std 0.02: 0.32 above chance -> shown
    assert (
        "| scn_noise30 | chance (0.5) | training labels | importance_auc | +0.32 | 0.02 | 3 | shown |" in text
    )
    # net restored 15, 18, -12: mean 7, std 16.52 -> not shown
    assert "| scn_noise30 | 0 | training labels | net_restored | +7.00 | 16.52 | 3 | not shown |" in text
    assert (
        "| scn_noise30 | training labels | clean_made_wrong | 13.00 ± 14.73 | 3 | 5.00, 4.00, 30.00 |" in text
    )


def test_a_label_report_that_is_not_one_names_the_file(tmp_path):
    bad = tmp_path / "seed1" / "scn" / "label_report.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"samples": 3}))
    from kdface.errors import DataFormatError
    from kdface.seeds import read_label_report

    with pytest.raises(DataFormatError, match="label_report.json"):
        read_label_report(bad)


def test_a_file_that_is_not_a_test_py_report_names_the_file(tmp_path):
    from kdface.errors import DataFormatError

    other = tmp_path / "seed1" / "report.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"samples": 3}))  # e.g. an SCN label report passed as --report
    with pytest.raises(DataFormatError, match="report.json"):
        read_report(other)


def test_a_missing_report_outside_a_seed_folder_is_one_error_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "report.json"  # a bare path, no seed<N> folder: the missing file is the error
    with pytest.raises(SystemExit) as exit_:
        main(["--report", str(missing)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("error:") == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {missing}: ") and "No such file" in err and "seed<N>" not in err
