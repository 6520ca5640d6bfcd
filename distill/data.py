"""Loading task examples: a local classic ``glue_data/`` folder, or the Hub through ``datasets``.

Every example carries a stable id (``<split>-<row>``); teaching materials are keyed by it, so
nothing downstream ever relies on batch order.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.errors import DistillInputError
from distill.jigsaw import KAGGLE, READERS, Holdout
from distill.tasks import SplitFile, Task

log = logging.getLogger(__name__)

# GLUE's own readers disable quoting: SST-2 and CoLA sentences contain stray quote characters.
csv.field_size_limit(1 << 24)


@dataclass
class Examples:
    """Index-aligned examples of one split."""

    ids: list[str]  # stable ids, "<split>-<row>"
    text_a: list[str]  # first (or only) text
    text_b: list[str] | None  # second text for pair tasks
    labels: np.ndarray | None  # [N] int64 class ids, [N] float32 scores (regression), [N, C] float32 0/1 (multi-label); None if unlabelled
    source: str  # where the texts came from (file path or hub name), for error messages
    pairs: np.ndarray | None = None  # ranking gold: [P, 2] int64 rows (less, more) of annotator pairs
    groups: list[str] | None = None  # a group per example (the language in Jigsaw 2020), for per-group metrics

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def gold(self) -> np.ndarray | None:
        """What the task's metrics score against: the labels, or for ranking the annotator pairs."""
        return self.labels if self.labels is not None else self.pairs

    def select(self, n: int) -> "Examples":
        """The first n examples (used by --max-train-samples); pairs that reach past n are dropped."""
        pairs = None if self.pairs is None else self.pairs[(self.pairs < n).all(1)]
        return Examples(self.ids[:n], self.text_a[:n], None if self.text_b is None else self.text_b[:n],
                        None if self.labels is None else self.labels[:n], self.source, pairs,
                        None if self.groups is None else self.groups[:n])

    def text_sha256(self) -> str:
        """Hash of ids and texts: materials record it, readers compare it."""
        return self.update_text_hash(hashlib.sha256()).hexdigest()

    def update_text_hash(self, h):
        """Feed ids and texts into ``h``; chunk after chunk gives the hash of the whole split."""
        for i, a in enumerate(self.text_a):
            h.update(self.ids[i].encode())
            h.update(b"\x00" + a.encode())
            if self.text_b is not None:
                h.update(b"\x00" + self.text_b[i].encode())
            h.update(b"\x01")
        return h


def ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@contextlib.contextmanager
def open_text(path: Path):
    """``with open_text(path) as fh``: UTF-8 text (a leading BOM dropped, as MRPC's header has one;
    .gz read through gzip). Bytes that are not UTF-8, read anywhere in the ``with`` block, become one
    sentence naming the file and the fix; a gzip name on a file that is not gzip likewise."""
    path = Path(path)
    try:
        with (io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="") if path.suffix == ".gz"
              else open(path, encoding="utf-8-sig", newline="")) as fh:
            yield fh
    except UnicodeDecodeError as exc:
        raise DistillInputError(
            f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} cannot be decoded); convert it first, e.g. "
            f"iconv -f latin1 -t utf-8 {path} > {path.with_suffix('.utf8' + path.suffix).name}") from None
    except gzip.BadGzipFile:
        raise DistillInputError(f"{path} is named .gz but is not gzip data; rename or re-compress it") from None



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


def load_split(task: Task, split: str, data_dir: str | os.PathLike | None, *, skip_bad_rows: bool = False,
               holdout: Holdout | None = None) -> Examples:
    """Examples of one split, from ``data_dir`` (a classic glue_data folder; Kaggle's files for the
    Jigsaw tasks) or else the Hub. ``holdout`` says how tasks without a dev file carve one out of train.

    Raises DistillInputError with both options named when neither source is usable.
    """
    if split not in task.splits:
        raise DistillInputError(f"task {task.name} has no split {split!r}; it has {', '.join(task.splits)}")
    if task.loader != "glue":
        return _load_jigsaw(task, split, data_dir, skip_bad_rows, holdout or Holdout())
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


def _load_jigsaw(task: Task, split: str, data_dir, skip_bad_rows: bool, holdout: Holdout) -> Examples:
    holdout.validate()
    if data_dir is None:
        raise DistillInputError(f"{task.name} reads Kaggle's files: pass --data-dir with the competition data "
                                f"(download it from {KAGGLE[task.loader]}); there is no Hub copy to fall back to")
    root = Path(data_dir)
    if not root.exists():
        raise DistillInputError(f"--data-dir {root} does not exist; point it at the {task.name} files from {KAGGLE[task.loader]}")
    r = READERS[task.loader](split, root, holdout, skip_bad_rows)
    if not r.ids:
        raise DistillInputError(f"{r.source}: split {split} of {task.name} is empty; check the file or --valid-fraction")
    if len(set(r.ids)) != len(r.ids):
        raise DistillInputError(f"{r.source} has duplicate ids in split {split}; use the original Kaggle file")
    return Examples(r.ids, r.texts, None, r.labels, r.source, r.pairs, r.groups)


