"""``python -m benchmarks TEACH_RUN STUDENT_RUN... --output-dir REPORT``: accuracy against throughput
for a teacher and its students on this machine, in one run.

    python -m benchmarks runs/sst2-mean runs/s3/cnn-kd runs/s3/bilstm-kd runs/s3/transformer-kd \\
        --output-dir runs/report --batch-sizes 1,32,128 --backends eager,bf16,int8,onnx,onnx-int8

Every model is measured in its own subprocess (its peak resident memory is its own), on every
backend; the teacher also runs through ``transformers.pipeline`` and a randomly initialised
BERT-base measures what a BERT-base teacher would cost here. Writes REPORT/results.json (every
figure), REPORT/report.md (tables) and REPORT/pareto.png, and prints a table.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from distill.cli import config_from, dataclass_parser, field_docs, run_cli
from distill.errors import DistillInputError
from distill.rundir import read_json, write_json, write_text

from benchmarks.harness import (BACKENDS, Budget, busy_reason, machine_info, machine_load, measure_pipeline,
                                measure_random_bert_base, measure_run)
from benchmarks.report import label, markdown, pareto_front, plot_pareto, points, score_key

SCHEMA_VERSION = 1


def _measure_in_subprocess(run_dir: str, backends, budget: Budget) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.json"
        cmd = [sys.executable, "-m", "benchmarks", "--measure-one", run_dir, "--json-out", str(out),
               "--backends", ",".join(backends), "--batch-sizes", ",".join(map(str, budget.batch_sizes)),
               "--max-seconds", str(budget.max_seconds), "--repeats", str(budget.repeats), "--warmup", str(budget.warmup)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"measuring {run_dir} failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarise(models: list[dict], baselines: dict, bs: str) -> dict:
    """The headline ratios: students against the teacher, backends against eager, BERT-base projection."""
    teacher = next(m for m in models if m["kind"] == "teacher")
    key = score_key(models)

    def rate(m, backend="eager"):
        r = m["backends"].get(backend, {})
        return r.get("speed", {}).get(bs, {}).get("examples_per_s")

    s: dict = {"batch_size": int(bs), "teacher_eager_examples_per_s": rate(teacher),
               "teacher_dev_" + key: teacher["backends"]["eager"]["metrics"][key]}
    for backend in ("bf16", "int8", "onnx", "onnx-int8"):
        if rate(teacher, backend):
            s[f"teacher_{backend}_speedup"] = rate(teacher, backend) / rate(teacher)
            s[f"teacher_{backend}_metric_change_pt"] = 100 * (teacher["backends"][backend]["metrics"][key]
                                                              - teacher["backends"]["eager"]["metrics"][key])
    small = [m for m in models if m["kind"] != "teacher" and m["arch"] in ("cnn", "bilstm") and rate(m)]
    if small:
        best = max(small, key=lambda m: (m["backends"]["eager"]["metrics"][key], rate(m)))
        s["best_small_student"] = label(best)
        s["best_small_student_dev_" + key] = best["backends"]["eager"]["metrics"][key]
        s["best_small_student_speedup_vs_teacher"] = rate(best) / rate(teacher)
        # every cnn/bilstm student's eager speed-up, so a faster, slightly less accurate one is visible too
        s["small_students_eager_speedup_vs_teacher"] = {label(m): round(rate(m) / rate(teacher), 2) for m in small}
        # the fastest (student, backend) of the best student whose accuracy stays within 0.5 pt of its eager run
        ok = [(b, rate(best, b)) for b, r in best["backends"].items() if rate(best, b)
              and r["metrics"][key] >= best["backends"]["eager"]["metrics"][key] - 0.005]
        fast_b, fast_rate = max(ok, key=lambda x: x[1])
        s["best_small_student_fastest_backend"] = fast_b
        s["best_small_student_fastest_backend_dev_" + key] = best["backends"][fast_b]["metrics"][key]
        s["best_small_student_fastest_backend_speedup_vs_teacher"] = fast_rate / rate(teacher)
        bb = baselines.get("bert_base_random", {}).get(bs)
        if bb:
            s["bert_base_examples_per_s"] = bb["examples_per_s"]
            s["best_small_student_speedup_vs_bert_base"] = rate(best) / bb["examples_per_s"]
            s["best_small_student_fastest_backend_speedup_vs_bert_base"] = fast_rate / bb["examples_per_s"]
    pipe = baselines.get("pipeline", {}).get(bs)
    if pipe:
        s["teacher_eager_vs_pipeline"] = rate(teacher) / pipe["examples_per_s"]
    return s


def run(runs: list[str], output_dir: str, *, backends=BACKENDS, budget: Budget | None = None, baselines: bool = True,
        subprocesses: bool = True, command: str = "", bert_base_overrides: dict | None = None, peak_fn=None) -> dict:
    """Measure every run, write the three report files, return the results dict. The load average and
    a matmul peak before and after are recorded, and a busy machine's report says so (``peak_fn``:
    tests pass a stand-in for the peak measurement)."""
    budget = budget or Budget()
    for r in runs:
        if not (Path(r) / "config.json").is_file():
            raise DistillInputError(f"{r} is not a run directory (no config.json); pass runs written by distill.teach / distill.student")
    kinds = [read_json(Path(r) / "config.json").get("kind") for r in runs]
    if kinds.count("teacher") != 1:
        raise DistillInputError(f"pass exactly one teacher run (got {kinds.count('teacher')} among {', '.join(runs)})")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise DistillInputError(f"--backends: unknown {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    measure = (lambda r: _measure_in_subprocess(r, backends, budget)) if subprocesses else (lambda r: measure_run(r, backends, budget))
    load_before = machine_load(peak_fn)
    models = [measure(r) for r in runs]
    teacher_run = runs[kinds.index("teacher")]
    bs = "32" if 32 in budget.batch_sizes else str(budget.batch_sizes[len(budget.batch_sizes) // 2])
    base = {}
    if baselines:
        base["pipeline"] = measure_pipeline(teacher_run, budget)
        base["bert_base_random"] = measure_random_bert_base(teacher_run, budget, int(bs), **(bert_base_overrides or {}))
    load_after = machine_load(peak_fn)
    machine = {**machine_info(), "load_before": load_before, "load_after": load_after,
               "busy": busy_reason(load_before, load_after, os.cpu_count() or 1)}
    results = {"schema": SCHEMA_VERSION, "command": command, "machine": machine, "budget": asdict(budget),
               "backends": list(backends), "models": models, "baselines": base, "summary": summarise(models, base, bs)}
    results["pareto_front"] = pareto_front(points(results, bs))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    return rebuild(out)


def rebuild(output_dir: str | Path) -> dict:
    """report.md and pareto.png (and the summary) from REPORT/results.json."""
    out = Path(output_dir)
    if not (out / "results.json").is_file():
        raise DistillInputError(f"{out} has no results.json; run python -m benchmarks TEACH_RUN STUDENT_RUN... --output-dir {out}")
    results = read_json(out / "results.json")
    bs = str(results["summary"]["batch_size"])
    results["summary"] = summarise(results["models"], results["baselines"], bs)
    results["pareto_front"] = pareto_front(points(results, bs))
    write_json(out / "results.json", results)
    write_text(out / "report.md", markdown(results, [str(b) for b in results["budget"]["batch_sizes"]]))
    plot_pareto(results, out / "pareto.png", bs)
    return results


def _parse_list(text: str, typ=str):
    return tuple(typ(x) for x in text.split(",") if x)


@field_docs
@dataclass
class BenchConfig:
    __positional__ = ("runs",)

    runs: tuple[str, ...] = ()  # one teacher run and any number of student runs (none with --report-only)
    output_dir: str = "runs/report"  # REPORT folder: results.json, report.md, pareto.png
    batch_sizes: str = "1,32,128"  # comma-separated batch sizes to time
    backends: str = ",".join(BACKENDS)  # comma-separated backends (eager, bf16, int8, onnx, onnx-int8)
    max_seconds: float = 3.0  # timed seconds per pass
    repeats: int = 3  # timed passes per (model, backend, batch size); the median is reported
    warmup: int = 2  # untimed batches before each pass
    baselines: bool = True  # also time pipeline() and project a random BERT-base teacher (--no-baselines: skip)
    in_process: bool = False  # measure in this process (no per-model peak memory)
    report_only: bool = False  # rebuild report.md / pareto.png from OUTPUT_DIR/results.json
    measure_one: bool = False  # internal: measure the one run named, in this process, for the parent's subprocess
    json_out: str = ""  # internal: where --measure-one writes its JSON

    def budget(self) -> Budget:
        return Budget(_parse_list(self.batch_sizes, int), self.max_seconds, self.repeats, self.warmup)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = dataclass_parser(BenchConfig, "python -m benchmarks", __doc__)

    def body():
        a = config_from(BenchConfig, p.parse_args(argv))
        if a.measure_one:
            write_json(a.json_out, measure_run(a.runs[0], _parse_list(a.backends), a.budget()))
            return
        if a.report_only:
            res = rebuild(a.output_dir)
            console_summary(res, a.output_dir)
            return
        if not a.runs:
            raise DistillInputError("name one teacher run and any student runs to measure (or --report-only "
                                    "--output-dir REPORT to rebuild a report)")
        res = run(list(a.runs), a.output_dir, backends=_parse_list(a.backends), budget=a.budget(), baselines=a.baselines,
                  subprocesses=not a.in_process, command=shlex.join(["python", "-m", "benchmarks", *argv]))
        console_summary(res, a.output_dir)

    return run_cli(body)


def console_summary(res: dict, output_dir: str) -> None:
    """The rich table at the edge: every (model, backend) at the summary batch size."""
    from rich.table import Table

    from distill.progress import console

    bs = str(res["summary"]["batch_size"])
    t = Table(title=f"{res['models'][0]['task']}: dev metric and examples/s at batch {bs}")
    for c in ("model", "backend", "dev", "ex/s", "x teacher"):
        t.add_column(c)
    teacher_rate = res["summary"]["teacher_eager_examples_per_s"]
    for pt in points(res, bs):
        t.add_row(pt["model"], pt["backend"], f"{pt['metric']:.4f}", f"{pt['examples_per_s']:,.0f}",
                  f"{pt['examples_per_s'] / teacher_rate:.1f}")
    console.print(t)
    console.print(f"wrote {output_dir}/report.md, results.json, pareto.png")
    print(json.dumps(res["summary"], indent=2))  # the result on stdout; tables and progress on stderr


if __name__ == "__main__":
    raise SystemExit(main())
