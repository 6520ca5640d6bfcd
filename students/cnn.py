"""Kim (2014), "Convolutional Neural Networks for Sentence Classification": TextCNN."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distill.cli import field_docs
from students.base import SiameseStudent, check_embedding_options


@field_docs
@dataclass
class CNNConfig:
    embed_dim: int = 0  # word-vector width; 0 = the teacher's (384 for MiniLM: no projection). Kim: 300
    filter_sizes: tuple[int, ...] = (3, 4, 5)  # n-gram widths of the filters (Kim 2014)
    num_filters: int = 100  # feature maps per width (Kim 2014)
    dropout: float = 0.5  # on the pooled features (Kim 2014)
    embedding: str = "sparse"  # sparse | dense | frozen: how the word table trains
    embedding_init: str = "teacher"  # teacher (its word embeddings, PCA-projected if widths differ) | random

    def validate(self) -> None:
        if not self.filter_sizes or min(self.filter_sizes) < 1:
            raise ValueError("--filter-sizes must be positive widths, e.g. 3,4,5")
        if self.num_filters < 1 or not 0 <= self.dropout < 1:
            raise ValueError("--num-filters must be >= 1, --dropout in [0, 1)")
        check_embedding_options(self.embed_dim, self.embedding)


# Optuna search space (plain data, see distill.tune): training knobs and this arch's options.
# Ranges around Kim (2014) and the defaults; a smaller embed_dim is the main speed lever.
SEARCH_SPACE = {
    "lr": {"low": 3e-4, "high": 3e-3, "log": True},
    "alpha": {"low": 0.3, "high": 1.0},
    "temperature": {"choices": [1.0, 2.0, 4.0]},
    "dropout": {"low": 0.2, "high": 0.6},
    "num_filters": {"choices": [64, 100, 150, 200]},
    "embed_dim": {"choices": [128, 256, 0]},
    "embedding": {"choices": ["sparse", "frozen"]},
}


class TextCNN(SiameseStudent):
    arch = "cnn"

    def __init__(self, cfg: CNNConfig, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool, teacher_width: int):
        super().__init__(cfg, vocab_size=vocab_size, pad_id=pad_id, is_pair=is_pair, teacher_width=teacher_width)
        self.convs = nn.ModuleList(nn.Conv1d(self.embed_dim, cfg.num_filters, k) for k in cfg.filter_sizes)
        self.dropout = nn.Dropout(cfg.dropout)
        feat = cfg.num_filters * len(cfg.filter_sizes)
        self.pooled_dim = 4 * feat if is_pair else feat
        self.classifier = nn.Linear(self.pooled_dim, num_labels)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, filters * widths] max-over-time features."""
        # zero the padding (the teacher's [PAD] vector is not zero), then k_max-1 zero columns so every
        # width has a window even for a 1-token sentence; unconditional, so ONNX export keeps it
        x = (self.embedding(ids) * mask.unsqueeze(-1).to(self.embedding.weight.dtype)).transpose(1, 2)  # [B, D, L]
        x = F.pad(x, (0, max(self.cfg.filter_sizes) - 1))  # [B, D, L + k_max - 1]
        lengths = mask.sum(1, keepdim=True)  # [B, 1]
        feats = []
        for conv, k in zip(self.convs, self.cfg.filter_sizes):
            h = conv(x)  # [B, F, L + k_max - k]
            # windows that start inside the sentence (at least one per sentence): padding-invariant
            pos = torch.arange(h.shape[2], device=ids.device)[None, :]
            valid = pos < (lengths - k + 1).clamp(min=1)  # [B, L']
            feats.append(h.masked_fill(~valid.unsqueeze(1), torch.finfo(h.dtype).min).amax(dim=2))  # [B, F]
        return F.relu(torch.cat(feats, dim=-1))  # relu after the max: the same value, on [B, F*widths] only

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))
