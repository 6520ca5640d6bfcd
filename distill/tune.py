"""``python -m distill.tune``: Optuna studies over a student's settings — persistent, resumable,
pruned, and optionally multi-objective (dev accuracy × measured batch-32 latency).

    python -m distill.tune --materials runs/sst2 --arch cnn --trials 20 --study cnn-sst2 --output-dir runs/tune-cnn
    python -m distill.tune ... same command again                    # after a crash / kill -9: continues
    python -m distill.tune ... --objective pareto --workers 2         # accuracy x latency, two processes
    python -m distill.student --config runs/tune-cnn/best.json        # re-run the best trial exactly

The search space lives next to each arch (``students.SEARCH_SPACES``); ``--space FILE`` (JSON)
overrides or fixes entries: ``{"lr": {"low": 1e-4, "high": 1e-2, "log": true}, "num_filters":
{"choices": [100, 200]}, "alpha": 0.7}``. The study persists in ``RUN/study.db`` (SQLite), or in
``RUN/study.journal`` (Optuna's journal file) when ``--workers`` > 1 share it, or in any Optuna
storage URL (``--storage postgresql://...``) for workers on several machines.

Writes RUN/config.json, RUN/trials/<n>/ (each trial's student run; only the best kept unless
--keep-trials), RUN/best.json, RUN/summary.json, RUN/trials.csv and RUN/plots/*.png.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from distill.cli import config_from, dataclass_parser, quiet_transformers, field_docs, run_cli
from distill.errors import DistillInputError
from distill.tracking import parse_report_to, tracker_env
from distill.resume import changed_settings, flags
from distill.rundir import read_json, write_json, write_text
from distill.tasks import task_record

log = logging.getLogger("distill.tune")  # the same name under python -m and in spawned workers

OBJECTIVES = ("accuracy", "pareto")
PRUNERS = ("median", "hyperband", "none")


@field_docs
@dataclass
class TuneConfig:
    materials: str = ""  # teacher run directory written by distill.teach
    arch: str = "cnn"  # cnn | bilstm | transformer
    trials: int = 20  # finished (complete or pruned) trials the study should reach
    study: str = ""  # study name (default <arch>-<task>); the same name continues the same study
    output_dir: str = ""  # run directory (default runs/tune-<study>)
    storage: str = ""  # Optuna storage URL; default RUN/study.db (SQLite) or RUN/study.journal with --workers > 1
    objective: str = "accuracy"  # accuracy (maximise dev metric) | pareto (also minimise batch-32 latency)
    workers: int = 1  # local worker processes on one study (each gets cores / workers threads)
    epochs: int = 3  # max epochs per trial (the pruner may stop a trial after any epoch)
    pruner: str = "median"  # median | hyperband | none (pruning needs the per-epoch dev metric)
    space: str = ""  # JSON file overriding or fixing entries of the arch's search space
    seed: int = 42  # sampler seed (TPE) and every trial's training seed
    keep_trials: bool = False  # keep every trial's run directory (default: only the best trial's)
    latency_batch: int = 32  # --objective pareto: batch size of the latency measurement
    report_to: str = "none"  # experiment trackers, one run per trial: none, or tensorboard, wandb, mlflow (offline, inside RUN; pip install '.[track]')

    def validate(self):
        from students import ARCHS

        checks = [
            (bool(self.materials), "--materials is required: a teacher run directory written by python -m distill.teach"),
            (self.arch in ARCHS, f"--arch must be one of {', '.join(ARCHS)}"),
            (self.trials >= 1 and self.workers >= 1 and self.epochs >= 1, "--trials, --workers and --epochs must be >= 1"),
            (self.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}"),
            (self.pruner in PRUNERS, f"--pruner must be one of {', '.join(PRUNERS)}"),
            (self.latency_batch >= 1, "--latency-batch must be >= 1"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DistillInputError(msg)
        parse_report_to(self.report_to)

    def resolved(self, task: str) -> TuneConfig:
        study = self.study or f"{self.arch}-{task}"
        return dataclasses.replace(self, study=study, output_dir=self.output_dir or f"runs/tune-{study}")


def search_space(arch: str, space_file: str = "") -> dict:
    """The arch's search space with the ``--space`` file's entries laid over it (a number or string
    fixes a setting; a dict replaces its range)."""
    from students import ARCHS, SEARCH_SPACES
    from students.train import StudentConfig

    space = {k: dict(v) for k, v in SEARCH_SPACES[arch].items()}
    if space_file:
        path = Path(space_file)
        if not path.is_file():
            raise DistillInputError(f"--space {path} does not exist; pass a JSON file such as {{\"lr\": {{\"low\": 1e-4, \"high\": 1e-2}}}}")
        try:
            given = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DistillInputError(f"--space {path} is not valid UTF-8 JSON ({exc}); fix the file") from None
        if not isinstance(given, dict):
            raise DistillInputError(f"--space {path} holds a JSON {type(given).__name__}; it must be an object of "
                                    f"settings, e.g. {{\"lr\": {{\"low\": 1e-4, \"high\": 1e-2}}}}")
        space.update(given)
    known = {f.name for f in dataclasses.fields(StudentConfig)} | {f.name for f in dataclasses.fields(ARCHS[arch][0])}
    for name, spec in space.items():
        if name not in known:
            raise DistillInputError(f"--space: {name!r} is not a setting of distill.student --arch {arch}")
        if isinstance(spec, dict):
            _check_range(name, spec)
    return space


def _check_range(name: str, spec: dict) -> None:
    """One sentence for a search-space entry Optuna would refuse with a traceback."""
    form = '{"low": L, "high": H[, "log": true]} or {"choices": [...]}'
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise DistillInputError(f"--space: {name!r} has no choices; give a non-empty list, e.g. {form}")
        return
    if not ("low" in spec and "high" in spec):
        raise DistillInputError(f"--space: {name!r} needs {form}")
    low, high = spec["low"], spec["high"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise DistillInputError(f"--space: {name!r} low and high must be numbers (got {low!r}, {high!r})")
    if low > high:
        raise DistillInputError(f"--space: {name!r} has low {low} > high {high}; swap them")
    if spec.get("log") and low <= 0:
        raise DistillInputError(f"--space: {name!r} is log-scaled, so low must be > 0 (got {low})")


def suggest(trial, space: dict) -> dict:
    """One value per setting from ``space`` through Optuna's trial API (ints stay ints)."""
    out = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            out[name] = spec  # fixed
        elif "choices" in spec:
            out[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("float"):
            out[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            out[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=spec.get("log", False))
    return out


def trial_config(cfg: TuneConfig, params: dict, out_dir: Path):
    """The StudentConfig a trial trains: the sampled settings on top of the student defaults."""
    from students import ARCHS
    from students.train import StudentConfig

    arch_fields = {f.name for f in dataclasses.fields(ARCHS[cfg.arch][0])}
    top = {k: v for k, v in params.items() if k not in arch_fields}
    options = {k: v for k, v in params.items() if k in arch_fields}
    return StudentConfig(arch=cfg.arch, materials=cfg.materials, output_dir=str(out_dir), epochs=cfg.epochs,
                         seed=cfg.seed, save_steps=0, report_to=cfg.report_to, **top, options=options)


def _storage(cfg: TuneConfig, run_dir: Path):
    """A storage object: the URL given, or the run's own file (journal when several workers share it)."""
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat_interval

    if cfg.storage:
        if cfg.storage.startswith(("sqlite", "postgresql", "mysql")):
            # a heartbeat lets a later run mark trials of a killed worker as failed
            return optuna.storages.RDBStorage(cfg.storage, heartbeat_interval=30, grace_period=90)
        return cfg.storage
    if cfg.workers > 1:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'study.db'}", heartbeat_interval=30, grace_period=90)


def _pruner(name: str):
    import optuna

    if name == "median":  # after 3 finished trials, stop a trial whose epoch metric is below their median
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(cfg: TuneConfig, run_dir: Path, salt: int = 0):
    """The study, created or loaded. ``salt`` offsets the sampler seed: each worker, and each
    continuation of a study, must not replay the same random draws as the others."""
    import optuna

    directions = ["maximize", "minimize"] if cfg.objective == "pareto" else ["maximize"]
    seed = cfg.seed + salt
    sampler = optuna.samplers.NSGAIISampler(seed=seed) if cfg.objective == "pareto" else \
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    return optuna.create_study(storage=_storage(cfg, run_dir), study_name=cfg.study, directions=directions,
                               sampler=sampler, pruner=_pruner(cfg.pruner), load_if_exists=True)


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def measure_latency(run_dir: Path, batch_size: int) -> float:
    """Median batch latency (ms) of a trained student on its dev texts, file order, dynamic padding —
    the benchmark harness's timing code on a short budget."""
    from distill.timing import Budget, dev_data, file_order_batches, time_batches
    from distill.inference import encode
    from students.predictor import load_predictor

    import torch

    _, model, tokenizer, max_length, siamese = load_predictor(run_dir, "cpu")
    ex, _ = dev_data(run_dir)
    enc = encode(tokenizer, ex, max_length, siamese=siamese)
    batches = file_order_batches(enc, batch_size, tokenizer.pad_token_id)

    @torch.inference_mode()
    def fn(b):
        model(**b)

    return time_batches(fn, batches, Budget(batch_sizes=(batch_size,), warmup=2, repeats=3, max_seconds=1.0))["p50_ms"]


def objective_fn(cfg: TuneConfig, run_dir: Path, space: dict):  # noqa: PLR0915 - the objective closure Optuna calls, read top to bottom
    """The objective a worker optimises: train one student with the sampled settings (epochs reported
    to the pruner), return its dev metric (and latency for pareto)."""
    import optuna

    from distill.materials import open_teacher_run
    from students.train import run as train_student

    teacher = open_teacher_run(cfg.materials, None)
    task = teacher.task

    def objective(trial: optuna.Trial):
        params = suggest(trial, space)
        out = run_dir / "trials" / f"{trial.number:04d}"
        shutil.rmtree(out, ignore_errors=True)  # a trial number is never reused; leftovers are a killed run's
        scfg = trial_config(cfg, params, out)
        try:
            scfg.validate()
        except DistillInputError as exc:
            raise optuna.TrialPruned(f"invalid settings: {exc}") from None
        trial.set_user_attr("config", json.loads(json.dumps(dataclasses.asdict(scfg.resolved()), default=list)))

        history: list[float] = []

        def hook(epoch: int, dev: dict) -> None:
            key = task.primary_metric if task.primary_metric in dev else "teacher_agreement"
            history.append(dev[key])
            trial.set_user_attr("history", history)
            if cfg.objective == "accuracy":  # Optuna reports and prunes single-objective studies only
                trial.report(dev[key], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"epoch {epoch + 1}: {key} {dev[key]:.4f}")

        t0 = time.perf_counter()
        try:
            res = train_student(scfg, trial_hook=hook)
        except optuna.TrialPruned:
            if not cfg.keep_trials:
                shutil.rmtree(out, ignore_errors=True)
            raise
        dev = res["metrics"][task.eval_splits[0]]
        key = task.primary_metric if task.primary_metric in dev else "teacher_agreement"
        trial.set_user_attr("dev", dev)
        trial.set_user_attr("train_seconds", res["metrics"]["train_seconds"])
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - t0, 2))
        trial.set_user_attr("run_dir", str(out))
        if cfg.objective == "pareto":
            latency = measure_latency(out, cfg.latency_batch)
            trial.set_user_attr("latency_ms", latency)
            return dev[key], latency
        return dev[key]

    return objective


