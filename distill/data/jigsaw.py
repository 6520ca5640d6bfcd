"""Readers for the three Jigsaw toxic-comment competitions, in Kaggle's own file schemas.

* 2018 Toxic Comment Classification (``jigsaw-toxic``, multi-label): ``train.csv``
  (``id,comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate``), ``test.csv`` +
  ``test_labels.csv`` (rows labelled -1 were never scored and are dropped). A single CSV with the
  train columns and an optional ``dataset`` column (``train``/``test``) also works (the
  2,000-row sample in ``../shared/data/jigsaw/toxic-2018-sample``).
* 2022 Rate Severity (``jigsaw-severity``, ranking): ``comments_to_score.csv`` (``comment_id,text``)
  and, when present, ``validation_data.csv`` (``worker,less_toxic,more_toxic``: annotator pairs).
* 2020 Multilingual (``jigsaw-multilingual``, binary with a ``lang`` per row):
  ``jigsaw-toxic-comment-train.csv`` (2018 schema), ``validation.csv``
  (``id,comment_text,lang,toxic``), ``test.csv`` (``id,content,lang``) + optional ``test_labels.csv``.

A dev split that Kaggle does not ship is carved out of train by ``Holdout`` (a seeded,
stratified fraction or one fold of K), so a run's splits are fixed by its flags alone. csv's
default quoting is on: Kaggle's CSVs quote multi-line comments.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.data.examples import Examples, open_text
from distill.data.holdout import Holdout, connected_groups
from distill.errors import DistillInputError
from distill.tasks import Task

log = logging.getLogger(__name__)

LABELS_2018 = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
KAGGLE = {
    "jigsaw2018": "https://www.kaggle.com/c/jigsaw-toxic-comment-classification-challenge/data",
    "jigsaw2022": "https://www.kaggle.com/c/jigsaw-toxic-severity-rating/data",
    "jigsaw2020": "https://www.kaggle.com/c/jigsaw-multilingual-toxic-comment-classification/data",
}


# ---------------------------------------------------------------------------------------- csv


def read_csv(path: Path, required: tuple[str, ...], what: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a Kaggle CSV, refusing a missing file, missing columns or ragged rows."""
    if not path.is_file():
        raise DistillInputError(f"{path} not found; {what}")
    with open_text(path) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise DistillInputError(f"{path} has no column(s) {', '.join(missing)} (header: {', '.join(header) or 'empty'}); "
                                    f"it is not the Kaggle file ({what})")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DistillInputError(f"{path}: row {len(rows) + 1} (line {reader.line_num}) has {len(row)} columns, "
                                        f"expected {len(header)}; fix the file or re-download it")
            rows.append(row)
    if not rows:
        raise DistillInputError(f"{path} has no rows; {what}")
    return header, rows


def _texts(path: Path, rows, col: int, skip_bad_rows: bool) -> list[int]:
    """Indices of rows with a non-empty text; an empty one is an error unless skipped."""
    keep = []
    for i, r in enumerate(rows):
        if r[col].strip():
            keep.append(i)
        elif not skip_bad_rows:
            raise DistillInputError(f"{path}: row {i + 1} has an empty text; fix it or pass --skip-bad-rows")
    if len(keep) < len(rows):
        log.warning("%s: dropped %d row(s) with an empty text (--skip-bad-rows)", path, len(rows) - len(keep))
    return keep


def _binary(path: Path, value: str, row: int, allow_unscored: bool = False) -> float:
    v = value.strip()
    try:
        x = float(v)
    except ValueError:
        x = None
    if x == -1 and allow_unscored:
        return -1.0
    if x is None or not 0 <= x <= 1:
        raise DistillInputError(f"{path}: row {row} has label {value!r}; labels must be 0 or 1"
                                + (" (or -1 for unscored)" if allow_unscored else ""))
    return float(x >= 0.5)  # the 2020 unintended-bias file has fractions of raters: toxic when >= half