TEXT_COLUMN_CANDIDATES = ("text", "sentence", "comment_text", "sentence1", "question1", "question", "#1 String")


def iter_text_file(path: str | os.PathLike, *, split: str, pair: bool = False,
                   text_columns: tuple[str, ...] | None = None, chunk: int = 0):
    """Stream a text file as ``Examples`` of at most ``chunk`` rows (0 = one chunk of everything);
    the same formats and checks as ``read_text_file``, never more than a chunk in memory."""
    path = Path(path)
    if not path.is_file():
        raise DistillInputError(f"input file {path} not found; pass an existing .tsv/.csv with a text column or a .txt with one text per line")
    suffixes = [s.lower() for s in path.suffixes]
    kind = next((s for s in reversed(suffixes) if s in (".tsv", ".csv")), None)
    if kind is None and pair:
        raise DistillInputError(f"{path} is one text per line but this task reads sentence pairs; give a .tsv with two text columns")
    ids, text_a, text_b = [], [], []
    seen_ids: set[str] | None = None  # row-number ids are unique by construction; file ids are checked
    n = 0

    def flush():
        out = Examples(ids[:], text_a[:], text_b[:] if pair else None, None, str(path))
        ids.clear(), text_a.clear(), text_b.clear()
        return out

    with open_text(path) as fh:
        if kind is None:
            rows = ((lineno, None, [line.rstrip("\r\n")]) for lineno, line in enumerate(fh, start=1))
        else:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if kind == ".tsv" else csv.reader(fh)  # CSV (Kaggle) quotes multi-line comments
            header = [h.strip() for h in next(reader, [])]
            cols = _pick_text_columns(header, pair, text_columns, path)
            id_col = next((header.index(c) for c in ("id", "index", "comment_id") if c in header), None)
            seen_ids = set() if id_col is not None else None

            def table_rows():
                for lineno, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) < len(header):
                        raise DistillInputError(f"{path}:{lineno} has {len(row)} columns, expected {len(header)}; fix the row")
                    yield lineno, (row[id_col].strip() if id_col is not None else None), [row[c] for c in cols]

            rows = table_rows()
        for lineno, row_id, texts in rows:
            texts = [t.strip() for t in texts]
            if not all(texts):
                what = "is an empty line; remove it (one text per line)" if kind is None else "has an empty text; remove or fill that row"
                raise DistillInputError(f"{path}:{lineno} {what}")
            id_ = f"{split}-{row_id if row_id is not None else n}"
            if seen_ids is not None:
                if id_ in seen_ids:
                    raise DistillInputError(f"{path} has duplicate ids ({row_id!r}); make its id column unique or drop it")
                seen_ids.add(id_)
            ids.append(id_)
            text_a.append(texts[0])
            if pair:
                text_b.append(texts[1])
            n += 1
            if chunk and len(ids) >= chunk:
                yield flush()
    if ids:
        yield flush()
    elif not n:
        raise DistillInputError(f"{path} contains no texts; give a file with at least one")


def read_text_file(path: str | os.PathLike, *, split: str, pair: bool = False,
                   text_columns: tuple[str, ...] | None = None) -> Examples:
    """Unlabelled texts for prediction or an extra materials split.

    ``.tsv``/``.csv`` (optionally ``.gz``) need a header with a text column (``text``, ``sentence``,
    … or the task's own names); any other file is one text per line. Pair tasks need two columns.
    """
    return next(iter_text_file(path, split=split, pair=pair, text_columns=text_columns))


def _pick_text_columns(header, pair, text_columns, path) -> list[int]:
    if text_columns and all(c in header for c in text_columns[: 2 if pair else 1]):
        return [header.index(c) for c in text_columns[: 2 if pair else 1]]
    if pair:
        for a, b in (("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"),
                     ("#1 String", "#2 String"), ("text_a", "text_b")):
            if a in header and b in header:
                return [header.index(a), header.index(b)]
        raise DistillInputError(f"{path} needs two text columns for a pair task (e.g. sentence1, sentence2); its header is {', '.join(header)}")
    for c in TEXT_COLUMN_CANDIDATES:
        if c in header:
            return [header.index(c)]
    raise DistillInputError(
        f"{path} has no text column (looked for {', '.join(TEXT_COLUMN_CANDIDATES)}); its header is "
        f"{', '.join(header)}; rename the column or give a .txt with one text per line"
    )
