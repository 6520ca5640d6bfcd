"""Any dataset without code: local CSV / TSV / JSONL files, or a ``datasets`` dataset (a Hub name, or
a local folder in the Hub's layout: train.csv, validation.csv, ...), with the text and label columns
named by flags.

``generic_task`` reads the train split once, checks the columns and infers what the flags leave
out — the kind, the label set, the metric — and returns a ``Task`` like the built-in ones (a run
records it whole: ``distill.tasks.task_record``). ``load_generic`` reads one split as ``Examples``,
ids ``<split>-<row>`` (or the dataset's ``idx``) exactly as the GLUE reader numbers them, so a GLUE
task given as a CSV gives the built-in task's ids and materials. Every file is read through
``datasets`` (pandas for CSV/TSV, pyarrow for JSON), the same reader as a Hub dataset.
"""

from __future__ import annotations

import csv
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.data.examples import Examples
from distill.errors import DistillInputError
from distill.tasks import TASKS, SplitFile, Task

log = logging.getLogger(__name__)

KINDS = ("classification", "regression", "multilabel")
DEFAULT_METRICS = {"classification": ("accuracy",), "regression": ("pearson", "spearman"), "multilabel": ("auc",)}
METRIC_KINDS = {"accuracy": ("classification",), "f1": ("classification",), "mcc": ("classification",),
                "pearson": ("regression",), "spearman": ("regression",), "auc": ("classification", "multilabel")}
HUB_SPLITS = {"train": ("train",), "dev": ("validation", "dev", "valid"), "test": ("test",)}  # our name: the dataset's


@dataclass(frozen=True)
class GenericSpec:
    """The flags that define a task without code (see ``distill teach --help``)."""

    name: str
    train_file: str = ""
    dev_file: str = ""
    test_file: str = ""
    dataset: str = ""
    dataset_config: str = ""
    text_columns: tuple[str, ...] = ()
    label_column: str = ""  # comma-separated: several 0/1 columns of a multi-label task
    kind: str = ""
    metrics: tuple[str, ...] = ()

    @property
    def label_columns(self) -> list[str]:
        return [c.strip() for c in self.label_column.split(",") if c.strip()]


def generic_task(spec: GenericSpec) -> Task:
    """The Task the flags define, checked against the train split (read once per process)."""
    _check_flags(spec)
    return _generic_task(spec)


def _check_flags(spec: GenericSpec) -> None:
    if spec.name in TASKS:
        raise DistillInputError(f"--task {spec.name} names a built-in task; with --train-file / --dataset give your "
                                f"task its own name, e.g. --task my-{spec.name}")
    if bool(spec.train_file) == bool(spec.dataset):
        raise DistillInputError("give your task's data either as files (--train-file, --dev-file) or as --dataset, not both")
    if spec.dataset and (spec.dev_file or spec.test_file):
        raise DistillInputError("--dev-file / --test-file go with --train-file; a --dataset brings its own splits")
    if spec.train_file and not spec.dev_file:
        raise DistillInputError("--dev-file is missing: the teacher keeps its best evaluation on dev; pass a labelled dev file")
    if not 1 <= len(spec.text_columns) <= 2:
        raise DistillInputError("--text-columns must name one text column, or two for sentence pairs")
    if not spec.label_columns:
        raise DistillInputError("--label-column is missing: name the gold label column (several, comma-separated, for multi-label)")
    if spec.kind and spec.kind not in KINDS:
        raise DistillInputError(f"--task-kind must be one of {', '.join(KINDS)}")
    for m in spec.metrics:
        if m not in METRIC_KINDS:
            raise DistillInputError(f"--metrics {m}: choose from {', '.join(METRIC_KINDS)}")


