"""``python -m students.hf RUN [RUN ...]``: bring run folders written before distill's saved models carried
their transformers config up to date, so plain transformers loads them
(``from_pretrained(folder, trust_remote_code=True)``). A teacher run's ``best/`` (mean-pooled BERT/MPNet)
gets its own model type and code; a student run's ``model/`` gets config.json and
``distill_modeling.py``. Weights stay untouched, so materials and checkpoints stay valid."""

from __future__ import annotations

import sys
from pathlib import Path

from students.train import migrate_model_folder
from teachers.hf import make_hf_loadable


def migrate(path: str) -> str:
    """What was done to one run (or model folder); raises ValueError for anything else."""
    p = Path(path)
    for folder in (p / "model", p):  # a student run, or its model folder
        if (folder / "student.json").is_file():
            return f"{folder}: {'written' if migrate_model_folder(folder) else 'nothing to do (config.json present)'}"
    for folder in (p / "best", p):  # a teacher run, or its best folder
        if (folder / "config.json").is_file():
            done = make_hf_loadable(folder)
            return f"{folder}: {'rewritten' if done else 'nothing to do (not a mean-pooled BERT/MPNet folder, or done)'}"
    raise ValueError(f"{path} holds no model folder (RUN/best, RUN/model); pass a teacher or student run")


def main(argv: list[str] | None = None) -> int:
    for f in sys.argv[1:] if argv is None else argv:
        try:
            print(migrate(f))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
