"""Teaching materials: index-aligned teacher outputs keyed by example id, plus a manifest.

Layout (``RUN/materials/``)::

    manifest.json                 task, teacher, tokenizer, temperature, versions, per-split hashes
    <split>/examples.jsonl        {"id", "text_a"[, "text_b"][, "label"][, "group"]} — row i of every array below
    <split>/logits.npy            [N, C] float32 teacher logits
    <split>/soft.npy              [N, C] float32 softmax(logits / T) (sigmoid for multi-label,
                                  the raw score for regression)
    <split>/embeddings.npy        [N, H] float32 the pooled vector the teacher's head reads
    <split>/labels.npy            [N] gold labels (int64 class ids or float32 scores; [N, C] float32 0/1
                                  for multi-label), labelled splits only
    <split>/pairs.npy             [P, 2] int64 ranking gold: rows (less, more) of annotator pairs, where given

Arrays are plain ``.npy``: ``load(..., mmap=True)`` maps them without reading them whole. Readers
match rows to their own data **by id** (``Materials.rows_for``), never by batch order, and
``load`` refuses materials whose task, teacher, ids or texts differ from what the caller expects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill import __version__
from distill.data import Examples, ids_sha256
from distill.errors import DistillInputError
from distill.rundir import atomic_dir, read_json, sha256_file, write_json, write_npy, write_text
from distill.tasks import Task, task_record

FORMAT_VERSION = 1
ARRAYS = ("logits", "soft", "embeddings", "labels", "pairs")


def soft_targets(task: Task, logits: np.ndarray, temperature: float) -> np.ndarray:
    """Teacher targets at temperature T: softmax(z/T) [N, C] (Hinton et al. 2015), sigmoid(z/T) for
    multi-label, and the raw prediction for regression and ranking (a score has no temperature)."""
    z = np.asarray(logits, dtype=np.float64)
    if task.kind in ("regression", "ranking"):
        return z.astype(np.float32)
    if task.kind == "multilabel":
        return (1.0 / (1.0 + np.exp(-z / temperature))).astype(np.float32)
    z = z / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def versions() -> dict[str, str]:
    import torch
    import transformers

    return {"distill": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def base_manifest(task: Task, *, teacher: dict, tokenizer: dict, max_length: int, temperature: float) -> dict:
    """The split-independent part of a manifest; two dumps may share a folder only if these agree."""
    return {"format": FORMAT_VERSION, **task_record(task), "kind": task.kind, "label_names": list(task.label_names),
            "teacher": teacher, "tokenizer": tokenizer, "max_length": max_length, "temperature": temperature}


_IDENTITY = ("format", "task", "kind", "label_names", "teacher", "tokenizer", "max_length", "temperature")


def write_split(mat_dir: str | os.PathLike, base: dict, split: str, examples: Examples,
                logits: np.ndarray, pooled: np.ndarray | None, task: Task) -> dict:
    """Write one split's arrays (into a temp folder, then swapped in) and record it in the manifest.

    If the folder holds materials of another teacher/tokenizer/temperature, those are removed first:
    a manifest never describes arrays from two different teachers.
    """
    mat_dir = Path(mat_dir)
    n = len(examples)
    if logits.shape[0] != n or (pooled is not None and pooled.shape[0] != n):
        raise ValueError(f"{split}: {n} examples but logits {logits.shape} / pooled {None if pooled is None else pooled.shape}")
    manifest = _open_manifest(mat_dir, base)
    arrays = {"logits": logits.astype(np.float32), "soft": soft_targets(task, logits, base["temperature"])}
    if pooled is not None:
        arrays["embeddings"] = pooled.astype(np.float32)
    if examples.labels is not None:
        arrays["labels"] = examples.labels
    if examples.pairs is not None:
        arrays["pairs"] = np.asarray(examples.pairs, dtype=np.int64).reshape(-1, 2)
    with atomic_dir(mat_dir / split) as tmp:
        for name, arr in arrays.items():
            write_npy(tmp / f"{name}.npy", arr)
        write_text(tmp / "examples.jsonl", "\n".join(example_lines(examples)) + "\n")
        files = file_records(tmp)
    manifest["splits"][split] = {
        "n": n, "ids_sha256": ids_sha256(examples.ids), "text_sha256": examples.text_sha256(),
        "labelled": examples.gold is not None, "source": examples.source,
        "arrays": {k: list(v.shape) for k, v in arrays.items()}, "files": files,
    }
    write_json(mat_dir / "manifest.json", manifest)
    return manifest


def example_lines(examples: Examples) -> list[str]:
    """The ``examples.jsonl`` lines of a split (or of one shard of it)."""
    lines = []
    for i, id_ in enumerate(examples.ids):
        row: dict[str, Any] = {"id": id_, "text_a": examples.text_a[i]}
        if examples.text_b is not None:
            row["text_b"] = examples.text_b[i]
        if examples.labels is not None:
            row["label"] = examples.labels[i].tolist()
        if examples.groups is not None:
            row["group"] = examples.groups[i]
        lines.append(json.dumps(row, ensure_ascii=False))
    return lines


def _open_manifest(mat_dir: Path, base: dict) -> dict:
    """The folder's manifest to add a split to; materials of another teacher/tokenizer/temperature
    are removed first, so a manifest never describes arrays of two teachers."""
    manifest = _read_manifest(mat_dir)
    if manifest is not None and any(manifest.get(k) != base[k] for k in _IDENTITY):
        shutil.rmtree(mat_dir)
        manifest = None
    mat_dir.mkdir(parents=True, exist_ok=True)
    return manifest if manifest is not None else {**base, "versions": versions(), "splits": {}}


def splits_replaced(mat_dir: str | os.PathLike, base: dict, dumping: list[str]) -> list[str]:
    """Splits of the folder's manifest that a dump with identity ``base`` (teacher, tokenizer,
    temperature, ...) would remove without re-dumping them: empty when the identity is unchanged."""
    manifest = _read_manifest(Path(mat_dir))
    if manifest is None or all(manifest.get(k) == base[k] for k in _IDENTITY):
        return []
    return [s for s in manifest["splits"] if s not in dumping]


def write_shard(folder: Path, examples: Examples, logits: np.ndarray, pooled: np.ndarray | None, meta: dict) -> None:
    """One shard of a large unlabelled split (``--extra``), written whole or not at all."""
    with atomic_dir(folder) as tmp:
        write_npy(tmp / "logits.npy", logits.astype(np.float32))
        if pooled is not None:
            write_npy(tmp / "embeddings.npy", pooled.astype(np.float32))
        write_text(tmp / "examples.jsonl", "\n".join(example_lines(examples)) + "\n")
        write_json(tmp / "shard.json", {**meta, "n": len(examples)})


def assemble_shards(mat_dir: str | os.PathLike, base: dict, split: str, shards: list[Path], task: Task,
                    source: str) -> dict:
    """Concatenate shard folders into the split's arrays, streaming: each array is a memory-mapped
    .npy filled shard by shard, so the whole split is never in memory. Hashes match ``write_split``'s."""

    mat_dir = Path(mat_dir)
    manifest = _open_manifest(mat_dir, base)
    sizes = [read_json(f / "shard.json")["n"] for f in shards]
    n = sum(sizes)
    first = np.load(shards[0] / "logits.npy", mmap_mode="r")
    has_emb = (shards[0] / "embeddings.npy").is_file()
    width = np.load(shards[0] / "embeddings.npy", mmap_mode="r").shape[1] if has_emb else 0
    ids_h, text_h = hashlib.sha256(), hashlib.sha256()
    with atomic_dir(mat_dir / split) as tmp:
        out = {"logits": np.lib.format.open_memmap(tmp / "logits.npy", "w+", np.float32, (n, first.shape[1])),
               "soft": np.lib.format.open_memmap(tmp / "soft.npy", "w+", np.float32, (n, first.shape[1]))}
        if has_emb:
            out["embeddings"] = np.lib.format.open_memmap(tmp / "embeddings.npy", "w+", np.float32, (n, width))
        row = 0
        with open(tmp / "examples.jsonl", "w", encoding="utf-8") as fh:
            for folder, m in zip(shards, sizes):
                lg = np.load(folder / "logits.npy")
                out["logits"][row : row + m] = lg
                out["soft"][row : row + m] = soft_targets(task, lg, base["temperature"])
                if has_emb:
                    out["embeddings"][row : row + m] = np.load(folder / "embeddings.npy")
                lines = (folder / "examples.jsonl").read_text(encoding="utf-8").splitlines()
                rows = [json.loads(line) for line in lines]
                ids = [r["id"] for r in rows]
                ids_h.update(("\n" if row else "").encode() + "\n".join(ids).encode())  # = ids_sha256 of the whole list
                Examples(ids, [r["text_a"] for r in rows], [r["text_b"] for r in rows] if "text_b" in rows[0] else None,
                         None, "").update_text_hash(text_h)
                fh.write("\n".join(lines) + "\n")
                row += len(rows)
        shapes = {k: list(v.shape) for k, v in out.items()}
        for v in out.values():
            v.flush()
        del out
        files = file_records(tmp)
    manifest["splits"][split] = {"n": n, "ids_sha256": ids_h.hexdigest(), "text_sha256": text_h.hexdigest(),
                                 "labelled": False, "source": source, "arrays": shapes, "shards": len(shards),
                                 "files": files}
    write_json(mat_dir / "manifest.json", manifest)
    return manifest


