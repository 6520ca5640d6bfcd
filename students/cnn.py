"""Kim (2014), "Convolutional Neural Networks for Sentence Classification": TextCNN."""

from __future__ import annotations

from dataclasses import dataclass

from distill.cli import field_docs
from distill.hf_modeling import TextCNNCore
from students.base import SiameseStudent, check_embedding_options


@field_docs
@dataclass
class CNNConfig:
    embed_dim: int = 0  # word-vector width; 0 = the teacher's (384 for MiniLM: no projection). Kim: 300
    filter_sizes: tuple[int, ...] = (3, 4, 5)  # n-gram widths of the filters (Kim 2014)
    num_filters: int = 100  # feature maps per width (Kim 2014)
    dropout: float = 0.5  # on the pooled features (Kim 2014)
    embedding: str = "sparse"  # sparse | dense | frozen: how the word table trains
    embedding_init: str = "teacher"  # teacher (its input word table) | context (its layer states averaged over train) | random

    def validate(self) -> None:
        if not self.filter_sizes or min(self.filter_sizes) < 1:
            raise ValueError("--filter-sizes must be positive widths, e.g. 3,4,5")
        if self.num_filters < 1 or not 0 <= self.dropout < 1:
            raise ValueError("--num-filters must be >= 1, --dropout in [0, 1)")
        check_embedding_options(self.embed_dim, self.embedding, self.embedding_init)


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


class TextCNN(SiameseStudent, TextCNNCore):
    arch = "cnn"

    def __init__(self, cfg: CNNConfig, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool, teacher_width: int):
        super().__init__(cfg, vocab_size=vocab_size, pad_id=pad_id, is_pair=is_pair, teacher_width=teacher_width)
        self.build_cnn(**self.word_table(), filter_sizes=cfg.filter_sizes, num_filters=cfg.num_filters, dropout=cfg.dropout,
                       num_labels=num_labels, is_pair=is_pair)
