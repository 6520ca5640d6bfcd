"""Any run directory as a predictor: a student's ``RUN/model``, or a teacher run's ``RUN/best``
through ``teachers.load_teacher`` — for ``distill.predict``, ``distill.export``, tuning's latency
and the benchmarks."""

from __future__ import annotations

from pathlib import Path

from distill.errors import DistillInputError
from distill.rundir import read_json, resolve_run
from distill.tasks import get_task
from students.train import load_student
from teachers import HFTeacher, load_teacher


def load_predictor(run_dir: Path, device: str = "cpu"):
    """(task, model returning ModelOutput, tokenizer, max_length, siamese) of a run directory
    (for a ``--seeds`` run: its best seed)."""
    run_dir = resolve_run(run_dir)
    cfg = read_json(run_dir / "config.json")
    task = get_task(cfg["task"])
    kind = cfg.get("kind")
    if kind == "teacher":
        if not (run_dir / "best" / "config.json").is_file():
            raise DistillInputError(f"{run_dir}/best holds no model yet; finish the run (python -m distill.teach --output-dir {run_dir} --resume)")
        model, tokenizer = load_teacher(str(run_dir / "best"))
        return task, HFTeacher(model).to(device), tokenizer, cfg["max_length"], False
    if kind == "student":
        if not (run_dir / "model" / "student.json").is_file():
            raise DistillInputError(f"{run_dir}/model holds no model yet; finish the run (python -m distill.student --output-dir {run_dir} --resume)")
        model, tokenizer, meta = load_student(run_dir / "model")
        return task, model.to(device), tokenizer, meta["max_length"], meta["pair_input"] == "siamese"
    if kind == "ensemble":
        raise DistillInputError(f"{run_dir} is an ensemble of teacher runs ({', '.join(m['run'] for m in cfg['members'])}) "
                                f"with no model of its own; predict with one of them, or distil a student from it")
    raise DistillInputError(f"{run_dir / 'config.json'} has kind {kind!r}; expected a run written by distill.teach or distill.student")
