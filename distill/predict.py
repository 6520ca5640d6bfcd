"""``python -m distill.predict RUN --input FILE [--output FILE]``: label new texts with a trained run.

Input: a .tsv/.csv with a header naming a text column (``text``, ``sentence``, … or the task's
own columns; two columns for pair tasks), or one text per line. Output (TSV, stdout by default):
``id``, ``label`` (the predicted label name, or the score for regression) and one ``p_<label>``
probability column per class. Works on any run directory that holds ``config.json`` and its model,
using nothing outside that directory.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.cli import run_cli
from distill.data import read_text_file
from distill.errors import DistillInputError
from distill.rundir import read_json, write_text
from distill.tasks import get_task


@dataclass
class PredictConfig:
    run_dir: str  # a teacher (or student) run directory
    input: str  # texts to label
    output: str | None = None  # TSV to write (atomically); None prints to stdout
    batch_size: int = 128  # examples per forward pass
    device: str = "cpu"  # cpu | cuda


def resolve_run(run_dir: str | Path) -> Path:
    """The run directory that holds a model: ``run_dir`` itself, or for a ``--seeds`` run the seed
    with the best dev metric."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise DistillInputError(f"{run_dir} has no config.json; pass a run directory written by distill.teach or distill.student")
    cfg = read_json(cfg_path)
    if cfg.get("kind") != "student-seeds":
        return run_dir
    seeds = sorted(run_dir.glob("seed-*/metrics.json"))
    if not seeds:
        raise DistillInputError(f"{run_dir} holds no finished seed run; finish it with python -m distill.student --output-dir {run_dir} --resume")
    task = get_task(cfg["task"])

    def score(f):  # the task metric on dev; the teacher agreement where dev has no gold (ranking by scores)
        dev = read_json(f).get(task.eval_splits[0], {})
        return dev.get(task.primary_metric, dev.get("teacher_agreement", float("-inf")))

    return max(seeds, key=score).parent


def eval_materials(run_dir: str | Path):
    """The teacher's materials for the task's evaluation split (dev) of a run: a student's come
    from its teacher run, a teacher's from itself."""
    from distill import materials

    run_dir = resolve_run(run_dir)
    cfg = read_json(run_dir / "config.json")
    task = get_task(cfg["task"])
    return materials.load(cfg.get("teacher_run") or run_dir, task.eval_splits[0], task=task.name)


def load_predictor(run_dir: Path, device: str = "cpu"):
    """(task, model returning ModelOutput, tokenizer, max_length, siamese) of a run directory
    (for a ``--seeds`` run: its best seed)."""
    run_dir = resolve_run(run_dir)
    cfg = read_json(run_dir / "config.json")
    task = get_task(cfg["task"])
    kind = cfg.get("kind")
    if kind == "teacher":
        from teachers import HFTeacher, load_teacher

        if not (run_dir / "best" / "config.json").is_file():
            raise DistillInputError(f"{run_dir}/best holds no model yet; finish the run (python -m distill.teach --output-dir {run_dir} --resume)")
        model, tokenizer = load_teacher(str(run_dir / "best"))
        return task, HFTeacher(model).to(device), tokenizer, cfg["max_length"], False
    if kind == "student":
        from distill.student import load_student

        if not (run_dir / "model" / "student.json").is_file():
            raise DistillInputError(f"{run_dir}/model holds no model yet; finish the run (python -m distill.student --output-dir {run_dir} --resume)")
        model, tokenizer, meta = load_student(run_dir / "model")
        return task, model.to(device), tokenizer, meta["max_length"], meta["pair_input"] == "siamese"
    raise DistillInputError(f"{run_dir / 'config.json'} has kind {kind!r}; expected a run written by distill.teach or distill.student")


def run(cfg: PredictConfig) -> dict:
    """Predict labels for ``cfg.input``; returns {"n", "output", "labels": [...]}."""
    from transformers.utils import logging as hf_logging

    from distill.inference import encode, predict_arrays
    from distill.materials import soft_targets

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    task, model, tokenizer, max_length, siamese = load_predictor(Path(cfg.run_dir), cfg.device)
    first = task.splits["train"]
    ex = read_text_file(cfg.input, split="input", pair=task.is_pair, text_columns=first.text_columns)
    logits, _ = predict_arrays(model, encode(tokenizer, ex, max_length, siamese=siamese), pad_id=tokenizer.pad_token_id,
                               batch_size=cfg.batch_size, device=cfg.device)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    if task.kind in ("regression", "ranking"):
        w.writerow(["id", "label" if task.kind == "regression" else "score"])
        labels = logits[:, 0]
        for id_, s in zip(ex.ids, labels):
            w.writerow([id_.removeprefix("input-"), f"{s:.6f}"])
    else:
        probs = soft_targets(task, logits, 1.0)
        labels = [task.label_names[i] for i in np.argmax(logits, axis=-1)] if task.kind != "multilabel" else \
            [",".join(n for n, on in zip(task.label_names, row) if on) for row in logits > 0]
        w.writerow(["id", "label", *(f"p_{n}" for n in task.label_names)])
        for id_, lab, p in zip(ex.ids, labels, probs):
            w.writerow([id_.removeprefix("input-"), lab, *(f"{x:.6f}" for x in p)])
    if cfg.output:
        write_text(cfg.output, buf.getvalue())
    else:
        sys.stdout.write(buf.getvalue())
    return {"n": len(ex), "output": cfg.output, "labels": list(labels), "logits": logits}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill.predict", description="Label new texts with a trained run.")
    p.add_argument("run_dir", help="a teacher or student run directory")
    p.add_argument("--input", required=True, help="a .tsv/.csv with a text column, or a file with one text per line")
    p.add_argument("--output", help="TSV to write (default: stdout)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])

    def body():
        a = p.parse_args(argv)
        res = run(PredictConfig(a.run_dir, a.input, a.output, a.batch_size, a.device))
        if a.output:
            print(f"wrote {res['n']} predictions to {a.output}", file=sys.stderr)

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
