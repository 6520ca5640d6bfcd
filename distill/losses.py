"""Distillation losses: pure functions of tensors, each with its shapes and its paper.

The student's total loss is ``(1 - alpha) * hard + alpha * soft + beta * hidden`` (see
``student_objective``); ``soft_loss`` and ``hard_loss`` pick the right term for a task kind.
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


def kd_sigmoid_bce(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-label KD: binary cross entropy of sigmoid(s/T) against the teacher's soft probabilities
    sigmoid(t/T), times T² — Hinton et al. (2015) applied per label (each sigmoid is a 2-way softmax
    over [z, 0]); the loss TextBrewer's issue #50 asks for. [B, C], [B, C] -> scalar (mean over B and C)."""
    t = temperature
    return F.binary_cross_entropy_with_logits(student_logits / t, torch.sigmoid(teacher_logits / t)) * (t * t)


def rank_kd(student_scores: torch.Tensor, teacher_scores: torch.Tensor) -> torch.Tensor:
    """Ranking KD: RankNet's logistic pairwise loss (Burges et al. 2005, "Learning to Rank using
    Gradient Descent") over every in-batch pair the teacher orders, log(1 + exp(-(s_i - s_j))) for
    t_i > t_j, so the student orders pairs as the teacher does. [B, 1] or [B], same -> scalar (mean
    over ordered pairs; 0 when the teacher ties every pair)."""
    s, t = student_scores.reshape(-1), teacher_scores.reshape(-1)
    ahead = t[:, None] > t[None, :]  # [B, B] pairs (i, j) with t_i > t_j
    if not ahead.any():
        return s.sum() * 0.0
    return F.softplus(-(s[:, None] - s[None, :])[ahead]).mean()


def multilabel_bce(logits: torch.Tensor, labels: torch.Tensor, *, smoothing: float = 0.0, aux_weight: float = 1.0,
                   pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """The multi-label teacher's loss: BCE over C sigmoid outputs, the first label the main one and
    the others auxiliary (weighted ``aux_weight``), targets smoothed to y(1-ε) + ε/2 (Szegedy et al.
    2016) — the recipe of the Jigsaw multilingual kernels — and positives of label c weighted
    ``pos_weight[c]`` (rare labels). logits [B, C], labels [B, C] 0/1, pos_weight [C] or None ->
    scalar: the weighted mean per label cell."""
    y = labels.float() * (1 - smoothing) + smoothing / 2
    w = torch.full((logits.shape[-1],), aux_weight, device=logits.device, dtype=torch.float32)
    w[0] = 1.0
    cell = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none", pos_weight=pos_weight)  # [B, C]
    return (cell * w).sum() / (w.sum() * logits.shape[0])


def pair_margin(more: torch.Tensor, less: torch.Tensor, margin: float) -> torch.Tensor:
    """Margin ranking loss on annotator pairs (Jigsaw 2022's severity teachers): max(0, margin -
    (s_more - s_less)), mean over pairs. [P], [P] -> scalar."""
    return F.margin_ranking_loss(more, less, torch.ones_like(more), margin=margin)


def hard_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gold-label term for a task kind: CE for classification, MSE for regression ([B, 1] vs [B]),
    BCE for multi-label ([B, C] vs 0/1 [B, C])."""
    if kind == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float())
    if kind == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return hard_ce(logits, labels)


def soft_loss(kind: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float,
              kd_loss: str = "kl") -> torch.Tensor:
    """The teacher term: ``kd_kl`` at T (or ``logits_mse``) for classification, ``kd_sigmoid_bce``
    at T for multi-label, MSE for regression, ``rank_kd`` + MSE on the scores for ranking."""
    if kind == "ranking":
        return rank_kd(student_logits, teacher_logits) + logits_mse(student_logits, teacher_logits)
    if kind == "regression" or kd_loss == "mse":
        return logits_mse(student_logits, teacher_logits)
    if kind == "multilabel":
        return kd_sigmoid_bce(student_logits, teacher_logits, temperature)
    return kd_kl(student_logits, teacher_logits, temperature)


def student_objective(kind: str, logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      gold: torch.Tensor | None, *, alpha: float, beta: float, temperature: float, kd_loss: str = "kl",
                      projected: torch.Tensor | None = None, teacher_vec: torch.Tensor | None = None,
                      hidden_loss: str = "cosine") -> dict[str, torch.Tensor]:
    """Every term of the student's loss and their mix, as in torchtune's KD recipe: hard (gold
    labels, only on rows with one), soft (the teacher's logits, ``soft_loss``) and hidden (the
    projected sentence vector against the teacher's pooled one, ``hidden_match``).

    logits, teacher_logits [B, C]; labels [B] (or [B, C] multi-label) or None when the split has
    none; gold [B] bool rows with a gold label (transfer-set rows have none) or None = all;
    projected, teacher_vec [B, H] or None (no hidden term). Returns {"hard", "soft", "hidden",
    "total"}, scalars; a term that does not apply is 0.
    """
    zero = logits.new_zeros(())
    if labels is None or alpha == 1 or (gold is not None and not gold.any()):
        hard = zero
    else:
        hard = hard_loss(kind, logits, labels) if gold is None else hard_loss(kind, logits[gold], labels[gold])
    soft = soft_loss(kind, logits, teacher_logits, temperature=temperature, kd_loss=kd_loss) if alpha > 0 else zero
    hidden = hidden_match(projected, teacher_vec, hidden_loss) if projected is not None else zero
    total = (1 - alpha) * hard + alpha * soft + beta * hidden
    return {"hard": hard, "soft": soft, "hidden": hidden, "total": total}
