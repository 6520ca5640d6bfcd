"""Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks": BiLSTM."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distill.cli import field_docs
from students.base import SiameseStudent, check_embedding_options, masked_max


@field_docs
@dataclass
class BiLSTMConfig:
    embed_dim: int = 0  # word-vector width; 0 = the teacher's (384 for MiniLM). Tang: 300-d word2vec
    hidden: int = 150  # LSTM units per direction (Tang 2019)
    mlp_hidden: int = 200  # ReLU layer of the head (Tang 2019: 200 for SST-2, 400 for pairs)
    dropout: float = 0.2  # on the pooled features and before the output layer
    embedding: str = "sparse"  # sparse | dense | frozen: how the word table trains
    embedding_init: str = "teacher"  # teacher (its word embeddings, PCA-projected if widths differ) | random

    def validate(self) -> None:
        if self.hidden < 1 or self.mlp_hidden < 1 or not 0 <= self.dropout < 1:
            raise ValueError("--hidden and --mlp-hidden must be >= 1, --dropout in [0, 1)")
        check_embedding_options(self.embed_dim, self.embedding)


# Optuna search space (plain data, see distill.tune) around Tang et al. (2019) and the defaults.
SEARCH_SPACE = {
    "lr": {"low": 3e-4, "high": 3e-3, "log": True},
    "alpha": {"low": 0.3, "high": 1.0},
    "temperature": {"choices": [1.0, 2.0, 4.0]},
    "dropout": {"low": 0.0, "high": 0.5},
    "hidden": {"choices": [100, 150, 300]},
    "mlp_hidden": {"choices": [100, 200, 400]},
    "embed_dim": {"choices": [128, 256, 0]},
}


def reverse_within_length(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] 0/1 mask of right-padded rows -> [B, L] gather index that reverses each row's real
    tokens (position t < n -> n-1-t) and leaves its padding where it is."""
    pos = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)  # [1, L]
    n = mask.sum(1, keepdim=True)  # [B, 1]
    return torch.where(pos < n, n - 1 - pos, pos)


class BiLSTM(SiameseStudent):
    arch = "bilstm"

    def __init__(self, cfg: BiLSTMConfig, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool, teacher_width: int):
        super().__init__(cfg, vocab_size=vocab_size, pad_id=pad_id, is_pair=is_pair, teacher_width=teacher_width)
        dim = self.embed_dim
        # Two one-way LSTMs instead of nn.LSTM(bidirectional=True) over a packed sequence: each row is
        # reversed within its own length for the backward pass, which gives the packed result exactly,
        # needs no sort/pack, and exports to ONNX (packed sequences do not).
        self.lstm_fwd = nn.LSTM(dim, cfg.hidden, num_layers=1, batch_first=True)
        self.lstm_bwd = nn.LSTM(dim, cfg.hidden, num_layers=1, batch_first=True)
        self.pooled_dim = (4 if is_pair else 1) * 2 * cfg.hidden
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(self.pooled_dim, cfg.mlp_hidden), nn.ReLU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.mlp_hidden, num_labels))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, 2 * hidden], max-pooled over the real tokens."""
        x = self.embedding(ids)  # [B, L, D]
        fwd, _ = self.lstm_fwd(x)  # right padding never reaches a real position going forwards
        rev = reverse_within_length(mask)  # [B, L] index: real tokens reversed, padding in place
        rows = torch.arange(ids.shape[0], device=ids.device).unsqueeze(1)  # [B, 1]
        bwd, _ = self.lstm_bwd(x[rows, rev])
        bwd = bwd[rows, rev]  # the same permutation undoes itself
        return masked_max(torch.cat([fwd, bwd], dim=-1), mask)  # [B, L, 2H] -> [B, 2H]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved with one nn.LSTM(bidirectional=True) named "lstm"
        for k in [k for k in state_dict if k.startswith(prefix + "lstm.")]:
            name = k[len(prefix) + 5:]
            new = "lstm_bwd." + name.replace("_reverse", "") if name.endswith("_reverse") else "lstm_fwd." + name
            state_dict[prefix + new] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)
