"""Loading task examples: GLUE (a local classic ``glue_data/`` folder, or the Hub), the Jigsaw
competitions (Kaggle's files), any dataset named by flags (``generic``), and unlabelled text files.

``load_split`` is the one entry point; ``Examples`` (``examples``) is what every reader returns;
``holdout`` carves dev splits out of train for tasks that ship none.
"""

from __future__ import annotations

import os

from distill.data.examples import Examples, ids_sha256, open_text
from distill.data.generic import GenericSpec, generic_task, load_generic
from distill.data.glue import encode_label, load_glue, read_glue_tsv
from distill.data.holdout import Holdout
from distill.data.jigsaw import load_jigsaw
from distill.data.xnli import load_xnli
from distill.data.text import TEXT_COLUMN_CANDIDATES, iter_text_file, read_text_file
from distill.errors import DistillInputError
from distill.tasks import Task

__all__ = ["Examples", "GenericSpec", "Holdout", "TEXT_COLUMN_CANDIDATES", "encode_label", "generic_task", "ids_sha256", "iter_text_file", "load_split",
           "open_text", "read_glue_tsv", "read_text_file"]


def load_split(task: Task, split: str, data_dir: str | os.PathLike | None, *, skip_bad_rows: bool = False,
               holdout: Holdout | None = None, languages: tuple[str, ...] = ("en",)) -> Examples:
    """Examples of one split, from ``data_dir`` (a classic glue_data folder; Kaggle's files for the
    Jigsaw tasks) or else the Hub. ``holdout`` says how tasks without a dev file carve one out of train;
    ``languages``, which XNLI training languages to read.

    Raises DistillInputError with both options named when neither source is usable.
    """
    if split not in task.splits:
        raise DistillInputError(f"task {task.name} has no split {split!r}; it has {', '.join(task.splits)}")
    if task.loader == "xnli":
        return load_xnli(task, split, data_dir, languages, skip_bad_rows)
    if task.loader == "generic":
        return load_generic(task, split, skip_bad_rows=skip_bad_rows)
    if task.loader != "glue":
        return load_jigsaw(task, split, data_dir, skip_bad_rows, holdout or Holdout())
    return load_glue(task, split, data_dir, skip_bad_rows=skip_bad_rows)
