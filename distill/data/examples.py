"""A split's examples, index-aligned and keyed by a stable id (``<split>-<row>``): teaching
materials are keyed by it, so nothing downstream relies on batch order. And ``open_text``, the one
way every reader opens a text file."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.errors import DistillInputError


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
