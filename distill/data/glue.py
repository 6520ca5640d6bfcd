"""GLUE: a local classic ``glue_data/`` folder (the TSVs as GLUE's own readers read them), or the
Hub through ``datasets``."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from distill.data.examples import Examples, open_text
from distill.errors import DistillInputError
from distill.tasks import SplitFile, Task

log = logging.getLogger(__name__)

# GLUE's own readers disable quoting: SST-2 and CoLA sentences contain stray quote characters.
csv.field_size_limit(1 << 24)


def _find_split_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def encode_label(task: Task, raw: str, where: str):
    """Map a raw label cell to a class id (or a float score for regression)."""
    raw = raw.strip()
    if task.kind == "regression":
        try:
            return float(raw)
        except ValueError:
            raise DistillInputError(f"{where}: label {raw!r} is not a number; {task.name} needs a float score") from None
    if raw in task.label_names:
        return task.label_names.index(raw)
    if raw.lstrip("-").isdigit() and 0 <= int(raw) < task.num_labels:
        return int(raw)
    raise DistillInputError(
        f"{where}: label {raw!r} is outside the label set of {task.name} "
        f"({', '.join(task.label_names)} or 0..{task.num_labels - 1}); fix or drop that row"
    )


def read_glue_tsv(task: Task, split: str, path: Path, spec: SplitFile, *, skip_bad_rows: bool = False) -> Examples:
    """Read one classic GLUE TSV (quoting off, header or CoLA's fixed columns)."""
    with open_text(path) as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.header is not None:
            header, first_line = list(spec.header), 1
        else:
            header, first_line = next(rows, None), 2
            if header is None:
                raise DistillInputError(f"{path} is empty; re-download {task.glue_dir} or point --data-dir elsewhere")
        header = [h.strip() for h in header]
        wanted = list(spec.text_columns) + ([spec.label_column] if spec.label_column else [])
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DistillInputError(
                f"{path} has no column(s) {', '.join(map(repr, missing))} (header: {', '.join(header)}); "
                f"it is not a classic GLUE {task.glue_dir} file"
            )
        cols = [header.index(c) for c in spec.text_columns]
        label_col = header.index(spec.label_column) if spec.label_column else None
        index_col = header.index("index") if "index" in header and split.startswith("test") else None
        ids, texts, labels, bad = [], [[] for _ in cols], [], 0
        for lineno, row in enumerate(rows, start=first_line):
            if not row:
                continue
            where = f"{path}:{lineno}"
            problem = None
            if len(row) != len(header):
                problem = f"has {len(row)} columns, expected {len(header)}"
            elif any(not row[c].strip() for c in cols):
                problem = "has an empty text"
            if problem:
                if skip_bad_rows:
                    bad += 1
                    continue
                raise DistillInputError(f"{where} {problem}; fix the row or pass --skip-bad-rows to drop such rows")
            row_id = row[index_col].strip() if index_col is not None else str(len(ids) + bad)
            ids.append(f"{split}-{row_id}")
            for t, c in zip(texts, cols):
                t.append(row[c].strip())
            if label_col is not None:
                labels.append(encode_label(task, row[label_col], where))
    if bad:
        log.warning("%s: dropped %d malformed row(s) (--skip-bad-rows)", path, bad)
    if not ids:
        raise DistillInputError(f"{path} has no examples; re-download {task.glue_dir} or point --data-dir elsewhere")
    return Examples(ids, texts[0], texts[1] if len(texts) > 1 else None, _label_array(task, labels), str(path))


def _label_array(task: Task, labels: list) -> np.ndarray | None:
    if not labels:
        return None
    return np.asarray(labels, dtype=np.float32 if task.kind == "regression" else np.int64)


def _load_hub(task: Task, split: str) -> Examples:
    """Load a split from the Hub with ``datasets``; GLUE's hidden test labels (-1) become None."""
    import datasets  # slow import, only needed here

    spec = task.splits[split]
    path, config = task.hub
    ds = datasets.load_dataset(path, config, split=spec.hub_split)
    fields = task.hub_text_fields
    labels = None
    if spec.label_column is not None and "label" in ds.column_names:
        labels = np.asarray(ds["label"], dtype=np.float32 if task.kind == "regression" else np.int64)
        if task.kind != "regression" and (labels < 0).all():
            labels = None
    rows = ds["idx"] if "idx" in ds.column_names else range(len(ds))
    text_a = [t.strip() for t in ds[fields[0]]]
    text_b = [t.strip() for t in ds[fields[1]]] if len(fields) > 1 else None
    return Examples([f"{split}-{i}" for i in rows], text_a, text_b, labels, f"{path}/{config}:{spec.hub_split}")


def load_glue(task: Task, split: str, data_dir: str | os.PathLike | None, *, skip_bad_rows: bool = False) -> Examples:
    """A GLUE split from a classic glue_data folder, or else the Hub."""
    spec = task.splits[split]
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise DistillInputError(
                f"--data-dir {root} does not exist; point it at a classic glue_data folder "
                f"(containing {task.glue_dir}/) or leave it out to load {task.hub[0]} from the Hub"
            )
        folder = root / task.glue_dir
        # also accept --data-dir pointing at the task folder itself (glue_data/SST-2)
        path = _find_split_file(folder, spec.file) or (None if folder.is_dir() else _find_split_file(root, spec.file))
        if path is None:
            raise DistillInputError(
                f"{folder / spec.file} not found; --data-dir must be a classic glue_data folder "
                f"with {task.glue_dir}/{spec.file}, or leave it out to load {task.hub[0]} from the Hub"
            )
        return read_glue_tsv(task, split, path, spec, skip_bad_rows=skip_bad_rows)
    try:
        return _load_hub(task, split)
    except Exception as exc:  # offline, missing dataset, ...: all end in the same advice
        raise DistillInputError(
            f"no data for {task.name}: --data-dir was not given and the Hub dataset {task.hub[0]} "
            f"({task.hub[1]}) could not be loaded ({type(exc).__name__}); pass --data-dir pointing at a "
            f"classic glue_data folder, or run where the Hub is reachable"
        ) from exc
