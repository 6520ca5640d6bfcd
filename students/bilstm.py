"""Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks": BiLSTM."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from distill.cli import field_docs
from distill.modeling import ModelOutput
from students.base import EMBEDDING_MODES, Student, make_embedding, masked_max, pair_features


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
        if self.hidden < 1 or self.mlp_hidden < 1 or self.embed_dim < 0 or not 0 <= self.dropout < 1:
            raise ValueError("--hidden and --mlp-hidden must be >= 1, --embed-dim >= 0, --dropout in [0, 1)")
        if self.embedding not in EMBEDDING_MODES:
            raise ValueError(f"--embedding must be one of {', '.join(EMBEDDING_MODES)}")


class BiLSTM(Student):
    arch = "bilstm"
    pair_input = "siamese"

    def __init__(self, cfg: BiLSTMConfig, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool, teacher_width: int):
        super().__init__()
        self.cfg, self.is_pair = cfg, is_pair
        dim = cfg.embed_dim or teacher_width
        self.embedding = make_embedding(vocab_size, dim, pad_id, cfg.embedding)
        self.lstm = nn.LSTM(dim, cfg.hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.pooled_dim = (4 if is_pair else 1) * 2 * cfg.hidden
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(self.pooled_dim, cfg.mlp_hidden), nn.ReLU(),
                                  nn.Dropout(cfg.dropout), nn.Linear(cfg.mlp_hidden, num_labels))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, L] token ids -> [B, 2 * hidden], max-pooled over the real tokens."""
        lengths = mask.sum(1).clamp(min=1)
        packed = pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # [B, L, 2H]
        return masked_max(h, mask)

    def forward(self, input_ids, attention_mask, token_type_ids=None, input_ids_b=None, attention_mask_b=None):
        u = self.encode(input_ids, attention_mask)
        pooled = pair_features(u, self.encode(input_ids_b, attention_mask_b)) if self.is_pair else u
        return ModelOutput(logits=self.head(pooled), pooled=pooled)