@functools.lru_cache(maxsize=8)
def _generic_task(spec: GenericSpec) -> Task:
    if spec.dataset:
        names = _dataset_splits(spec)
        hub_split = {ours: next((s for s in theirs if s in names), None) for ours, theirs in HUB_SPLITS.items()}
        if not hub_split["train"] or not hub_split["dev"]:
            raise DistillInputError(f"--dataset {spec.dataset} has splits {', '.join(names)}; it needs a train and a "
                                    f"validation (or dev) split")
        splits = {ours: SplitFile("", spec.text_columns, spec.label_column, None, s) for ours, s in hub_split.items() if s}
        hub = (spec.dataset, spec.dataset_config)
    else:
        files = {"train": spec.train_file, "dev": spec.dev_file, "test": spec.test_file}
        splits = {s: SplitFile(str(Path(f).resolve()), spec.text_columns, spec.label_column) for s, f in files.items() if f}
        hub = None
    draft = Task(spec.name, spec.kind or "classification", (), (), hub=hub, hub_text_fields=tuple(spec.text_columns),
                 splits=splits, loader="generic")
    train = _read(draft, "train")
    kind, label_names, how = _infer_labels(spec, train, draft.splits["train"].file or f"--dataset {spec.dataset}")
    metrics = tuple(spec.metrics) or DEFAULT_METRICS[kind]
    for m in metrics:
        if kind not in METRIC_KINDS[m] or (m == "f1" and len(label_names) != 2):
            raise DistillInputError(f"--metrics {m} does not fit a {kind} task with {len(label_names)} label(s); "
                                    f"try {', '.join(DEFAULT_METRICS[kind])}")
    task = Task(spec.name, kind, label_names, metrics, hub=hub, hub_text_fields=tuple(spec.text_columns), splits=splits,
                loader="generic")
    log.info("task %s: %s (%s), labels %s, metrics %s (%s)", spec.name, kind, how, ", ".join(label_names),
             ", ".join(metrics), "--metrics" if spec.metrics else "default for the kind")
    return task


def _dataset_splits(spec: GenericSpec) -> list[str]:
    import datasets

    try:
        return list(datasets.get_dataset_split_names(spec.dataset, spec.dataset_config or None))
    except Exception as exc:  # offline, unknown name, no such config: one advice
        raise DistillInputError(f"--dataset {spec.dataset} could not be read ({type(exc).__name__}: {str(exc)[:160]}); "
                                f"a Hub name needs the network, or give a local folder / --train-file") from exc


def _infer_labels(spec: GenericSpec, train, source: str) -> tuple[str, tuple[str, ...], str]:
    """(kind, label names, how the kind was chosen) from the train split's label column(s)."""
    import datasets

    cols = spec.label_columns
    if spec.kind == "multilabel" or len(cols) > 1:
        return "multilabel", tuple(cols), "--task-kind" if spec.kind else "several label columns"
    col = cols[0]
    feature = train.features[col]
    if isinstance(feature, datasets.ClassLabel) and spec.kind in ("", "classification"):
        return "classification", tuple(feature.names), "the dataset's class names"
    values = [v for v in train[col] if v is not None]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if spec.kind == "regression" or (not spec.kind and numeric and any(float(v) != int(v) for v in values)):
        if not numeric:
            raise DistillInputError(f"{source}: --task-kind regression needs numbers in label column {col!r}, found {values[0]!r}")
        return "regression", ("score",), "--task-kind" if spec.kind else "non-integer labels"
    if not spec.kind and numeric:
        lo, hi = min(values), max(values)
        raise DistillInputError(f"{source}: label column {col!r} holds integers ({lo}..{hi}), which could be classes or "
                                f"scores; pass --task-kind classification or --task-kind regression")
    names = tuple(str(v) for v in sorted(set(values)))  # class i = the i-th smallest value (0..K-1 stay themselves)
    return "classification", names, "--task-kind" if spec.kind else "text labels"


def _file_reader(path: Path) -> tuple[str, dict]:
    """(datasets builder, its options) for a local file, by its suffix (.gz allowed)."""
    suffix = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    # texts as written: no NA guessing ("null", "NA" are words here); TSV unquoted, as GLUE's readers read it
    options = {".csv": ("csv", {"na_filter": False}),
               ".tsv": ("csv", {"sep": "\t", "quoting": csv.QUOTE_NONE, "na_filter": False}),
               ".jsonl": ("json", {}), ".json": ("json", {})}
    if suffix.lower() not in options:
        raise DistillInputError(f"{path}: unknown file type {suffix!r}; give a .csv, .tsv or .jsonl file (optionally .gz)")
    return options[suffix.lower()]