@dataclass
class Rows:
    """Parsed rows of one split before they become ``distill.data.Examples``."""

    ids: list[str]
    texts: list[str]
    labels: np.ndarray | None = None  # [N, C] float32 (multi-label) or [N] int64
    pairs: np.ndarray | None = None  # [P, 2] int64 rows (less toxic, more toxic)
    groups: list[str] | None = None  # language per row
    source: str = ""


# ------------------------------------------------------------------------------- 2018 (multi-label)


def rarest_label(labels: np.ndarray) -> np.ndarray:
    """Stratum per row of a [N, C] 0/1 matrix: its rarest positive label (C when none), so a
    stratified holdout spreads even a label with a dozen positives (threat) over train and dev."""
    counts = labels.sum(0)
    order = np.argsort(counts, kind="stable")  # rarest first
    out = np.full(len(labels), labels.shape[1], dtype=np.int64)
    for k in order[::-1]:  # commonest first, so the rarest label a row has is written last
        out[labels[:, k] > 0] = k
    return out


def _find_2018(root: Path) -> tuple[str, Path]:
    if root.is_file():
        return "single", root
    if (root / "train.csv").is_file():
        return "kaggle", root / "train.csv"
    singles = [p for p in sorted(root.glob("*.csv")) if _has_columns(p, ("comment_text", *LABELS_2018))]
    if len(singles) == 1:
        return "single", singles[0]
    raise DistillInputError(f"--data-dir {root} has no Kaggle train.csv (nor one CSV with the columns id, comment_text, "
                            f"{', '.join(LABELS_2018)}); download the competition data from {KAGGLE['jigsaw2018']}")


def _has_columns(path: Path, cols) -> bool:
    with open_text(path) as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    return all(c in header for c in cols)


def read_2018(split: str, root: Path, holdout: Holdout, skip_bad_rows: bool = False) -> Rows:
    """train / dev (held out of train) / test of the 2018 challenge, labels [N, 6] float32."""
    layout, path = _find_2018(root)
    need = ("id", "comment_text", *LABELS_2018)
    if split == "test" and layout == "kaggle":
        return _read_2018_kaggle_test(root, skip_bad_rows)
    header, rows = read_csv(path, need, f"the 2018 schema is {', '.join(need)}")
    c = {h: i for i, h in enumerate(header)}
    keep = _texts(path, rows, c["comment_text"], skip_bad_rows)
    if layout == "single" and "dataset" in c:
        sets = {rows[i][c["dataset"]].strip() for i in keep}
        if not sets <= {"train", "test"}:
            raise DistillInputError(f"{path}: column dataset holds {sorted(sets)}; it may only say train or test")
        keep = [i for i in keep if (rows[i][c["dataset"]].strip() == "test") == (split == "test")]
    elif split == "test":  # a single CSV without a dataset column has no test split
        raise DistillInputError(f"{path} has no test rows (no dataset column); use Kaggle's test.csv + test_labels.csv "
                                f"or leave test out (--splits train dev)")
    labels = np.array([[_binary(path, rows[i][c[n]], i + 1) for n in LABELS_2018] for i in keep], dtype=np.float32)
    if split in ("train", "dev"):
        dev = holdout.dev_mask(len(keep), strata=rarest_label(labels))
        sel = np.flatnonzero(dev if split == "dev" else ~dev)
        keep, labels = [keep[i] for i in sel], labels[sel]
    return Rows([f"{split}-{rows[i][c['id']].strip()}" for i in keep], [rows[i][c["comment_text"]].strip() for i in keep],
                labels, source=str(path))


