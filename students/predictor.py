"""Any run directory as a predictor: a student's ``RUN/model``, or a teacher run's ``RUN/best``
through ``teachers.load_teacher`` — for ``distill.predict``, ``distill.export``, tuning's latency
and the benchmarks."""

from __future__ import annotations

from pathlib import Path

from distill.errors import DistillInputError
from distill.rundir import read_json, resolve_run
from distill.tasks import task_from_record
from students.train import load_student
from teachers import HFTeacher, load_teacher


def load_predictor(run_dir: Path, device: str = "cpu"):
    """(task, model returning ModelOutput, tokenizer, max_length, siamese) of a run directory
    (for a ``--seeds`` run: its best seed)."""
    run_dir = resolve_run(run_dir)
    cfg = read_json(run_dir / "config.json")
    task = task_from_record(cfg)
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


class Predictor:
    """A run directory's model for Python code (``distill.load``): ``predict`` gives logits,
    ``labels`` the predicted label names (scores for regression/ranking) — the same figures as
    ``distill predict`` on a file."""

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.task, self.model, self.tokenizer, self.max_length, self.siamese = load_predictor(Path(run_dir), device)
        self.device = device

    def predict(self, texts: list[str] | list[tuple[str, str]], batch_size: int = 128):
        """Texts (pairs as (a, b) tuples for pair tasks) -> logits [N, C] as a NumPy array."""
        from distill.data import Examples
        from distill.inference import encode, predict_arrays

        pairs = bool(texts) and isinstance(texts[0], (tuple, list))
        if pairs != self.task.is_pair:
            raise DistillInputError(f"{self.task.name} takes {'(text_a, text_b) pairs' if self.task.is_pair else 'single texts'}; "
                                    f"pass a list of {'tuples' if self.task.is_pair else 'strings'}")
        a = [t[0] for t in texts] if pairs else list(texts)
        ex = Examples([f"input-{i}" for i in range(len(a))], a, [t[1] for t in texts] if pairs else None, None, "python")
        logits, _ = predict_arrays(self.model, encode(self.tokenizer, ex, self.max_length, siamese=self.siamese),
                                   pad_id=self.tokenizer.pad_token_id, batch_size=batch_size, device=self.device)
        return logits

    def labels(self, texts) -> list:
        """The predicted label of each text (its score for regression and ranking)."""
        logits = self.predict(texts)
        if self.task.kind in ("regression", "ranking"):
            return [float(x) for x in logits[:, 0]]
        if self.task.kind == "multilabel":
            return [[n for n, on in zip(self.task.label_names, row) if on] for row in logits > 0]
        return [self.task.label_names[i] for i in logits.argmax(-1)]
