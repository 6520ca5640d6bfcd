"""Task metrics, computed with scikit-learn and scipy (GLUE's and Kaggle's definitions)."""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

from distill.errors import DistillInputError
from distill.tasks import Task

log = logging.getLogger(__name__)


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """Logits [N, C] -> predicted class ids [N], label sets [N, C] (multi-label, logit > 0) or
    scores [N] (regression, ranking)."""
    if task.kind in ("regression", "ranking"):
        return logits.reshape(-1)
    if task.kind == "multilabel":
        return (logits > 0).astype(np.int64)
    return logits.argmax(-1)


def pair_agreement(scores: np.ndarray, pairs: np.ndarray) -> float:
    """Jigsaw 2022's metric: the share of annotator pairs (less, more) — rows into ``scores`` [N] —
    where score(more) > score(less) strictly (a tie counts as a miss)."""
    pairs = np.asarray(pairs).reshape(-1, 2)
    return float((scores[pairs[:, 1]] > scores[pairs[:, 0]]).mean())


def concordance(scores: np.ndarray, reference: np.ndarray, n_pairs: int = 10_000, seed: int = 0) -> float:
    """Pairwise concordance of ``scores`` with ``reference`` (both [N]): over ``n_pairs`` random
    pairs (i, j), i != j, with reference_i != reference_j — all such pairs when there are fewer —
    the share that ``scores`` orders the same way (a tie in ``scores`` counts as a miss)."""
    s, r = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(reference, dtype=np.float64).reshape(-1)
    n = len(s)
    if n < 2:
        return float("nan")
    if n * (n - 1) // 2 <= n_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=n_pairs)
        j = (i + rng.integers(1, n, size=n_pairs)) % n  # uniform over j != i
    dr = np.sign(r[i] - r[j])
    keep = dr != 0
    return float((np.sign(s[i] - s[j])[keep] == dr[keep]).mean()) if keep.any() else float("nan")


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, or None when y holds one class only (AUC is undefined there)."""
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else None


def auc_metrics(task: Task, logits: np.ndarray, labels: np.ndarray, groups: list[str] | None = None) -> dict[str, float]:
    """{"auc": mean column-wise ROC AUC (Kaggle 2018) or the positive class's AUC, "auc_<label>" per
    label (multi-label), "auc_<group>" per group (Jigsaw 2020 languages)}. Columns or groups with a
    single class are left out of the mean (and logged); none scorable is an input error."""
    if task.kind == "multilabel":
        scores, y = logits, np.asarray(labels)
    else:  # binary: the logit margin of the positive class ranks like its softmax probability
        other = 1 - task.positive
        scores, y = (logits[:, task.positive] - logits[:, other])[:, None], (np.asarray(labels) == task.positive)[:, None]
    out: dict[str, float] = {}
    per_label = {name: _auc(y[:, k], scores[:, k]) for k, name in enumerate(task.label_names[: y.shape[1]])} \
        if task.kind == "multilabel" else {"": _auc(y[:, 0], scores[:, 0])}
    scored = {k: v for k, v in per_label.items() if v is not None}
    if not scored:
        raise DistillInputError(f"ROC AUC is undefined: every label has one class only in these {len(y)} examples; "
                                f"use a larger split (--valid-fraction)")
    if len(scored) < len(per_label):
        log.warning("AUC: label(s) %s have one class only here and are left out of the mean",
                    ", ".join(sorted(set(per_label) - set(scored))))
    out["auc"] = float(np.mean(list(scored.values())))
    if task.kind == "multilabel":
        out.update({f"auc_{k}": v for k, v in scored.items()})
    if groups is not None:
        g = np.asarray(groups)
        for name in sorted(set(groups)):
            rows = g == name
            aucs = [a for a in (_auc(y[rows, k], scores[rows, k]) for k in range(y.shape[1])) if a is not None]
            if aucs:
                out[f"auc_{name}"] = float(np.mean(aucs))
    return out


def compute(task: Task, logits: np.ndarray, gold: np.ndarray, groups: list[str] | None = None) -> dict[str, float]:
    """The task's metrics for logits [N, C] against ``gold`` — labels [N] / [N, C], or for ranking
    the annotator pairs [P, 2] — and, for AUC and accuracy, per ``groups`` [N]; every value a plain float."""
    logits = np.asarray(logits)
    preds = predictions(task, logits)
    gold = np.asarray(gold)
    out: dict[str, float] = {}
    fns = {
        "accuracy": lambda: accuracy_score(gold, preds),
        "f1": lambda: f1_score(gold, preds),
        "mcc": lambda: matthews_corrcoef(gold, preds),
        "pearson": lambda: pearsonr(preds, gold)[0],
        "spearman": lambda: spearmanr(preds, gold)[0],
        "pair_agreement": lambda: pair_agreement(preds, gold),
    }
    for name in task.metrics:
        if name == "auc":
            out.update(auc_metrics(task, logits, gold, groups))
        else:
            out[name] = float(fns[name]())
            if name == "accuracy" and groups is not None:  # XNLI: per language too
                g = np.asarray(groups)
                out.update({f"accuracy_{lang}": float(accuracy_score(gold[g == lang], preds[g == lang]))
                            for lang in sorted(set(groups))})
    return out
