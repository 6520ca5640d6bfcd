"""Several teacher runs of one task as one teacher: their materials matched by example id and their
outputs combined into one set of targets — for a student given several ``--materials`` and for the
ensemble run ``distill.teach --ensemble`` writes (materials and metrics of its own).

Combining (Hinton et al. 2015, section 2: an ensemble's soft targets are its members' averaged
distributions): classification averages the members' probabilities softmax(z/T), weighted, and
returns logits whose softmax at T is that average (T * log p, centred per row so they read like
logits); multi-label does the same per label with sigmoids; regression and ranking average the
scores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.errors import DistillInputError
from distill.materials import Materials, TeacherRun, ensemble_sha256, open_teacher_run


def combine_logits(kind: str, logits: list[np.ndarray], weights: list[float], temperature: float) -> np.ndarray:
    """The members' logits [N, C] each, weights summing to 1 -> the ensemble's logits [N, C] (float32)."""
    w = np.asarray(weights, dtype=np.float64)[:, None, None]  # [K, 1, 1]
    z = np.stack([np.asarray(x, dtype=np.float64) for x in logits]) / temperature  # [K, N, C]
    if kind in ("regression", "ranking"):
        return (w * z).sum(0).astype(np.float32) * temperature
    if kind == "multilabel":
        p = np.clip((w / (1.0 + np.exp(-z))).sum(0), 1e-12, 1 - 1e-12)  # mean sigmoid per label
        return (temperature * np.log(p / (1 - p))).astype(np.float32)
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    logp = np.log(np.clip((w * p).sum(0), 1e-30, None))  # [N, C] log of the mean distribution
    return (temperature * (logp - logp.mean(-1, keepdims=True))).astype(np.float32)


def member_rows(first_ids: list[str], member: Materials, where: str) -> np.ndarray:
    """Rows of ``member`` in the order of ``first_ids``; the two id sets must be equal, else one
    sentence naming the first id that differs."""
    pos = {id_: i for i, id_ in enumerate(member.ids)}
    missing = next((i for i in first_ids if i not in pos), None)
    known = set(first_ids)
    extra = next((i for i in member.ids if i not in known), None)
    if missing is not None or extra is not None:
        bad = missing if missing is not None else extra
        raise DistillInputError(f"{where}: split {member.split!r} holds other examples than the first teacher run's "
                                f"(first differing id: {bad!r}); several teachers must be dumped on the same data")
    return np.fromiter((pos[i] for i in first_ids), dtype=np.int64, count=len(first_ids))


@dataclass
class Ensemble:
    """The member runs (the first gives tokenizer, texts, labels and the student's initialisation)
    and their weights, normalised to sum to 1."""

    runs: list[TeacherRun]
    weights: list[float]
    temperature: float = 1.0  # T of the averaged distributions: the student's (--temperature, else the materials')

    @property
    def weights_sha256(self) -> str:
        """The ensemble's identity: the members' weight hashes and weights, in order."""
        return ensemble_sha256([(r.weights_sha256, w) for r, w in zip(self.runs, self.weights)])

    def combine(self, split: str, ids: list[str], first_logits: np.ndarray, kind: str) -> np.ndarray:
        """The ensemble's logits on ``split``, in the row order of ``ids`` (the first run's rows, whose
        logits are ``first_logits``); each other member's materials are read and matched by id."""
        from distill import materials

        logits = [np.asarray(first_logits)]
        for r in self.runs[1:]:
            mat = materials.load(r.root, split, task=r.task.name, teacher_sha256=r.weights_sha256, mmap=True)
            logits.append(np.asarray(mat.logits)[member_rows(ids, mat, f"--materials {r.root}")])
        return combine_logits(kind, logits, self.weights, self.temperature)


def parse_weights(spec: str, n: int) -> list[float]:
    """``--teacher-weights`` "1,2" -> [1/3, 2/3]; "" -> equal weights."""
    if not spec:
        return [1.0 / n] * n
    try:
        w = [float(x) for x in spec.split(",")]
    except ValueError:
        raise DistillInputError(f"--teacher-weights {spec!r}: give one number per teacher run, comma-separated") from None
    if len(w) != n or any(x < 0 for x in w) or sum(w) <= 0:
        raise DistillInputError(f"--teacher-weights {spec!r}: needs {n} non-negative numbers (one per run), not all 0")
    return [x / sum(w) for x in w]


def open_teacher_runs(paths: list[str], task: str | None, weights: str = "") -> TeacherRun:
    """The teacher behind one or several ``--materials``: one run as it is; several as the first run
    with ``ensemble`` set (all of one task and label set, each run's weights checked against its own
    manifest)."""
    runs = [open_teacher_run(p, task) for p in paths]
    if len(runs) == 1:
        if weights:
            raise DistillInputError("--teacher-weights weighs several --materials runs; drop it for one teacher")
        return runs[0]
    first = runs[0]
    for p, r in zip(paths[1:], runs[1:]):
        if r.task.name != first.task.name or r.manifest["label_names"] != first.manifest["label_names"]:
            raise DistillInputError(f"--materials {p} is a {r.task.name} teacher run, {paths[0]} a {first.task.name} one; "
                                    f"an ensemble needs runs of one task")
        if r.manifest["teacher"].get("members") or first.manifest["teacher"].get("members"):
            raise DistillInputError(f"--materials {p if r.manifest['teacher'].get('members') else paths[0]} is itself an "
                                    f"ensemble run; list its member runs instead")
        if Path(r.root).resolve() == Path(first.root).resolve():
            raise DistillInputError(f"--materials {p} is given twice; pass each teacher run once (--teacher-weights weighs them)")
    return dataclasses.replace(first, ensemble=Ensemble(runs, parse_weights(weights, len(runs))))
