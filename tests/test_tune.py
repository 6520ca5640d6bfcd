"""Optuna studies on a tiny teacher: a 3-trial study, continuing it, a killed run's stale trial,
best.json re-running the best trial exactly, the Pareto objective and two worker processes."""

import csv
import json
from pathlib import Path

import pytest

from distill.errors import DistillInputError
from students.train import config_from_args
from students.train import run as student_run
from distill.tune import TuneConfig, open_study, run, search_space


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    # a small, fast space for the tiny 32-wide teacher: fixed widths, real ranges for the rest
    f = tmp_path_factory.mktemp("space") / "space.json"
    f.write_text(json.dumps({"num_filters": 8, "embed_dim": 0, "embedding": "sparse",
                             "lr": {"low": 1e-3, "high": 1e-2, "log": True}, "alpha": {"low": 0.3, "high": 1.0}}))
    return f


def tune_cfg(sst2_run, space_file, out, **kw):
    base = dict(materials=sst2_run["run_dir"], arch="cnn", trials=3, output_dir=str(out), epochs=2, space=str(space_file))
    base.update(kw)
    return TuneConfig(**base)


@pytest.fixture(scope="module")
def study_run(sst2_run, space_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "cnn"
    return run(tune_cfg(sst2_run, space_file, out))


def test_three_trial_study_outputs(study_run):
    run_dir = Path(study_run["run_dir"])
    assert study_run["trials"]["complete"] + study_run["trials"]["pruned"] == 3
    for f in ("config.json", "study.db", "best.json", "summary.json", "trials.csv", "plots/history.png"):
        assert (run_dir / f).is_file(), f
    rows = list(csv.DictReader(open(run_dir / "trials.csv")))
    assert len(rows) == 3 and {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"}
    assert all(1e-3 <= float(r["lr"]) <= 1e-2 for r in rows)
    # only the best trial's run directory is kept (no --keep-trials)
    assert [d.name for d in (run_dir / "trials").iterdir()] == [f"{study_run['best']['number']:04d}"]


def test_best_json_reruns_the_best_trial_exactly(study_run, tmp_path):
    best = json.loads((Path(study_run["run_dir"]) / "best.json").read_text())
    assert best["options"]["num_filters"] == 8 and best["epochs"] == 2
    cfg = config_from_args(["--config", str(Path(study_run["run_dir"]) / "best.json"), "--output-dir", str(tmp_path / "again")])
    again = student_run(cfg)
    assert again["metrics"]["dev"]["accuracy"] == pytest.approx(study_run["best"]["values"][0], abs=1e-9)


def test_same_command_continues_and_fails_stale_trials(sst2_run, space_file, tmp_path):
    cfg = tune_cfg(sst2_run, space_file, tmp_path / "t", trials=2)
    first = run(cfg)
    study = open_study(cfg.resolved("sst2"), tmp_path / "t")
    before = {t.number: t.values for t in study.get_trials() if t.values}
    study.ask()  # a trial a killed run left RUNNING
    second = run(TuneConfig(**{**cfg.__dict__, "trials": 3}))
    states = [r["state"] for r in json.loads((tmp_path / "t" / "summary.json").read_text())["all_trials"]]
    assert states.count("FAIL") == 1 and second["trials"]["complete"] + second["trials"]["pruned"] == 3
    assert second["finished_before_this_run"] == first["trials"]["complete"] + first["trials"]["pruned"] == 2
    after = {t.number: t.values for t in open_study(cfg.resolved("sst2"), tmp_path / "t").get_trials() if t.values}
    assert all(after[n] == v for n, v in before.items())  # finished trials untouched


def test_pareto_objective_writes_front_with_latency(sst2_run, space_file, tmp_path):
    res = run(tune_cfg(sst2_run, space_file, tmp_path / "p", objective="pareto", trials=3, pruner="none"))
    front = json.loads((Path(res["run_dir"]) / "pareto_front.json").read_text())
    assert front and all(p["latency_ms"] > 0 for p in front)
    for p in front:  # each point's accuracy is its kept trial run's own metrics.json
        kept = json.loads((Path(p["run_dir"]) / "metrics.json").read_text())
        assert p["dev_metric"] == pytest.approx(kept["dev"]["accuracy"])
    # the front holds the most accurate trial of all (a fast chance-level trial may sit on it too)
    done = [float(r["values"][0]) for r in read_trials(Path(res["run_dir"])) if r["values"]]
    assert max(p["dev_metric"] for p in front) == pytest.approx(max(done))
    assert (Path(res["run_dir"]) / "plots" / "pareto.png").is_file()


def read_trials(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "summary.json").read_text())["all_trials"]


def test_two_workers_share_one_study(sst2_run, space_file, tmp_path):
    res = run(tune_cfg(sst2_run, space_file, tmp_path / "w", trials=4, workers=2, pruner="none"))
    assert (tmp_path / "w" / "study.journal").is_file()
    assert res["trials"]["complete"] >= 4 and res["trials"]["fail"] == 0


def test_bad_space_and_changed_flags_are_refused(sst2_run, space_file, study_run, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"filters": {"choices": [1]}}))
    with pytest.raises(DistillInputError, match="'filters' is not a setting"):
        search_space("cnn", str(bad))
    with pytest.raises(DistillInputError, match="--epochs"):
        run(tune_cfg(sst2_run, space_file, study_run["run_dir"], epochs=5))
    # the refused runs changed nothing: the study reopens with exactly the first run's three trials
    study = open_study(tune_cfg(sst2_run, space_file, study_run["run_dir"]).resolved("sst2"), Path(study_run["run_dir"]))
    assert [t.state.name for t in study.trials].count("COMPLETE") == study_run["trials"]["complete"]
    assert len(study.trials) == 3


def test_continuation_and_workers_draw_new_settings(sst2_run, space_file, tmp_path):
    """A continued study (or a second worker) must not replay the first run's random draws."""
    cfg = tune_cfg(sst2_run, space_file, tmp_path / "s", trials=2, pruner="none")
    run(cfg)
    run(TuneConfig(**{**cfg.__dict__, "trials": 4}))
    lrs = [t.params["lr"] for t in open_study(cfg.resolved("sst2"), tmp_path / "s").get_trials()]
    assert len(lrs) == 4 and len(set(lrs)) == 4


def test_report_to_logs_one_tracker_run_per_trial(sst2_run, space_file, tmp_path, monkeypatch):
    """--report-to tensorboard on a study: each trial's scalars in its own folder of RUN/tensorboard,
    kept when the trial's own run directory is removed."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = tmp_path / "tracked"
    run(tune_cfg(sst2_run, space_file, out, trials=2, report_to="tensorboard"))
    folders = sorted(p for p in (out / "tensorboard").iterdir() if p.is_dir())
    assert [p.name for p in folders] == ["0000", "0001"]  # one run per trial, named by trial number
    for f in folders:
        acc = EventAccumulator(str(f))
        acc.Reload()
        assert {"eval/dev_accuracy", "train/epoch_seconds"} <= set(acc.Tags()["scalars"])  # 20 steps: under --log-every
