"""Task metrics, computed with scikit-learn and scipy (GLUE's definitions)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from distill.tasks import Task


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    """Logits [N, C] -> predicted class ids [N] (or scores [N] for regression)."""
    if task.kind == "regression":
        return logits.reshape(-1)
    if task.kind == "multilabel":
        return (logits > 0).astype(np.int64)
    return logits.argmax(-1)


def compute(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics for logits [N, C] against gold labels [N]; every value a plain float."""
    preds = predictions(task, np.asarray(logits))
    labels = np.asarray(labels)
    fns = {
        "accuracy": lambda: accuracy_score(labels, preds),
        "f1": lambda: f1_score(labels, preds),
        "mcc": lambda: matthews_corrcoef(labels, preds),
        "pearson": lambda: pearsonr(preds, labels)[0],
        "spearman": lambda: spearmanr(preds, labels)[0],
    }
    return {name: float(fns[name]()) for name in task.metrics}
