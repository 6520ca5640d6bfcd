"""A run directory is the API: atomic JSON/array writes and an append-only JSONL log."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from distill.errors import DistillInputError


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (mkstemp's own 0o600 would hide
    every output from the user's colleagues)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``. The temp file is
    named before it is created, inside the ``try``: a SIGTERM (raised as SystemExit) at any point finds
    a name to remove, where mkstemp's file exists a few bytecodes before its name is returned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"  # 64 random bits: no retry loop
    try:
        with open(tmp, "xb") as fh:  # "x": never an existing file; mode 0o666 less the umask
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except FileExistsError:
        raise  # another file of the same random name: not ours to remove
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode()
    _atomic(Path(path), lambda fh: fh.write(data))


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic(Path(path), lambda fh: fh.write(data))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a .npy atomically; np.load(path, mmap_mode="r") maps it without reading it all."""
    _atomic(Path(path), lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def load_weights(path: str | os.PathLike, fix: str = "re-create it, or point at another run") -> dict:
    """A .safetensors file's tensors; a damaged or truncated file is one sentence naming it and ``fix``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except SafetensorError as exc:
        raise DistillInputError(f"{path} is not a readable safetensors file ({exc}); {fix}") from None


def sha256_file(path: str | os.PathLike) -> str:
    """A file's sha256, read in 4 MiB blocks (an 800k-row embeddings array is never in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


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

    def __init__(self, path: str | os.PathLike, enabled: bool = True, sinks: tuple = ()):
        self.path = Path(path)
        self.enabled = enabled
        self.sinks = sinks  # also told every event, e.g. distill.tracking.Trackers
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=_json_default)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        for sink in self.sinks:
            sink(event, **fields)


LOCK_NAME = ".lock"


def holds_run(run_dir: Path) -> bool:
    """Whether a folder holds anything besides a writer's lock file."""
    return run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir())


def clear_run(run_dir: Path) -> None:
    """Empty a run directory for --overwrite, keeping the caller's lock file."""
    for p in run_dir.iterdir():
        if p.name != LOCK_NAME:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


@contextmanager
def run_lock(run_dir: str | os.PathLike, flag: str = "--output-dir"):
    """Hold an exclusive advisory lock on ``run_dir`` (``RUN/.lock``, with the holder's pid) for the
    ``with`` block: a second writer is refused at once with one sentence. The kernel drops the lock
    when the holder exits in any way (kill -9 included), so a dead holder never blocks a re-run.
    A folder this call created and nothing else wrote to is removed again on the way out."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, file_mode())
    except (NotADirectoryError, FileExistsError):
        raise DistillInputError(f"{flag} {run_dir} is an existing file, not a folder; choose another {flag}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DistillInputError(f"{flag} {run_dir} is being written by another distill process (pid {holder}); "
                                f"wait for it to finish or choose another {flag}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        yield run_dir
    finally:
        if created and not holds_run(run_dir):
            with contextlib.suppress(OSError):
                shutil.rmtree(run_dir)
        os.close(fd)  # releases the lock


def resolve_run(run_dir: str | Path) -> Path:
    """The run directory that holds a model: ``run_dir`` itself, or for a ``--seeds`` run the seed
    with the best dev metric."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise DistillInputError(f"{run_dir} has no config.json; pass a run directory written by distill.teach or distill.student")
    cfg = read_json(cfg_path)
    if cfg.get("kind") != "student-seeds":
        return run_dir
    seeds = sorted(run_dir.glob("seed-*/metrics.json"))
    if not seeds:
        raise DistillInputError(f"{run_dir} holds no finished seed run; finish it with python -m distill.student --output-dir {run_dir} --resume")
    from distill.tasks import task_from_record

    task = task_from_record(cfg)

    def score(f):  # the task metric on dev; the teacher agreement where dev has no gold (ranking by scores)
        dev = read_json(f).get(task.eval_splits[0], {})
        return dev.get(task.primary_metric, dev.get("teacher_agreement", float("-inf")))

    return max(seeds, key=score).parent
