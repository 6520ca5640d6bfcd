"""A small BERT-style encoder student; DistilBERT-style (Sanh et al. 2019) initialisation from every
k-th teacher layer when the widths match."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from distill.cli import field_docs
from distill.errors import DistillInputError
from distill.hf_modeling import MeanBertCore
from distill.modeling import ModelOutput
from students.base import EMBEDDING_MODES, Student, project_embeddings, word_embeddings

log = logging.getLogger(__name__)


@field_docs
@dataclass
class TransformerConfig:
    layers: int = 3  # encoder layers (2-4); 3 = every 2nd layer of the 6-layer MiniLM
    hidden: int = 0  # width; 0 = the teacher's (384 for MiniLM), which allows layer-copy init
    heads: int = 0  # attention heads; 0 = hidden // 64 (BERT's head size)
    intermediate: int = 0  # feed-forward width; 0 = 4 * hidden
    dropout: float = 0.1  # hidden and attention dropout (BERT)
    init: str = "teacher"  # teacher (embeddings + every k-th layer when widths match) | random
    embedding: str = "dense"  # dense | frozen (sparse is for the bag-of-vectors students)

    def validate(self) -> None:
        if not 1 <= self.layers <= 12 or self.hidden < 0 or self.heads < 0 or not 0 <= self.dropout < 1:
            raise ValueError("--layers must be in 1..12, --hidden/--heads >= 0, --dropout in [0, 1)")
        if self.init not in ("teacher", "random"):
            raise ValueError("--init must be teacher or random")
        if self.embedding not in ("dense", "frozen"):
            raise ValueError(f"--embedding must be dense or frozen for the transformer (of {', '.join(EMBEDDING_MODES)})")


# Optuna search space (plain data, see distill.tune): fine-tuning knobs of a teacher-initialised encoder.
SEARCH_SPACE = {
    "lr": {"low": 3e-5, "high": 3e-4, "log": True},
    "alpha": {"low": 0.3, "high": 1.0},
    "temperature": {"choices": [1.0, 2.0, 4.0]},
    "beta": {"choices": [0.0, 0.5, 1.0]},
    "dropout": {"low": 0.0, "high": 0.2},
    "layers": {"choices": [2, 3, 4]},
}


# MPNet -> BERT parameter names (same shapes): MPNet's attention is attn.{q,k,v,o} and its LayerNorm
# sits on the attention block itself.
_MPNET_TO_BERT = ((".attention.attn.q.", ".attention.self.query."), (".attention.attn.k.", ".attention.self.key."),
                  (".attention.attn.v.", ".attention.self.value."), (".attention.attn.o.", ".attention.output.dense."),
                  (".attention.LayerNorm.", ".attention.output.LayerNorm."))


def bert_names(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """A teacher state dict under BERT's parameter names. BERT-named teachers pass through; MPNet's
    layers are renamed and its position table shifted (MPNet numbers positions from padding_idx + 1 = 2,
    BERT from 0: student row i = teacher row i + 2). MPNet's relative-position bias has no BERT
    counterpart and is not copied (a copied layer then attends without it until fine-tuned)."""
    if config.get("model_type") not in ("mpnet", "distill_mean_mpnet"):
        return state
    out = {}
    for k, v in state.items():
        if k.endswith("relative_attention_bias.weight"):
            continue
        for old, new in _MPNET_TO_BERT:
            k = k.replace(old, new)
        if k.endswith("embeddings.position_embeddings.weight"):
            v = v[config.get("pad_token_id", 1) + 1:]
            v = v[:512]
        out[k] = v
    return out


class TransformerStudent(Student, MeanBertCore):
    """transformers' BertModel, masked mean pooling, dropout, linear head (``distill.hf_modeling``'s
    core, the code a saved folder ships). Pairs are packed."""

    arch = "transformer"
    pair_input = "packed"

    def __init__(self, cfg: TransformerConfig, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool,
                 teacher_width: int):
        super().__init__()
        self.cfg, self.is_pair = cfg, is_pair
        hidden = cfg.hidden or teacher_width
        heads = cfg.heads or max(1, hidden // 64)
        if hidden % heads:
            raise ValueError(f"--hidden {hidden} is not divisible by --heads {heads}")
        self.build_encoder(bert=dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=cfg.layers,
                                     num_attention_heads=heads, intermediate_size=cfg.intermediate or 4 * hidden,
                                     hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                                     pad_token_id=pad_id, max_position_embeddings=512, type_vocab_size=2),
                           dropout=cfg.dropout, num_labels=num_labels)
        self.bert.embeddings.word_embeddings.weight.requires_grad_(cfg.embedding != "frozen")

    @property
    def embedding(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def init_from_teacher(self, teacher_state: dict[str, torch.Tensor], teacher_config: dict,
                          context_vectors: torch.Tensor | None = None) -> None:
        """``--init teacher``: the teacher's embeddings and every k-th layer (``context_vectors``: unused here)."""
        if self.cfg.init != "teacher":
            return
        hidden = self.bert_config.hidden_size
        if teacher_config.get("hidden_size") != hidden:
            log.info("teacher width %s != student width %d: only the (projected) word embeddings are copied",
                     teacher_config.get("hidden_size"), hidden)
            with torch.no_grad():
                self.embedding.weight.copy_(project_embeddings(word_embeddings(teacher_state), hidden))
            return
        # DistilBERT-style: embeddings and every k-th layer; names relative to the teacher's encoder
        teacher_state = bert_names(teacher_state, teacher_config)
        prefix = next(k[: -len("embeddings.word_embeddings.weight")] for k in teacher_state
                      if k.endswith("embeddings.word_embeddings.weight"))
        n_teacher = teacher_config.get("num_hidden_layers", self.cfg.layers)
        step = max(1, n_teacher // self.cfg.layers)
        mapping = {f"encoder.layer.{i}.": f"encoder.layer.{i * step}." for i in range(self.cfg.layers)}
        own = self.bert.state_dict()
        new = {}
        for name in own:
            src = name
            for dst, s in mapping.items():
                if name.startswith(dst):
                    src = s + name[len(dst):]
            if prefix + src in teacher_state and teacher_state[prefix + src].shape == own[name].shape:
                new[name] = teacher_state[prefix + src]
        missing = sorted(set(own) - set(new))
        if not any(".attention." in k for k in new):
            raise DistillInputError(
                f"--init teacher: the {teacher_config.get('model_type', 'unknown')} teacher's layers have no BERT-style "
                f"names to copy into the student; use --init random (the word embeddings are still the teacher's "
                f"with --embedding dense)")
        self.bert.load_state_dict({**own, **new})
        log.info("initialised %d/%d tensors from teacher layers %s (not copied: %s)", len(new), len(own),
                 [i * step for i in range(self.cfg.layers)], missing[:3])

    def forward(self, input_ids, attention_mask, token_type_ids=None, input_ids_b=None, attention_mask_b=None):
        logits, pooled = self.pooled_logits(input_ids, attention_mask, token_type_ids)
        return ModelOutput(logits=logits, pooled=pooled)
