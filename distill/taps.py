"""What a transformer encoder computes inside, read during its own forward: the hidden state after
the embeddings and after each layer, and each attention layer's queries, keys and values — what
layer-wise distillation (TinyBERT, MiniLM, DistilBERT) compares between a teacher and a student.

Forward hooks on the modules by name, torchdistill's way, rather than ``output_hidden_states`` /
``output_attentions``: the hooks leave the model's forward and its fast attention kernel (SDPA) as
they are, keep only the layers a mapping asks for, and give the attention *scores* (TinyBERT
compares those, before the softmax) that transformers does not return. Works for BERT-named
encoders (BERT, MiniLM, the transformer student) and MPNet (``attention.attn.{q,k,v}``, whose
relative-position bias is read from its ``encoder.relative_attention_bias`` and added back).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

# (query, key, value) module names inside one encoder layer, per naming family
_QKV_NAMES = (("attention.self.query", "attention.self.key", "attention.self.value"),  # BERT, RoBERTa, ELECTRA
              ("attention.attn.q", "attention.attn.k", "attention.attn.v"))  # MPNet


@dataclass
class EncoderStates:
    """One forward's captured states; layer numbers follow ``hidden_states``: 0 = the embedding
    output, i = the output of layer i (1-based), and attention i is layer i's."""

    heads: int
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)  # i -> [B, T, H]
    qkv: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # i -> 3 x [B, T, H]
    position_bias: torch.Tensor | None = None  # [T, T, A] MPNet's relative-position bias, shared by its layers

    def scores(self, layer: int) -> torch.Tensor:
        """Layer ``layer``'s pre-softmax attention scores QK^T/sqrt(d) (+ MPNet's position bias), without
        the padding mask -> [B, A, T, T]."""
        q, k, _ = self.qkv[layer]
        b, t, h = q.shape
        d = h // self.heads
        qh = q.float().view(b, t, self.heads, d).transpose(1, 2)  # [B, A, T, d]
        kh = k.float().view(b, t, self.heads, d).transpose(1, 2)
        s = qh @ kh.transpose(-1, -2) / math.sqrt(d)
        if self.position_bias is not None:
            s = s + self.position_bias.float().permute(2, 0, 1)[None, :, :t, :t]
        return s

    def values(self, layer: int) -> torch.Tensor:
        """Layer ``layer``'s value projections [B, T, H] (before the head split)."""
        return self.qkv[layer][2]


def encoder_parts(model: nn.Module) -> tuple[nn.Module, nn.ModuleList, object, nn.Module | None]:
    """(embeddings module, the encoder's layer list, its transformers config, MPNet's relative-bias
    table or None) of a transformers encoder or a model holding one (``*ForSequenceClassification``,
    the transformer student)."""
    named = dict(model.named_modules())
    layers = next((m for n, m in named.items() if (n == "encoder.layer" or n.endswith(".encoder.layer"))
                   and isinstance(m, nn.ModuleList)), None)
    emb = next((m for n, m in named.items() if (n == "embeddings" or n.endswith(".embeddings"))
                and hasattr(m, "word_embeddings")), None)
    if layers is None or emb is None:
        raise ValueError(f"{type(model).__name__} has no transformers-style embeddings and encoder.layer to read")
    config = next(m.config for m in named.values() if hasattr(getattr(m, "config", None), "num_attention_heads"))
    bias = next((m for n, m in named.items() if n.endswith("relative_attention_bias")), None)
    return emb, layers, config, bias


class EncoderTaps:
    """Forward hooks that fill an ``EncoderStates`` on every forward of ``model``: the hidden states
    numbered in ``hidden`` and the q/k/v of the attention layers in ``attention`` (1-based). Use
    ``take()`` after each forward; ``remove()`` unhooks. Tensors keep their autograd graph (a student
    trains through them); a teacher runs under ``torch.no_grad``."""

    def __init__(self, model: nn.Module, hidden: set[int], attention: set[int]):
        emb, layers, config, bias = encoder_parts(model)
        n, heads = len(layers), int(config.num_attention_heads)
        bad = sorted(i for i in hidden | attention if not 0 <= i <= n) + sorted(i for i in attention if i == 0)
        if bad:
            raise ValueError(f"layer {bad[0]} is not in this {n}-layer encoder (hidden states 0..{n}, attention 1..{n})")
        self.heads, self.hooks = heads, []
        self._states = EncoderStates(heads)
        if 0 in hidden:
            self.hooks.append(emb.register_forward_hook(self._keep_hidden(0)))
        for i in sorted(hidden - {0}):
            self.hooks.append(layers[i - 1].register_forward_hook(self._keep_hidden(i)))
        for i in sorted(attention):
            names = dict(layers[i - 1].named_modules())
            family = next((f for f in _QKV_NAMES if all(x in names for x in f)), None)
            if family is None:
                raise ValueError(f"layer {i} of {type(model).__name__} has no query/key/value modules named as in BERT or MPNet")
            got: dict[str, torch.Tensor] = {}
            for part, name in zip("qkv", family):
                self.hooks.append(names[name].register_forward_hook(self._keep_qkv(i, part, got)))
        if bias is not None and attention:
            self.hooks.append(bias.register_forward_hook(self._keep_bias))

    def _keep_hidden(self, i: int):
        def hook(module, args, out):
            self._states.hidden[i] = out[0] if isinstance(out, tuple) else out

        return hook

    def _keep_qkv(self, i: int, part: str, got: dict):
        def hook(module, args, out):
            got[part] = out
            if len(got) == 3:
                self._states.qkv[i] = (got.pop("q"), got.pop("k"), got.pop("v"))

        return hook

    def _keep_bias(self, module, args, out):
        self._states.position_bias = out  # [T, T, A]: the bucketed table looked up for this length

    def take(self) -> EncoderStates:
        """The states of the last forward; the taps start empty for the next one."""
        states, self._states = self._states, EncoderStates(self.heads)
        return states

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