def _worker(cfg: TuneConfig, run_dir: str, threads: int, index: int = 0) -> None:
    """One worker process: load once, then take trials until the study has ``cfg.trials`` finished."""
    import optuna
    import torch
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not logging.getLogger().handlers:  # a spawned worker: the CLI's logging setup did not run here
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("students.loop").setLevel(logging.WARNING)
    run_dir = Path(run_dir)
    existing = len(open_study(cfg, run_dir).get_trials(deepcopy=False))
    study = open_study(cfg, run_dir, salt=1000 * index + existing)  # new draws per worker and per continuation
    left = cfg.trials - _finished(study)
    if left <= 0:
        return

    def report(study, t) -> None:  # one line per finished trial (workers log to the same terminal)
        log.info("trial %d %s: %s %s (%d finished of %d)", t.number, t.state.name.lower(), t.values or "",
                 t.params, _finished(study), cfg.trials)

    with tracker_env(run_dir, parse_report_to(cfg.report_to)):  # every trial's tracker run in the study's folder
        study.optimize(objective_fn(cfg, run_dir, search_space(cfg.arch, cfg.space)), n_trials=left,
                       callbacks=[MaxTrialsCallback(cfg.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), report],
                       catch=(RuntimeError, ValueError), gc_after_trial=True)


