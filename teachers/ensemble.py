"""``distill.teach --ensemble RUN RUN ... --output-dir E``: several teacher runs of one task written as
one teacher run — materials of its own (the members' outputs combined by ``distill.ensemble``, on
every split all members dumped), its metrics on each labelled split, and a config naming the
members — so every command that reads a teacher run reads it. It has no model of its own: a
student takes its tokenizer and initialisation from the first member, and ``distill.predict``
refuses it (predict with a member, or with a student distilled from it)."""

from __future__ import annotations

import dataclasses
import logging
import shlex
from pathlib import Path

from distill import materials
from distill import metrics as task_metrics
from distill.ensemble import open_teacher_runs
from distill.errors import DistillInputError
from distill.rundir import clear_run, holds_run, read_json, write_json
from distill.tasks import task_record

log = logging.getLogger(__name__)


def write_ensemble(runs: list[str], output_dir: str, *, weights: str = "", task: str | None = None,
                   overwrite: bool = False) -> dict:
    """Write the ensemble of teacher ``runs`` into ``output_dir``; returns {"run_dir", "metrics"}.
    Everything is read, checked and combined before the folder is touched."""
    if len(runs) < 2:
        raise DistillInputError("--ensemble needs two or more teacher runs (RUN RUN ...)")
    teacher = open_teacher_runs(runs, task, weights)
    ens, first = teacher.ensemble, teacher
    temps = {r.manifest["temperature"] for r in ens.runs}
    if len(temps) > 1:
        raise DistillInputError(f"--ensemble: the runs' materials were dumped at different temperatures ({sorted(temps)}); "
                                f"re-dump them at one --temperature")
    ens = dataclasses.replace(ens, temperature=first.manifest["temperature"])
    run_dir = Path(output_dir)
    if holds_run(run_dir) and not overwrite:
        raise DistillInputError(f"--output-dir {run_dir} already holds a run; pass --overwrite to replace it or choose a new one")
    splits = [s for s in first.manifest["splits"] if all(s in r.manifest["splits"] for r in ens.runs)]
    combined = {}
    for split in splits:
        mat = materials.load(first.root, split, task=first.task.name, teacher_sha256=first.weights_sha256)
        combined[split] = (mat, ens.combine(split, mat.ids, mat.logits, first.task.kind))
    members = [{"run": str(Path(r.root).resolve()), "name": r.manifest["teacher"]["name"], "weights_sha256": r.weights_sha256,
                "weight": w} for r, w in zip(ens.runs, ens.weights)]
    identity = materials.ensemble_sha256([(m["weights_sha256"], m["weight"]) for m in members])
    base = materials.base_manifest(first.task, teacher={"name": "ensemble of " + ", ".join(m["name"] for m in members),
                                                        "weights_sha256": identity, "members": members},
                                   tokenizer=first.manifest["tokenizer"], max_length=first.manifest["max_length"],
                                   temperature=ens.temperature)
    if overwrite:
        clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {"kind": "ensemble", **task_record(first.task), "members": members,
                                         "max_length": first.manifest["max_length"],
                                         "command": shlex.join(["python", "-m", "distill.teach", "--ensemble", *runs,
                                                                "--output-dir", str(output_dir)]
                                                               + (["--teacher-weights", weights] if weights else []))})
    metrics: dict = {}
    for split, (mat, logits) in combined.items():
        ex = mat.to_examples()
        materials.write_split(run_dir / "materials", base, split, ex, logits, None, first.task)
        if ex.gold is not None:
            metrics[split] = task_metrics.compute(first.task, logits, ex.gold, ex.groups)
    own = {m["run"]: read_json(Path(m["run"]) / "metrics.json") for m in members if (Path(m["run"]) / "metrics.json").is_file()}
    write_json(run_dir / "metrics.json", {**metrics, "members": own})
    log.info("ensemble of %d runs written to %s: %s", len(members), run_dir, metrics)
    return {"run_dir": str(run_dir), "metrics": metrics}