def read_table(path: Path, what: str = ""):
    """A local .csv / .tsv / .jsonl file as a ``datasets.Dataset`` (``what``: the flag that named it)."""
    import datasets

    if not path.is_file():
        raise DistillInputError(f"{path}{f' ({what})' if what else ''} not found")
    builder, options = _file_reader(path)
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as exc:  # a malformed file: pandas / pyarrow name the line
        raise DistillInputError(f"{path} could not be read as {builder} ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _read(task: Task, split: str):
    """One split as a ``datasets.Dataset``."""
    import datasets

    spec = task.splits[split]
    if task.hub is None:
        return read_table(Path(spec.file), f"--{split}-file")
    name, config = task.hub
    return datasets.load_dataset(name, config or None, split=spec.hub_split)


def load_generic(task: Task, split: str, *, skip_bad_rows: bool = False) -> Examples:
    """Examples of one split of a task defined by flags."""
    ds = _read(task, split)
    spec = task.splits[split]
    source = spec.file or f"{task.hub[0]}:{spec.hub_split}"
    label_cols = [c.strip() for c in spec.label_column.split(",")]
    has_labels = all(c in ds.column_names for c in label_cols)
    wanted = list(spec.text_columns) + (label_cols if split != "test" or has_labels else [])
    for c in wanted:
        if c not in ds.column_names:
            flag = "--text-columns" if c in spec.text_columns else "--label-column"
            raise DistillInputError(f"{source} has no column {c!r} ({flag}); its columns are: {', '.join(ds.column_names)}")
    texts = [list(ds[c]) for c in spec.text_columns]  # plain lists: indexed row by row below
    rows = list(ds["idx"]) if "idx" in ds.column_names else list(range(len(ds)))
    empty = [i for i in range(len(ds)) if not all(isinstance(t[i], str) and t[i].strip() for t in texts)]
    if empty and not skip_bad_rows:
        raise DistillInputError(f"{source}: row {empty[0]} has an empty text; fix it or pass --skip-bad-rows to drop such rows")
    if empty:
        log.warning("%s: dropped %d row(s) with an empty text (--skip-bad-rows)", source, len(empty))
    keep = sorted(set(range(len(ds))) - set(empty))
    labels = _labels(task, ds, label_cols, keep, source) if has_labels else None
    return Examples([f"{split}-{rows[i]}" for i in keep], [texts[0][i].strip() for i in keep],
                    [texts[1][i].strip() for i in keep] if len(texts) > 1 else None, labels, source)


def _labels(task: Task, ds, cols: list[str], keep: list[int], source: str) -> np.ndarray | None:
    """[N] class ids / [N] float32 scores / [N, C] 0/1 float32; None for a test split whose labels are hidden (-1)."""
    if task.kind == "multilabel":
        y = np.asarray([ds[c] for c in cols], dtype=np.float32).T[keep]
        if not np.isin(y, (0.0, 1.0)).all():
            raise DistillInputError(f"{source}: multi-label columns {', '.join(cols)} must hold 0/1 values")
        return y
    column = list(ds[cols[0]])  # once, not per row
    raw = [column[i] for i in keep]
    if task.kind == "regression":
        return np.asarray(raw, dtype=np.float32)
    import datasets

    if isinstance(ds.features[cols[0]], datasets.ClassLabel):
        y = np.asarray(raw, dtype=np.int64)
        return None if (y < 0).all() else y  # GLUE's hidden test labels
    index = {name: i for i, name in enumerate(task.label_names)}
    unknown = next((v for v in raw if str(v) not in index), None)
    if unknown is not None:
        raise DistillInputError(f"{source}: label {unknown!r} is not among the train split's labels "
                                f"({', '.join(task.label_names)}); fix or drop that row")
    return np.asarray([index[str(v)] for v in raw], dtype=np.int64)