def _fail_stale_trials(study) -> int:
    """Trials left RUNNING by a killed run of this command (the journal has no heartbeat) -> FAIL."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # no public API for another process's trial
    return len(stale)


def run(cfg: TuneConfig, *, show_progress: bool = False) -> dict:
    """Run (or continue) the study until it has ``cfg.trials`` finished trials; write the outputs."""

    from distill.materials import open_teacher_run

    cfg.validate()
    teacher = open_teacher_run(cfg.materials, None)
    cfg = cfg.resolved(teacher.task.name)
    space = search_space(cfg.arch, cfg.space)  # refuse a bad --space before anything is written
    run_dir = Path(cfg.output_dir)
    saved = run_dir / "config.json"
    if saved.is_file():
        old = read_json(saved)
        diff = changed_settings(old, cfg, ("materials", "arch", "objective", "epochs", "study", "seed"), TuneConfig())
        if diff:
            raise DistillInputError(f"--output-dir {run_dir} holds a study run with other {flags(diff)}; "
                                    f"repeat its flags to continue it or choose a new --output-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(saved, {"kind": "tune", **dataclasses.asdict(cfg), **task_record(teacher.task), "search_space": space})
    study = open_study(cfg, run_dir)
    if not cfg.storage and (n := _fail_stale_trials(study)):
        log.warning("%d trial(s) left running by a killed run were marked failed; their numbers are not reused", n)
    before = _finished(study)
    t0 = time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // cfg.workers)
    if cfg.workers == 1:
        _worker(cfg, str(run_dir), threads)
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        procs = [ctx.Process(target=_worker, args=(cfg, str(run_dir), threads, i)) for i in range(cfg.workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [p.exitcode for p in procs if p.exitcode]
        if bad:
            raise RuntimeError(f"{len(bad)} worker(s) exited with {bad}; see the log above")
    study = open_study(cfg, run_dir)
    summary = write_outputs(cfg, study, run_dir, teacher, wall=time.perf_counter() - t0, before=before)
    return {"run_dir": str(run_dir), **summary}


def _trial_row(t) -> dict:
    return {"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
            "latency_ms": t.user_attrs.get("latency_ms"), "dev": t.user_attrs.get("dev"),
            "epochs_reported": len(t.user_attrs.get("history", ())), "seconds": t.user_attrs.get("wall_seconds"),
            "duration_s": t.duration.total_seconds() if t.duration else None}


def write_outputs(cfg: TuneConfig, study, run_dir: Path, teacher, *, wall: float, before: int) -> dict:
    """best.json, summary.json, trials.csv and the plots; removes the run directories of non-best trials
    unless --keep-trials."""
    import csv
    import io

    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    if not done:
        raise RuntimeError(f"study {cfg.study}: no trial completed ({counts}); see RUN/trials and the log")
    if cfg.objective == "pareto":
        front = study.best_trials
        best = max(front, key=lambda t: t.values[0])  # the most accurate point of the front
        write_json(run_dir / "pareto_front.json", [{"number": t.number, "dev_metric": t.values[0], "latency_ms": t.values[1],
                                                    "params": t.params, "run_dir": t.user_attrs.get("run_dir")}
                                                   for t in sorted(front, key=lambda t: t.values[1])])
    else:
        front, best = [], study.best_trial
    best_cfg = dict(best.user_attrs["config"])
    for k in ("output_dir", "resume", "seeds"):
        best_cfg.pop(k, None)
    write_json(run_dir / "best.json", best_cfg)
    keep = {best.number} | {t.number for t in front}
    if not cfg.keep_trials:
        for d in (run_dir / "trials").glob("*"):
            if d.is_dir() and int(d.name) not in keep:
                shutil.rmtree(d, ignore_errors=True)
    rows = [_trial_row(t) for t in trials]
    buf = io.StringIO()
    w = csv.writer(buf)
    names = sorted({k for t in trials for k in t.params})
    w.writerow(["number", "state", "value", "latency_ms", "epochs", "seconds", *names])
    for t in trials:
        w.writerow([t.number, t.state.name, "" if not t.values else t.values[0], t.user_attrs.get("latency_ms", ""),
                    len(t.user_attrs.get("history", ())), t.user_attrs.get("wall_seconds", ""), *(t.params.get(n, "") for n in names)])
    write_text(run_dir / "trials.csv", buf.getvalue())
    summary = {"study": cfg.study, "objective": cfg.objective, "trials": counts, "finished_before_this_run": before,
               "wall_seconds_this_run": round(wall, 1), "best": {"number": best.number, "values": best.values,
                                                                  "params": best.params, "dev": best.user_attrs.get("dev"),
                                                                  "run_dir": best.user_attrs.get("run_dir")},
               "pareto_front_size": len(front), "all_trials": rows}
    write_json(run_dir / "summary.json", summary)
    plots(study, run_dir / "plots", cfg.objective)
    return {k: v for k, v in summary.items() if k != "all_trials"}


def plots(study, out: Path, objective: str) -> list[Path]:
    """History, parameter importances and (pareto) the front, as PNG through Optuna's matplotlib backend."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ov

    out.mkdir(parents=True, exist_ok=True)
    made = []
    target = (lambda t: t.values[0]) if objective == "pareto" else None
    jobs = {"history": lambda: ov.plot_optimization_history(study, target=target, target_name="dev metric"),
            "importances": lambda: ov.plot_param_importances(study, target=target, target_name="dev metric")}
    if objective == "pareto":
        jobs["pareto"] = lambda: ov.plot_pareto_front(study, target_names=["dev metric", "latency ms"])
    for name, make in jobs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
            try:
                ax = make()
            except (ValueError, RuntimeError) as exc:  # e.g. importances need 2+ completed trials
                log.warning("plot %s skipped: %s", name, exc)
                continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        path = out / f"{name}.png"
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        made.append(path)
    return made


def print_summary(summary: dict) -> None:
    from rich.table import Table

    from distill.progress import console

    if not console.is_terminal:  # a log file: wide enough that the params column does not fold
        console.width = 220
    t = Table(title=f"study {summary['study']} ({summary['objective']}): {summary['trials']}")
    for col in ("trial", "state", "dev metric", "latency ms", "epochs", "seconds", "params"):
        t.add_column(col)
    for r in summary["all_trials"]:
        t.add_row(str(r["number"]), r["state"], "" if not r["values"] else f"{r['values'][0]:.4f}",
                  "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}", str(r["epochs_reported"]),
                  "" if r["seconds"] is None else f"{r['seconds']:.0f}",
                  ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()))
    console.print(t)
    b = summary["best"]
    console.print(f"best trial {b['number']}: {b['values']} -> best.json (python -m distill.student --config best.json)")


def main(argv: list[str] | None = None) -> int:
    def body():
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from our own log
        quiet_transformers()
        args = dataclass_parser(TuneConfig, "python -m distill.tune", __doc__).parse_args(argv)
        cfg = config_from(TuneConfig, args)
        res = run(cfg, show_progress=True)
        print_summary(read_json(Path(res["run_dir"]) / "summary.json"))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
