"""Layer-wise distillation with the teacher in the loop (TinyBERT, MiniLM, DistilBERT's cosine).

The frozen teacher (the run's ``best/`` model) runs on every training batch under ``no_grad``, its
fp32 linears prepacked for oneDNN as in the dump (``teachers.dump.prepack_linears``), and its
hidden states and attention queries/keys/values are read by ``distill.taps``; the student's are
read the same way from its own forward. Why in the loop rather than dumped once: the mapped states
of SST-2's 67k training sentences are ~25 tokens x 384-768 features x 5-13 layers plus 12 heads of
T x T scores each — tens of GB even in bf16 — while the teacher's forward costs a fraction of the
student's training step (see docs/layerwise.md for the measured epoch times).

The layer mapping pairs student hidden-state indices with the teacher's (0 = embeddings, i = layer
i): ``uniform`` (TinyBERT's g(m) = m * N / M, embeddings included), ``last`` (the last layers
only), or explicit ``0:0,1:3,2:6``. Each term uses the pairs it applies to: ``embedding_mse`` the
pair of student 0; ``hidden_mse`` and ``hidden_cosine`` every pair of a layer; ``attention_mse``
every pair of a layer (its attention); MiniLM's ``attention_kl`` and ``value_kl`` the deepest pair.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from torch import nn

from distill import losses
from distill.errors import DistillInputError
from distill.taps import EncoderStates, EncoderTaps, encoder_parts

log = logging.getLogger(__name__)


def parse_layer_map(spec: str, student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """``--layer-map`` -> sorted (student, teacher) hidden-state index pairs (0 = embeddings).

    "uniform": TinyBERT's g(m) = m * N / M for m = 0..M; "last": (M, N); "i:j,...": explicit, each
    student index at most once, 0 only with 0 (embeddings map to embeddings)."""
    m, n = student_layers, teacher_layers
    if spec == "uniform":
        if n % m:
            log.warning("--layer-map uniform: %d teacher layers are not a multiple of %d student layers; "
                        "student layer m reads teacher layer floor(m * %d / %d)", n, m, n, m)
        return [(i, i * n // m) for i in range(m + 1)]
    if spec == "last":
        return [(m, n)]
    pairs = []
    for part in spec.split(","):
        try:
            s, t = (int(x) for x in part.split(":"))
        except ValueError:
            raise DistillInputError(f"--layer-map {spec!r}: {part!r} is not student:teacher (e.g. 0:0,1:3,2:6), "
                                    f"uniform or last") from None
        if not (0 <= s <= m and 0 <= t <= n):
            raise DistillInputError(f"--layer-map {spec!r}: {part} is out of range (student 0..{m}, teacher 0..{n}; "
                                    f"0 is the embedding layer)")
        if (s == 0) != (t == 0):
            raise DistillInputError(f"--layer-map {spec!r}: {part} pairs an embedding layer with a transformer layer; "
                                    f"0 maps only to 0")
        pairs.append((s, t))
    if len({s for s, _ in pairs}) != len(pairs):
        raise DistillInputError(f"--layer-map {spec!r}: a student layer appears twice")
    return sorted(pairs)


class FrozenTeacher:
    """The teacher run's fine-tuned model for inference inside the student's loop; ``LayerKD`` sets its
    ``taps`` on the hidden states and attention layers the mapping reads. Not an ``nn.Module`` attribute of anything
    trained: its weights stay out of the student's state dict, checkpoints and optimisers."""

    def __init__(self, model: nn.Module, device: torch.device):
        from teachers.dump import prepack_linears

        self.model = model.eval().requires_grad_(False).to(device)
        self.prepacked = prepack_linears(self.model) if device.type == "cpu" else 0  # the dump's fast fp32 path
        self.taps: EncoderTaps | None = None
        self.takes_token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.config = self.model.config

    @classmethod
    def load(cls, model_dir: Path | str, device: torch.device) -> FrozenTeacher:
        from teachers.hf import load_teacher

        model, _ = load_teacher(str(model_dir))
        return cls(model, device)

    @torch.no_grad()
    def __call__(self, input_ids, attention_mask, token_type_ids=None) -> EncoderStates:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self.takes_token_types else {}
        with torch.autocast(input_ids.device.type, enabled=False):  # fp32 whatever the student's --precision
            self.model(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return self.taps.take()


class LayerKD(nn.Module):
    """The layer-wise terms of one batch (``forward``), and what they train besides the student: a
    learned linear projection per mapped layer where the widths differ (TinyBERT's W_h, W_e; also
    feeding the cosine). Holds the student's taps and the frozen teacher."""

    def __init__(self, student: nn.Module, teacher: FrozenTeacher, pairs: list[tuple[int, int]], weights: dict[str, float],
                 relation_heads: int = 0):
        super().__init__()
        self.pairs, self.weights = pairs, {k: float(weights.get(k, 0.0)) for k in losses.LAYER_TERMS}
        self._teacher = [teacher]  # a list: not a registered submodule (frozen, never saved or synced)
        s_conf, t_conf = encoder_parts(student)[2], teacher.config
        s_heads, t_heads = int(s_conf.num_attention_heads), int(t_conf.num_attention_heads)
        s_width, t_width = int(s_conf.hidden_size), int(t_conf.hidden_size)
        w = self.weights
        if (w["attention_mse"] or w["attention_kl"]) and s_heads != t_heads:
            raise DistillInputError(f"--attention-mse/--attention-kl compare head by head, but the student has {s_heads} "
                                    f"heads and the teacher {t_heads}; set the student's --heads {t_heads}, or use "
                                    f"--value-kl (relation heads allow any count)")
        self.relation_heads = relation_heads or t_heads
        if w["value_kl"] and (s_width % self.relation_heads or t_width % self.relation_heads):
            raise DistillInputError(f"--relation-heads {self.relation_heads} must divide both widths (student {s_width}, "
                                    f"teacher {t_width})")
        deepest = max(s for s, _ in pairs)
        if (w["attention_kl"] or w["value_kl"] or w["attention_mse"]) and deepest == 0:
            raise DistillInputError("--layer-map maps only the embedding layer; the attention terms need a layer pair")
        hidden_terms = w["embedding_mse"] or w["hidden_mse"] or w["hidden_cosine"]
        self.hidden_pairs = [p for p in pairs if (p[0] == 0 and w["embedding_mse"]) or (p[0] > 0 and (w["hidden_mse"] or w["hidden_cosine"]))]
        self.attention_pairs = [p for p in pairs if p[0] > 0 and w["attention_mse"]]
        self.last_pair = next(p for p in pairs if p[0] == deepest) if (w["attention_kl"] or w["value_kl"]) else None
        # TinyBERT's learned W per mapped layer where the widths differ (identity where they match)
        self.proj = nn.ModuleDict({str(s): nn.Linear(s_width, t_width) for s, _ in self.hidden_pairs}) \
            if hidden_terms and s_width != t_width else nn.ModuleDict()
        s_att = {p[0] for p in self.attention_pairs} | ({self.last_pair[0]} if self.last_pair else set())
        t_att = {p[1] for p in self.attention_pairs} | ({self.last_pair[1]} if self.last_pair else set())
        self.student_taps = EncoderTaps(student, {s for s, _ in self.hidden_pairs}, s_att)
        teacher.taps = EncoderTaps(teacher.model, {t for _, t in self.hidden_pairs}, t_att)

    @property
    def teacher(self) -> FrozenTeacher:
        return self._teacher[0]

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Call right after the student's forward on ``batch``: runs the teacher on the same tokens and
        returns every term (0 where its weight is 0) and their mix under "layer"."""
        s = self.student_taps.take()
        t = self.teacher(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        mask = batch["attention_mask"]
        zero = mask.new_zeros((), dtype=torch.float32)
        terms = {k: zero for k in losses.LAYER_TERMS}
        w = self.weights

        def proj(i: int, h: torch.Tensor) -> torch.Tensor:
            return self.proj[str(i)](h) if str(i) in self.proj else h

        for si, ti in self.hidden_pairs:
            hs, ht = proj(si, s.hidden[si]), t.hidden[ti]
            if si == 0:
                terms["embedding_mse"] = losses.tinybert_hidden_mse(hs, ht, mask)
                continue
            if w["hidden_mse"]:
                terms["hidden_mse"] = terms["hidden_mse"] + losses.tinybert_hidden_mse(hs, ht, mask)
            if w["hidden_cosine"]:
                terms["hidden_cosine"] = terms["hidden_cosine"] + losses.hidden_cosine(hs, ht, mask)
        for si, ti in self.attention_pairs:
            terms["attention_mse"] = terms["attention_mse"] + losses.tinybert_attention_mse(s.scores(si), t.scores(ti), mask)
        if self.last_pair is not None:
            si, ti = self.last_pair
            if w["attention_kl"]:
                terms["attention_kl"] = losses.attention_kl(s.scores(si), t.scores(ti), mask)
            if w["value_kl"]:
                terms["value_kl"] = losses.value_relation_kl(s.values(si), t.values(ti), mask, self.relation_heads)
        terms["layer"] = losses.layer_objective(terms, w)
        return terms
