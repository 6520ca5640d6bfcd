"""A run directory is the API: atomic JSON/array writes and an append-only JSONL log."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode()
    _atomic(Path(path), lambda fh: fh.write(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    _atomic(Path(path), lambda fh: fh.write(text.encode()))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a .npy atomically; np.load(path, mmap_mode="r") maps it without reading it all."""
    _atomic(Path(path), lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written folder ``tmp`` into place at ``final`` (two renames, never half a folder)."""
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def atomic_dir(final: str | os.PathLike):
    """``with atomic_dir(RUN/x) as tmp:`` write into ``tmp``; on success it replaces ``final`` whole
    (a crash leaves the old folder, never half a new one); on an error ``tmp`` is removed."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class JsonlLog:
    """Append-only event log (``RUN/log.jsonl``): one JSON object a line, flushed per event.
    ``enabled=False`` (every process but rank 0 of a multi-process job) writes nothing."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=_json_default)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
