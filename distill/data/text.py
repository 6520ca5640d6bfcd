"""Unlabelled texts from a file, for prediction and extra materials splits: .tsv/.csv with a text
column (optionally .gz), or one text per line; streamed in chunks for large transfer sets."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from distill.data.examples import Examples, open_text
from distill.errors import DistillInputError


TEXT_COLUMN_CANDIDATES = ("text", "sentence", "comment_text", "sentence1", "question1", "question", "#1 String")


def iter_text_file(path: str | os.PathLike, *, split: str, pair: bool = False,  # noqa: PLR0915 - one streaming pass: format, header and row checks share the open file
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
