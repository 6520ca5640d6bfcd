"""Distillation losses: pure functions of tensors, each with its shapes and its paper.

The student's total loss is ``(1 - alpha) * hard + alpha * soft + beta * hidden`` (see
``distill.student_train``); ``soft_loss`` and ``hard_loss`` pick the right term for a task kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy with gold labels. logits [B, C], labels [B] int64 -> scalar (mean)."""
    return F.cross_entropy(logits, labels)


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network".

    KL(softmax(t/T) || softmax(s/T)) * T², averaged over the batch. The T² keeps the gradient's
    size independent of T (soft-target gradients scale as 1/T²). [B, C], [B, C] -> scalar.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def logits_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks":
    mean squared error between the logits. [B, C], [B, C] -> scalar (mean over B and C)."""
    return F.mse_loss(student_logits, teacher_logits)


def hidden_match(student_vec: torch.Tensor, teacher_vec: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Match the student's (projected) sentence vector to the teacher's pooled embedding.

    The "hint" of FitNets (Romero et al. 2015) at the sentence level, as in DistilBERT's cosine
    loss (Sanh et al. 2019) and TinyBERT's MSE (Jiao et al. 2020). student_vec [B, H] (already
    projected to the teacher width H), teacher_vec [B, H] -> scalar. kind: "cosine" (1 - cos,
    mean) or "mse".
    """
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student_vec, teacher_vec, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(student_vec, teacher_vec)
    raise ValueError(f"unknown hidden loss {kind!r}")


def hard_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gold-label term for a task kind: CE for classification, MSE for regression ([B, 1] vs [B])."""
    if kind == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return hard_ce(logits, labels)


def soft_loss(kind: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float,
              kd_loss: str = "kl") -> torch.Tensor:
    """The teacher term: ``kd_kl`` at T (or ``logits_mse``) for classification, MSE for regression."""
    if kind == "regression" or kd_loss == "mse":
        return logits_mse(student_logits, teacher_logits)
    return kd_kl(student_logits, teacher_logits, temperature)
