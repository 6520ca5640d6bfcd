"""The task table: every task the suite knows, as plain data.

A task says where its examples come from (classic ``glue_data/`` TSV columns, or a Hub
dataset), whether it reads one text or a pair, what kind of head it needs and how it is
scored. ``kind`` is the extension point: GLUE uses ``classification`` and ``regression``;
Jigsaw adds ``multilabel`` and ``ranking`` without changing anything that reads a Task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from distill.errors import DistillInputError

Kind = Literal["classification", "regression", "multilabel", "ranking"]


@dataclass(frozen=True)
class SplitFile:
    """One split of a task in the classic GLUE layout."""

    file: str  # file name inside glue_data/<Task>/, e.g. "dev.tsv" (".gz" also accepted)
    text_columns: tuple[str, ...]  # header names of the text column(s)
    label_column: str | None  # header name of the gold label; None for unlabelled test splits
    header: tuple[str, ...] | None = None  # column names for header-less files (CoLA)
    hub_split: str | None = None  # the matching split of the Hub dataset


@dataclass(frozen=True)
class Task:
    """A task: data source, inputs, head and metrics."""

    name: str  # CLI name, e.g. "sst2"
    kind: Kind  # head and loss family: classification (softmax), regression (one score), multilabel (sigmoids), ranking (one score ordered by pairs)
    label_names: tuple[str, ...]  # index order of the logits; ("score",) for regression
    metrics: tuple[str, ...]  # names from distill.metrics; the first one selects checkpoints (auc also reports auc_<label> / auc_<lang>)
    glue_dir: str | None = None  # folder name under a classic glue_data/, e.g. "SST-2"
    hub: tuple[str, str] | None = None  # (path, config) for datasets.load_dataset
    hub_text_fields: tuple[str, ...] = ()  # text fields in the Hub dataset
    splits: dict[str, SplitFile] = field(default_factory=dict)
    loader: str = "glue"  # reader in distill.data: glue (TSV / Hub), jigsaw2018 | jigsaw2022 | jigsaw2020 (Kaggle CSVs), or generic (files / a datasets dataset named by flags)
    positive: int = 1  # classification: the label whose probability ROC AUC scores (binary tasks)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.hub_text_fields or next(iter(self.splits.values())).text_columns) == 2

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Labelled held-out splits scored after every epoch (dev, or MNLI's two devs)."""
        return tuple(s for s in self.splits if s.startswith("dev"))


def _glue(name, glue_dir, kind, labels, metrics, texts, label_col, hub_texts, *, test_texts=None,
          header=None, test_header=None, dev_names=("dev",), test_names=("test",), hub_cfg=None):
    """Build a GLUE task entry; GLUE's test files drop the label and sometimes rename columns."""
    splits = {"train": SplitFile("train.tsv", texts, label_col, header, "train")}
    for dev in dev_names:
        hub_split = "validation" + dev[3:]  # dev -> validation, dev_matched -> validation_matched
        splits[dev] = SplitFile(f"{dev}.tsv", texts, label_col, header, hub_split)
    for test in test_names:
        splits[test] = SplitFile(f"{test}.tsv", test_texts or texts, None, test_header, test)
    return Task(name, kind, labels, metrics, glue_dir, ("nyu-mll/glue", hub_cfg or name), hub_texts, splits)