def _npy_header(path: Path) -> tuple[list[int], str]:
    """(shape, dtype) from a .npy header without reading the data; ValueError if it is no .npy."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version not in readers:
            raise ValueError(f".npy format version {version}")
        shape, _, dtype = readers[version](fh)
    return list(shape), dtype.str


def _record(path: Path, sha256=None) -> dict[str, Any]:
    rec: dict[str, Any] = {"sha256": (sha256 or sha256_file)(path)}
    if path.suffix == ".npy":
        rec["shape"], rec["dtype"] = _npy_header(path)
    return rec


def file_records(folder: Path) -> dict[str, dict]:
    """{file name: {"sha256", and for .npy "shape", "dtype"}} of a split folder, as written."""
    return {f.name: _record(f) for f in sorted(folder.iterdir())}


# Files already checked in this process: (path, size, mtime_ns, inode) -> sha256. Tune trials and
# student seeds load the same split many times; each file is hashed once.
_CHECKED: dict[tuple, str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _CHECKED:
        _CHECKED[key] = sha256_file(path)
    return _CHECKED[key]


# dtype each array must have (labels: class ids or scores)
_DTYPES = {"logits": ("<f4",), "soft": ("<f4",), "embeddings": ("<f4",), "labels": ("<i8", "<f4"), "pairs": ("<i8",)}


def check_split_files(folder: Path, info: dict, manifest_path: Path) -> dict[str, dict]:
    """Compare every file of a split with its manifest record: shape and dtype from each .npy header
    (an object array, which would need unpickling, is refused before it is read), and the sha256
    (once per process). Splits dumped before hashes were recorded get them now (returned, for the
    manifest). Any difference is one DistillInputError naming the file."""
    def damaged(path: Path, what: str) -> DistillInputError:
        return DistillInputError(f"{path} {what}; the materials are damaged or were replaced, re-dump them with "
                                 f"python -m distill.teach --output-dir RUN --dump-only")

    records = info.get("files")
    names = [f"{a}.npy" for a in ARRAYS if (folder / f"{a}.npy").is_file()] + ["examples.jsonl"]
    names += sorted(set(records or ()) - set(names))  # recorded but gone: reported as missing
    for name in names:
        path = folder / name
        if not path.is_file():
            raise damaged(path, "is missing")
        if name.endswith(".npy"):
            try:
                shape, dtype = _npy_header(path)
            except (ValueError, OSError) as exc:
                raise damaged(path, f"is not a readable .npy file ({exc})") from None
            want_dtype = records[name]["dtype"] if records and name in records else None
            if dtype not in _DTYPES[path.stem] or (want_dtype and dtype != want_dtype):
                raise damaged(path, f"holds {dtype} values, expected {want_dtype or ' or '.join(_DTYPES[path.stem])}")
            want_shape = records[name]["shape"] if records and name in records else info.get("arrays", {}).get(path.stem)
            if want_shape is not None and shape != list(want_shape):
                raise damaged(path, f"has shape {shape}, the manifest {manifest_path} says {list(want_shape)}")
            if path.stem != "pairs" and shape[0] != info["n"]:
                raise damaged(path, f"has {shape[0]} rows, the manifest says {info['n']}")
        if records is not None:
            if name not in records:
                raise damaged(path, f"is not recorded in {manifest_path}")
            if _file_sha256(path) != records[name]["sha256"]:
                raise damaged(path, f"differs from the file that was dumped (sha256 {_file_sha256(path)[:12]}…, "
                                    f"recorded {records[name]['sha256'][:12]}…)")
    return records if records is not None else {n: _record(folder / n, _file_sha256) for n in names}


def _read_manifest(mat_dir: Path) -> dict | None:
    path = mat_dir / "manifest.json"
    return read_json(path) if path.is_file() else None


@dataclass
class Materials:
    """One split's teaching materials, row i of every array belonging to ``ids[i]``."""

    split: str
    ids: list[str]
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray | None  # [N] (or [N, C] multi-label) or None
    logits: np.ndarray  # [N, C]
    soft: np.ndarray  # [N, C] targets at manifest["temperature"]
    embeddings: np.ndarray | None  # [N, H]
    manifest: dict
    pairs: np.ndarray | None = None  # [P, 2] ranking gold (rows less, more) or None
    groups: list[str] | None = None  # [N] per-example group (language) or None

    def __len__(self) -> int:
        return len(self.ids)

    def to_examples(self) -> Examples:
        return Examples(self.ids, self.text_a, self.text_b, self.labels, f"materials:{self.split}", self.pairs, self.groups)

    def rows_for(self, ids: list[str]) -> np.ndarray:
        """Row positions of ``ids`` in these materials; refuses ids the teacher never saw."""
        pos = {id_: i for i, id_ in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise DistillInputError(
                f"materials split {self.split!r} has no rows for {len(missing)} id(s) (first: {missing[0]!r}); "
                f"re-dump the teacher's materials for this data"
            )
        return np.fromiter((pos[i] for i in ids), dtype=np.int64, count=len(ids))


def materials_dir(run_dir: str | os.PathLike) -> Path:
    run_dir = Path(run_dir)
    return run_dir if (run_dir / "manifest.json").is_file() else run_dir / "materials"


def load(run_dir: str | os.PathLike, split: str, *, task: str | None = None, teacher_sha256: str | None = None,
         ids: list[str] | None = None, text_sha256: str | None = None, mmap: bool = False) -> Materials:
    """Read one split of a teacher run's materials, checking it is what the caller expects.

    run_dir: a teacher run (``RUN``) or its ``RUN/materials`` folder.
    task / teacher_sha256 / ids / text_sha256: when given, must match the manifest, or a
    DistillInputError names the mismatch and the fix. ``mmap`` maps the arrays read-only.
    """
    mat_dir = materials_dir(run_dir)
    manifest = _read_manifest(mat_dir)
    if manifest is None:
        raise DistillInputError(f"{mat_dir} has no manifest.json; point at a teacher run whose materials were dumped "
                                f"(python -m distill.teach ... or --dump-only)")
    if manifest.get("format") != FORMAT_VERSION:
        raise DistillInputError(f"{mat_dir}/manifest.json has format {manifest.get('format')}, this reader needs "
                                f"{FORMAT_VERSION}; re-dump the materials with this version")
    if task is not None and manifest["task"] != task:
        raise DistillInputError(f"{mat_dir} holds materials for task {manifest['task']!r}, not {task!r}; "
                                f"pass the teacher run of the right task")
    if teacher_sha256 is not None and manifest["teacher"].get("weights_sha256") != teacher_sha256:
        raise DistillInputError(f"{mat_dir} was dumped by a different teacher ({manifest['teacher'].get('name')}, "
                                f"weights {str(manifest['teacher'].get('weights_sha256'))[:12]}…); re-dump with this teacher")
    info = manifest["splits"].get(split)
    if info is None:
        raise DistillInputError(f"{mat_dir} has no complete split {split!r} (it has {', '.join(manifest['splits']) or 'none'}); "
                                f"dump it with python -m distill.teach --output-dir RUN --dump-only")
    if ids is not None and ids_sha256(ids) != info["ids_sha256"]:
        raise DistillInputError(f"{mat_dir}/{split}: the example ids differ from the ones the teacher labelled; "
                                f"re-dump the materials for this data")
    if text_sha256 is not None and text_sha256 != info["text_sha256"]:
        raise DistillInputError(f"{mat_dir}/{split}: the texts differ from the ones the teacher labelled; "
                                f"re-dump the materials for this data")
    folder = mat_dir / split
    files = check_split_files(folder, info, mat_dir / "manifest.json")
    if "files" not in info:  # dumped before hashes were recorded: record them now (best effort)
        manifest["splits"][split]["files"] = files
        with contextlib.suppress(OSError):
            write_json(mat_dir / "manifest.json", manifest)
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        if path.is_file():
            arrays[name] = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    rows = [json.loads(line) for line in (folder / "examples.jsonl").read_text(encoding="utf-8").splitlines() if line]
    if len(rows) != info["n"]:
        raise DistillInputError(f"{folder}/examples.jsonl has {len(rows)} rows, the manifest says {info['n']}; "
                                f"the materials are damaged, re-dump them")
    mat = Materials(
        split=split, ids=[r["id"] for r in rows], text_a=[r["text_a"] for r in rows],
        text_b=[r["text_b"] for r in rows] if rows and "text_b" in rows[0] else None,
        labels=arrays.get("labels"), logits=arrays["logits"], soft=arrays["soft"],
        embeddings=arrays.get("embeddings"), manifest=manifest, pairs=arrays.get("pairs"),
        groups=[r["group"] for r in rows] if rows and "group" in rows[0] else None)
    if ids_sha256(mat.ids) != info["ids_sha256"]:
        raise DistillInputError(f"{folder}/examples.jsonl does not match its manifest; the materials are damaged, re-dump them")
    return mat


def weights_sha256(model_dir: Path) -> str:
    """Hash of a saved model's weight files (safetensors shards), in name order: the teacher's identity
    in a manifest, recomputed from the files whenever materials are used."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    h = hashlib.sha256()
    for f in files:
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def ensemble_sha256(members: list[tuple[str, float]]) -> str:
    """An ensemble's identity from its members' (weights hash, weight), in order."""
    h = hashlib.sha256()
    for sha, w in members:
        h.update(f"{sha}:{w:.6g};".encode())
    return h.hexdigest()


@dataclass
class TeacherRun:
    """What a student needs from a teacher run: its manifest, task, model folder (tokenizer, weights
    for initialisation) and the hash of those weights as computed from the files now."""

    root: Path
    manifest: dict
    task: Task
    model_dir: Path
    weights_sha256: str
    ensemble: Any = None  # distill.ensemble.Ensemble when a student learns from several runs at once

    @property
    def identity(self) -> str:
        """The teacher's hash as a student records it: the run's weights, or the ensemble's."""
        return self.ensemble.weights_sha256 if self.ensemble is not None else self.weights_sha256


def open_teacher_run(path: str, task: str | None) -> TeacherRun:
    """The teacher run behind ``--materials PATH``, its weights checked against the manifest's hash."""
    from distill.tasks import task_from_record

    mat = materials_dir(path)
    if not (mat / "manifest.json").is_file():
        raise DistillInputError(f"--materials {path} holds no teaching materials (no manifest.json); "
                                f"run python -m distill.teach first, or point at its run directory")
    manifest = read_json(mat / "manifest.json")
    if task is not None and manifest["task"] != task:
        raise DistillInputError(f"--materials {path} holds materials for task {manifest['task']!r}, not --task {task!r}; "
                                f"pass the teacher run of the right task")
    root = mat.parent if mat.name == "materials" else mat
    members = manifest["teacher"].get("members")  # an ensemble run (distill.teach --ensemble): its first member's model
    model_dir = Path(members[0]["run"]) / "best" if members else root / "best"
    if not (model_dir / "config.json").is_file():
        raise DistillInputError(f"--materials {path}: the teacher's model folder {model_dir} is missing; "
                                f"students need its tokenizer (re-run distill.teach --dump-only)")
    sha = ensemble_sha256([(weights_sha256(Path(m["run"]) / "best"), m["weight"]) for m in members]) if members \
        else weights_sha256(model_dir)
    if manifest["teacher"].get("weights_sha256") != sha:
        raise DistillInputError(f"--materials {path}: the materials were dumped by a different teacher than {model_dir} "
                                f"(weights {str(manifest['teacher'].get('weights_sha256'))[:12]}… vs {sha[:12]}…); "
                                f"re-dump them with python -m distill.teach --output-dir {root} --dump-only")
    return TeacherRun(root, manifest, task_from_record(manifest), model_dir, sha)


def eval_materials(run_dir: str | Path):
    """The teacher's materials for the task's evaluation split (dev) of a run: a student's come
    from its teacher run, a teacher's from itself."""
    from distill.rundir import resolve_run
    from distill.tasks import task_from_record

    run_dir = resolve_run(run_dir)
    cfg = read_json(run_dir / "config.json")
    task = task_from_record(cfg)
    return load(cfg.get("teacher_run") or run_dir, task.eval_splits[0], task=task.name)
