"""Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks": BiLSTM."""

from __future__ import annotations

from dataclasses import dataclass

from distill.cli import field_docs
from distill.hf_modeling import BiLSTMCore
from students.base import SiameseStudent, check_embedding_options


@field_docs
@dataclass
class BiLSTMConfig:
    embed_dim: int = 0  # word-vector width; 0 = the teacher's (384 for MiniLM). Tang: 300-d word2vec
    hidden: int = 150  # LSTM units per direction (Tang 2019)
    mlp_hidden: int = 200  # ReLU layer of the head (Tang 2019: 200 for SST-2, 400 for pairs)
    dropout: float = 0.2  # on the pooled features and before the output layer
    embedding: str = "sparse"  # sparse | dense | frozen: how the word table trains
    embedding_init: str = "teacher"  # teacher (its input word table) | context (its layer states averaged over train) | random

    def validate(self) -> None:
        if self.hidden < 1 or self.mlp_hidden < 1 or not 0 <= self.dropout < 1:
            raise ValueError("--hidden and --mlp-hidden must be >= 1, --dropout in [0, 1)")
        check_embedding_options(self.embed_dim, self.embedding, self.embedding_init)


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


class BiLSTM(SiameseStudent, BiLSTMCore):
    arch = "bilstm"

    def __init__(self, cfg: BiLSTMConfig, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool, teacher_width: int):
        super().__init__(cfg, vocab_size=vocab_size, pad_id=pad_id, is_pair=is_pair, teacher_width=teacher_width)
        self.build_bilstm(**self.word_table(), hidden=cfg.hidden, mlp_hidden=cfg.mlp_hidden, dropout=cfg.dropout,
                          num_labels=num_labels, is_pair=is_pair)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved with one nn.LSTM(bidirectional=True) named "lstm"
        for k in [k for k in state_dict if k.startswith(prefix + "lstm.")]:
            name = k[len(prefix) + 5:]
            new = "lstm_bwd." + name.replace("_reverse", "") if name.endswith("_reverse") else "lstm_fwd." + name
            state_dict[prefix + new] = state_dict.pop(k)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