# Label orders follow the Hub's GLUE (nyu-mll/glue) so local TSVs and the Hub give the same ids.
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _glue("cola", "CoLA", "classification", ("unacceptable", "acceptable"), ("mcc", "accuracy"),
              ("sentence",), "label", ("sentence",),
              header=("source", "label", "orig_label", "sentence")),
        _glue("sst2", "SST-2", "classification", ("negative", "positive"), ("accuracy",),
              ("sentence",), "label", ("sentence",)),
        _glue("mrpc", "MRPC", "classification", ("not_equivalent", "equivalent"), ("f1", "accuracy"),
              ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2")),
        _glue("stsb", "STS-B", "regression", ("score",), ("pearson", "spearman"),
              ("sentence1", "sentence2"), "score", ("sentence1", "sentence2")),
        _glue("qqp", "QQP", "classification", ("not_duplicate", "duplicate"), ("f1", "accuracy"),
              ("question1", "question2"), "is_duplicate", ("question1", "question2")),
        _glue("mnli", "MNLI", "classification", ("entailment", "neutral", "contradiction"), ("accuracy",),
              ("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis"),
              dev_names=("dev_matched", "dev_mismatched"), test_names=("test_matched", "test_mismatched")),
        _glue("qnli", "QNLI", "classification", ("entailment", "not_entailment"), ("accuracy",),
              ("question", "sentence"), "label", ("question", "sentence")),
        _glue("rte", "RTE", "classification", ("entailment", "not_entailment"), ("accuracy",),
              ("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
        _glue("wnli", "WNLI", "classification", ("not_entailment", "entailment"), ("accuracy",),
              ("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
    ]
}


def _jigsaw(name, loader, kind, labels, metrics, splits) -> Task:
    """A Jigsaw task: Kaggle CSVs only (the Hub has no copy that loads offline or without terms)."""
    return Task(name, kind, labels, metrics, splits={s: SplitFile(f, (col,), lab) for s, (f, col, lab) in splits.items()},
                loader=loader)


# Jigsaw: the three Kaggle competitions (files and schemas in distill.data.jigsaw). Dev splits that Kaggle
# does not ship are held out of train (--valid-fraction / --folds).
TASKS.update({
    t.name: t
    for t in [
        _jigsaw("jigsaw-toxic", "jigsaw2018", "multilabel",
                ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"), ("auc",),
                {"train": ("train.csv", "comment_text", "toxic"), "dev": ("train.csv", "comment_text", "toxic"),
                 "test": ("test.csv", "comment_text", "toxic")}),
        # one score per comment; gold = annotator pairs (less_toxic, more_toxic); "comments" = comments_to_score.csv
        _jigsaw("jigsaw-severity", "jigsaw2022", "ranking", ("score",), ("pair_agreement",),
                {"train": ("validation_data.csv", "text", None), "dev": ("validation_data.csv", "text", None),
                 "comments": ("comments_to_score.csv", "text", None)}),
        _jigsaw("jigsaw-multilingual", "jigsaw2020", "classification", ("non_toxic", "toxic"), ("auc",),
                {"train": ("jigsaw-toxic-comment-train.csv", "comment_text", "toxic"),
                 "dev": ("validation.csv", "comment_text", "toxic"), "test": ("test.csv", "content", None)}),
    ]
})


# XNLI (distill.data.xnli): the 15-language dev/test files of XNLI-1.0 and XNLI-MT-1.0's translated
# MultiNLI training files; labels in the Hub's order; accuracy also per language (the rows' groups)
TASKS["xnli"] = Task("xnli", "classification", ("entailment", "neutral", "contradiction"), ("accuracy",),
                     hub=("facebook/xnli", "<lang>"), hub_text_fields=("premise", "hypothesis"), loader="xnli",
                     splits={"train": SplitFile("multinli.train.<lang>.tsv", ("premise", "hypo"), "label", None, "train"),
                             "dev": SplitFile("xnli.dev.tsv", ("sentence1", "sentence2"), "gold_label", None, "validation"),
                             "test": SplitFile("xnli.test.tsv", ("sentence1", "sentence2"), "gold_label", None, "test")})


def get_task(name: str) -> Task:
    """Look a task up by its CLI name; unknown names get a DistillInputError listing the known ones."""
    try:
        return TASKS[name.lower()]
    except KeyError:
        raise DistillInputError(
            f"unknown task {name!r} (--task): choose one of {', '.join(sorted(TASKS))}"
        ) from None


# ---- tasks defined by flags (any CSV/TSV/JSONL files or `datasets` dataset; distill.data.generic) ----


def is_builtin(task: Task) -> bool:
    return TASKS.get(task.name) is task


def task_record(task: Task) -> dict:
    """What a run directory records about its task: the name, and for a task defined by flags its
    whole definition (``task_spec``), so every later command rebuilds it without the flags."""
    if is_builtin(task):
        return {"task": task.name}
    spec = asdict(task)
    spec["splits"] = {k: asdict(v) for k, v in task.splits.items()}
    return {"task": task.name, "task_spec": spec}


def task_from_record(record: dict) -> Task:
    """The Task of a run record (config.json, a materials manifest, student.json): ``task_spec`` if
    the run's task was defined by flags, else the built-in task of that name."""
    spec = record.get("task_spec")
    if not spec:
        return get_task(record["task"])
    tuples = lambda d, keys: {k: (tuple(v) if k in keys and v is not None else v) for k, v in d.items()}  # noqa: E731
    splits = {k: SplitFile(**tuples(v, ("text_columns", "header"))) for k, v in spec["splits"].items()}
    fields = tuples({k: v for k, v in spec.items() if k != "splits"}, ("label_names", "metrics", "hub", "hub_text_fields"))
    return Task(**fields, splits=splits)
