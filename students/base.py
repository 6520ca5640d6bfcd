"""What every student shares: the forward signature, word embeddings from the teacher, pair features."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from distill.hf_modeling import SiameseCore
from distill.modeling import ModelOutput

log = logging.getLogger(__name__)

EMBEDDING_MODES = ("sparse", "dense", "frozen")
# the teacher's input word table | its layer states averaged over the train split (students.word_vectors) | N(0, 0.1);
# teacher and context are PCA-projected to the student's width
EMBEDDING_INITS = ("teacher", "context", "random")


class Student(nn.Module):
    """Base class. ``forward(input_ids, attention_mask, token_type_ids=None, input_ids_b=None,
    attention_mask_b=None) -> ModelOutput``. Subclasses set ``pair_input`` ("siamese": each sentence
    encoded alone, or "packed": BERT-style [CLS] a [SEP] b [SEP]) and ``pooled_dim`` (width of the
    vector the head reads)."""

    arch: str = ""
    pair_input: str = "siamese"
    pooled_dim: int = 0

    def init_from_teacher(self, teacher_state: dict[str, torch.Tensor], teacher_config: dict,
                          context_vectors: torch.Tensor | None = None) -> None:
        """Copy what fits from the teacher's weights, as the config's ``embedding_init`` says (default:
        the word embeddings, PCA-projected to the student's width; "context": ``context_vectors`` [V, H],
        ``students.word_vectors``' table, projected the same way)."""
        init = getattr(self.cfg, "embedding_init", "teacher")
        if init == "random":
            return
        if init == "context" and context_vectors is None:
            raise ValueError("--embedding-init context needs the table of students.word_vectors (students.train.prepare makes it)")
        table = context_vectors if init == "context" else word_embeddings(teacher_state)
        self.embedding.weight.data.copy_(project_embeddings(table, self.embedding.embedding_dim))

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Parameters whose gradients are sparse (a sparse embedding), stepped by SparseAdam."""
        emb = getattr(self, "embedding", None)
        return [emb.weight] if isinstance(emb, nn.Embedding) and emb.sparse and emb.weight.requires_grad else []


class SiameseStudent(Student, SiameseCore):
    """A sentence encoder over word vectors (cnn, bilstm): its layers and forward pass are the
    ``distill.hf_modeling`` core (the code a saved folder ships); this adds the training-side word
    table. The config needs ``embed_dim`` (0 = the teacher's width) and ``embedding`` (sparse | dense | frozen)."""

    pair_input = "siamese"

    def __init__(self, cfg, *, vocab_size: int, pad_id: int, is_pair: bool, teacher_width: int):
        super().__init__()
        self.cfg, self.is_pair = cfg, is_pair
        self.embed_dim = cfg.embed_dim or teacher_width
        self.vocab_size, self.pad_id = vocab_size, pad_id

    def word_table(self) -> dict:
        """The word-table arguments of the core's ``build_*``: the table trains as ``cfg.embedding`` says."""
        return dict(vocab_size=self.vocab_size, embed_dim=self.embed_dim, pad_id=self.pad_id,
                    embedding=make_embedding(self.vocab_size, self.embed_dim, self.pad_id, self.cfg.embedding))

    def forward(self, input_ids, attention_mask, token_type_ids=None, input_ids_b=None, attention_mask_b=None):
        logits, pooled = self.pooled_logits(input_ids, attention_mask, input_ids_b, attention_mask_b)
        return ModelOutput(logits=logits, pooled=pooled)


def check_embedding_options(embed_dim: int, embedding: str, embedding_init: str) -> None:
    """Shared config checks of the word-vector students."""
    if embed_dim < 0:
        raise ValueError("--embed-dim must be >= 0 (0 = the teacher's width)")
    if embedding not in EMBEDDING_MODES:
        raise ValueError(f"--embedding must be one of {', '.join(EMBEDDING_MODES)}")
    if embedding_init not in EMBEDDING_INITS:  # any other word used to mean "random", silently
        raise ValueError(f"--embedding-init must be one of {', '.join(EMBEDDING_INITS)}")


def make_embedding(vocab_size: int, dim: int, pad_id: int, mode: str) -> nn.Embedding:
    """A word-embedding table. "sparse": sparse gradients (only the rows in a batch are touched —
    a dense AdamW step over 30,522 rows dominates a CNN step on CPU); "frozen": not trained."""
    emb = nn.Embedding(vocab_size, dim, padding_idx=pad_id, sparse=mode == "sparse")
    nn.init.normal_(emb.weight, std=0.1)
    with torch.no_grad():
        emb.weight[pad_id].zero_()
    emb.weight.requires_grad_(mode != "frozen")
    return emb


def word_embeddings(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The teacher's word-embedding matrix [V, H] from its state dict."""
    keys = [k for k in state if k.endswith("word_embeddings.weight")]
    if not keys:
        raise KeyError("the teacher's weights have no *word_embeddings.weight")
    return state[keys[0]].float()


def project_embeddings(emb: torch.Tensor, dim: int) -> torch.Tensor:
    """[V, H] -> [V, dim]: as is when dim == H, else onto the top-``dim`` principal axes (PCA via
    SVD, padded with small noise when dim > H), rescaled to the original mean row norm."""
    v, h = emb.shape
    if dim == h:
        return emb.clone()
    mean = emb.mean(0, keepdim=True)
    _, _, vt = torch.linalg.svd(emb - mean, full_matrices=False)  # vt [H, H]
    k = min(dim, h)
    out = (emb - mean) @ vt[:k].T  # [V, k]
    if dim > h:
        out = torch.cat([out, torch.randn(v, dim - h) * out.std() * 0.1], dim=1)
    return out * (emb.norm(dim=1).mean() / out.norm(dim=1).mean().clamp(min=1e-8))


def load_teacher_weights(teacher_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config dict) of a saved transformers teacher folder (safetensors only)."""
    import json

    from distill.rundir import load_weights

    teacher_dir = Path(teacher_dir)
    state: dict[str, torch.Tensor] = {}
    for f in sorted(teacher_dir.glob("*.safetensors")):
        state.update(load_weights(f, "re-run the teacher (python -m distill.teach ... --overwrite)"))
    if not state:
        raise FileNotFoundError(f"{teacher_dir} has no *.safetensors weights")
    return state, json.loads((teacher_dir / "config.json").read_text())
