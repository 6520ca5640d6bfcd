"""``python -m distill.predict RUN --input FILE [--output FILE]``: label new texts with a trained run.

Input: a .tsv/.csv with a header naming a text column (``text``, ``sentence``, … or the task's
own columns; two columns for pair tasks), or one text per line. Output (TSV, stdout by default):
``id``, ``label`` (the predicted label name, or the score for regression) and one ``p_<label>``
probability column per class. Works on any run directory that holds ``config.json`` and its model,
using nothing outside that directory.
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.cli import config_from, dataclass_parser, field_docs, quiet_transformers, run_cli
from distill.data import read_text_file
from distill.errors import DistillInputError
from distill.rundir import write_text


@field_docs
@dataclass
class PredictConfig:
    __positional__ = ("run_dir",)

    run_dir: str  # a teacher or student run directory
    input: str  # a .tsv/.csv with a text column, or a file with one text per line
    output: str | None = None  # TSV to write, atomically (default: stdout)
    batch_size: int = 128  # examples per forward pass
    device: str = "cpu"  # cpu | cuda

    def __post_init__(self):
        if self.device not in ("cpu", "cuda"):
            raise DistillInputError(f"--device must be cpu or cuda (got {self.device!r})")


def run(cfg: PredictConfig) -> dict:
    """Predict labels for ``cfg.input``; returns {"n", "output", "labels": [...]}."""
    from distill.inference import encode, predict_arrays
    from distill.materials import soft_targets
    from students.predictor import load_predictor

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
    quiet_transformers()
    p = dataclass_parser(PredictConfig, "python -m distill.predict", __doc__)

    def body():
        a = p.parse_args(argv)
        res = run(config_from(PredictConfig, a))
        if a.output:
            print(f"wrote {res['n']} predictions to {a.output}", file=sys.stderr)

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