def _read_2018_kaggle_test(root: Path, skip_bad_rows: bool) -> Rows:
    path = root / "test.csv"
    header, rows = read_csv(path, ("id", "comment_text"), "Kaggle's test.csv has id, comment_text")
    c = {h: i for i, h in enumerate(header)}
    keep = _texts(path, rows, c["comment_text"], skip_bad_rows)
    ids = [rows[i][c["id"]].strip() for i in keep]
    texts = [rows[i][c["comment_text"]].strip() for i in keep]
    lab_path = root / "test_labels.csv"
    if not lab_path.is_file():
        log.info("%s not found: test is unlabelled", lab_path)
        return Rows([f"test-{i}" for i in ids], texts, None, source=str(path))
    lh, lrows = read_csv(lab_path, ("id", *LABELS_2018), "Kaggle's test_labels.csv has id and the six labels")
    lc = {h: i for i, h in enumerate(lh)}
    by_id = {r[lc["id"]].strip(): [_binary(lab_path, r[lc[n]], k + 1, allow_unscored=True) for n in LABELS_2018]
             for k, r in enumerate(lrows)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DistillInputError(f"{lab_path} has no labels for {len(missing)} test id(s) (first {missing[0]}); "
                                f"use the test_labels.csv that belongs to this test.csv")
    scored = [k for k, i in enumerate(ids) if -1 not in by_id[i]]  # -1: not used for scoring by Kaggle
    log.info("%s: %d of %d test rows are scored", lab_path, len(scored), len(ids))
    return Rows([f"test-{ids[k]}" for k in scored], [texts[k] for k in scored],
                np.array([by_id[ids[k]] for k in scored], dtype=np.float32), source=str(path))


# ------------------------------------------------------------------------------- 2022 (ranking)


def text_id(text: str) -> str:
    """A stable id for a comment known only by its text (validation_data.csv has no ids)."""
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def read_pairs(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(workers, less_toxic, more_toxic) of a 2022 ``validation_data.csv``; a malformed file (other
    columns, ragged rows, an empty text, a pair of one comment with itself) is refused."""
    header, rows = read_csv(path, ("worker", "less_toxic", "more_toxic"),
                            "validation_data.csv has the columns worker, less_toxic, more_toxic")
    c = {h: i for i, h in enumerate(header)}
    workers, less, more = [], [], []
    for k, r in enumerate(rows, start=1):
        a, b = r[c["less_toxic"]].strip(), r[c["more_toxic"]].strip()
        if not a or not b:
            raise DistillInputError(f"{path}: pair {k} has an empty comment; fix or drop that row")
        if a == b:
            raise DistillInputError(f"{path}: pair {k} compares a comment with itself; fix or drop that row")
        workers.append(r[c["worker"]].strip())
        less.append(a)
        more.append(b)
    return workers, less, more


def read_2022(split: str, root: Path, holdout: Holdout, skip_bad_rows: bool = False) -> Rows:
    """``comments``: every row of comments_to_score.csv. ``train``/``dev``: with validation_data.csv,
    its unique comments, split by groups of comments linked through pairs (so no comment and no
    pair sits on both sides), with the annotator pairs as gold; without it, a comment-level split of
    comments_to_score.csv with no gold (students learn the teacher's scores)."""
    what = f"the 2022 files are comments_to_score.csv (comment_id, text) and validation_data.csv; see {KAGGLE['jigsaw2022']}"
    if root.is_file() or not root.is_dir():
        raise DistillInputError(f"--data-dir {root} must be a folder with comments_to_score.csv [and validation_data.csv]; {what}")
    pairs_file = root / "validation_data.csv"
    if split == "comments" or not pairs_file.is_file():
        path = root / "comments_to_score.csv"
        header, rows = read_csv(path, ("comment_id", "text"), what)
        c = {h: i for i, h in enumerate(header)}
        keep = _texts(path, rows, c["text"], skip_bad_rows)
        ids = [rows[i][c["comment_id"]].strip() for i in keep]
        if len(set(ids)) != len(ids):
            raise DistillInputError(f"{path} has duplicate comment_id values; use the original file")
        if split != "comments":
            dev = holdout.dev_mask(len(keep))
            keep = [k for k, d in zip(keep, dev) if d == (split == "dev")]
            ids = [rows[i][c["comment_id"]].strip() for i in keep]
        return Rows([f"{split}-{i}" for i in ids], [rows[i][c["text"]].strip() for i in keep], source=str(path))
    _, less, more = read_pairs(pairs_file)
    texts = list(dict.fromkeys(t for pair in zip(less, more) for t in pair))  # unique, first-seen order
    index = {t: i for i, t in enumerate(texts)}
    # comments joined by any pair form one group, and groups stay whole: no comment (and no pair) on both sides
    groups = connected_groups(len(texts), [(index[a], index[b]) for a, b in zip(less, more)])
    dev = holdout.dev_groups(groups)
    mine = [t for t, d in zip(texts, dev) if d == (split == "dev")]
    row = {t: i for i, t in enumerate(mine)}
    kept = [(row[a], row[b]) for a, b in zip(less, more) if a in row]  # b is on the same side (same group)
    log.info("%s %s: %d comments, %d pairs (%d linked groups in all, the largest %d comments)", pairs_file, split,
             len(mine), len(kept), len(np.unique(groups)), np.bincount(np.unique(groups, return_inverse=True)[1]).max())
    if not kept:
        raise DistillInputError(f"{pairs_file}: the {split} side has no annotator pair; give more pairs or change --valid-fraction")
    return Rows([f"{split}-{text_id(t)}" for t in mine], mine, pairs=np.array(kept, dtype=np.int64).reshape(-1, 2),
                source=str(pairs_file))


# ------------------------------------------------------------------------------- 2020 (multilingual)


def read_2020(split: str, root: Path, holdout: Holdout, skip_bad_rows: bool = False) -> Rows:
    """train (English, 2018 schema, lang "en"), dev (validation.csv), test (test.csv [+ test_labels.csv]);
    labels [N] int64 toxic 0/1, groups = the ``lang`` column."""
    what = f"the 2020 files are jigsaw-toxic-comment-train.csv, validation.csv, test.csv; see {KAGGLE['jigsaw2020']}"
    if not root.is_dir():
        raise DistillInputError(f"--data-dir {root} must be the folder of the 2020 competition files; {what}")
    if split == "train":
        path = root / "jigsaw-toxic-comment-train.csv"
        header, rows = read_csv(path, ("id", "comment_text", "toxic"), what)
        c = {h: i for i, h in enumerate(header)}
        lang = None
        text_col = c["comment_text"]
    elif split == "dev":
        path = root / "validation.csv"
        header, rows = read_csv(path, ("id", "comment_text", "lang", "toxic"), what)
        c = {h: i for i, h in enumerate(header)}
        lang, text_col = c["lang"], c["comment_text"]
    else:
        path = root / "test.csv"
        header, rows = read_csv(path, ("id", "content", "lang"), what)
        c = {h: i for i, h in enumerate(header)}
        lang, text_col = c["lang"], c["content"]
    keep = _texts(path, rows, text_col, skip_bad_rows)
    ids = [rows[i][c["id"]].strip() for i in keep]
    groups = [rows[i][lang].strip() if lang is not None else "en" for i in keep]
    labels = None
    if "toxic" in c:
        labels = np.array([_binary(path, rows[i][c["toxic"]], i + 1) for i in keep], dtype=np.int64)
    elif (root / "test_labels.csv").is_file():
        lab_path = root / "test_labels.csv"
        lh, lrows = read_csv(lab_path, ("id", "toxic"), "test_labels.csv has id, toxic")
        by_id = {r[lh.index("id")].strip(): r[lh.index("toxic")] for r in lrows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise DistillInputError(f"{lab_path} has no label for test id {missing[0]}; use the file that belongs to test.csv")
        labels = np.array([_binary(lab_path, by_id[i], k + 1) for k, i in enumerate(ids)], dtype=np.int64)
    return Rows([f"{split}-{i}" for i in ids], [rows[i][text_col].strip() for i in keep], labels, groups=groups,
                source=str(path))


READERS = {"jigsaw2018": read_2018, "jigsaw2022": read_2022, "jigsaw2020": read_2020}


def load_jigsaw(task: Task, split: str, data_dir, skip_bad_rows: bool, holdout: Holdout) -> Examples:
    """A Jigsaw split from Kaggle's files (``READERS``), its dev carved out by ``holdout`` where Kaggle has none."""
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
