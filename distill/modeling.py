"""The one model-output contract shared by every teacher and every student."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """What every teacher and student forward returns.

    logits: [B, C] class scores (C = 1 for regression, one column per label for multi-label).
    pooled: [B, H] the sentence vector the head reads (teacher: the input of its classifier,
            i.e. BERT's pooled [CLS]); None when a model has no such vector.
    """

    logits: torch.Tensor
    pooled: torch.Tensor | None = None


# How a BERT-style teacher turns token states into the sentence vector its head reads:
# "cls" is BERT's pooled [CLS]; "mean" is sentence-transformers' masked mean; "auto" is the teacher's own.
POOLINGS = ("auto", "cls", "mean")
