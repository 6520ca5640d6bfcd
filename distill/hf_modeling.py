"""distill's models in the form transformers loads as remote code: mean-pooled teachers and the students.

This file needs only torch and transformers: it is copied into every saved model folder as
``distill_modeling.py`` (with an ``auto_map`` in its config.json), which is what runs on a machine
without distill — ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``.
distill's own students build their layers and run their forward pass through the same cores below,
so the two cannot drift apart.

Teachers. A teacher fine-tuned with mean pooling (all-MiniLM-L6-v2, all-mpnet-base-v2: sentence-transformers
checkpoints) is a ``*ForSequenceClassification`` whose head reads the masked mean of the last hidden
states, not BERT's pooled [CLS]. Plain transformers would load its folder as a [CLS] model and
re-initialise BERT's pooler: silently wrong logits. So the folder says what it is — its own
``model_type`` (``distill_mean_bert`` / ``distill_mean_mpnet``), this file copied in as
``distill_modeling.py`` and an ``auto_map`` pointing at it — and
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`` gives
distill's logits; without ``trust_remote_code`` transformers refuses the unknown type.

Students. A student's ``RUN/model`` folder holds ``model.safetensors`` under the student's own
parameter names; its config.json (``model_type`` ``distill_student``) names the arch and the
arguments its layers were built with, and the ``Distill*ForSequenceClassification`` class of that
arch rebuilds them. Siamese students (cnn, bilstm) take a pair as ``input_ids`` + ``input_ids_b``,
each sentence tokenised alone; the transformer student takes BERT's packed pair.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (BertConfig, BertForSequenceClassification, BertModel, MPNetConfig, MPNetForSequenceClassification,
                          PretrainedConfig, PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutput


def masked_mean(hidden, attention_mask):
    """[B, L, H] states, [B, L] 0/1 mask -> [B, H] mean over the real tokens."""
    if attention_mask is None:
        return hidden.mean(1)
    m = attention_mask[:, : hidden.shape[1], None].to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _loss(config, logits, labels):
    if labels is None:
        return None
    if config.problem_type == "regression" or config.num_labels == 1:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
    if config.problem_type == "multi_label_classification":
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
    return torch.nn.functional.cross_entropy(logits, labels)


class DistillMeanBertConfig(BertConfig):
    model_type = "distill_mean_bert"


class DistillMeanBertForSequenceClassification(BertForSequenceClassification):
    """BERT-family encoder, masked mean of the last hidden states, dropout, linear head."""

    config_class = DistillMeanBertConfig

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)  # the mean replaces BERT's pooler
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        logits = self.classifier(self.dropout(masked_mean(hidden, attention_mask)))
        return SequenceClassifierOutput(loss=_loss(self.config, logits, labels), logits=logits)


class DistillMeanMPNetConfig(MPNetConfig):
    model_type = "distill_mean_mpnet"


class DistillMeanMPNetForSequenceClassification(MPNetForSequenceClassification):
    """MPNet encoder; its classification head reads the masked mean instead of the first token."""

    config_class = DistillMeanMPNetConfig

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.mpnet(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.classifier(masked_mean(hidden, attention_mask)[:, None])  # the head reads features[:, 0]
        return SequenceClassifierOutput(loss=_loss(self.config, logits, labels), logits=logits)


# base model_type -> (config class, model class) of its mean-pooled form
MEAN_POOLED = {"bert": (DistillMeanBertConfig, DistillMeanBertForSequenceClassification),
               "mpnet": (DistillMeanMPNetConfig, DistillMeanMPNetForSequenceClassification)}


# ---- students ----------------------------------------------------------------------------------


def masked_max(x, mask):
    """Max over time of x [B, L, D] where mask [B, L] is 1 -> [B, D] (padding never wins)."""
    return x.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(x.dtype).min).amax(dim=1)


def pair_features(u, v):
    """Siamese pair feature [u, v, |u-v|, u*v] (Conneau et al. 2017; Tang et al. 2019). [B, D] x2 -> [B, 4D]."""
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


def reverse_within_length(mask):
    """[B, L] 0/1 mask of right-padded rows -> [B, L] gather index that reverses each row's real
    tokens (position t < n -> n-1-t) and leaves its padding where it is."""
    pos = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)  # [1, L]
    n = mask.sum(1, keepdim=True)  # [B, 1]
    return torch.where(pos < n, n - 1 - pos, pos)


class SiameseCore(nn.Module):
    """A sentence encoder over word vectors: ``encode`` each sentence alone, read [u, v, |u-v|, u*v]
    for pairs, ``classify`` the pooled vector. ``build_args`` records what the layers were built with."""

    is_pair = False

    def _word_table(self, vocab_size, embed_dim, pad_id, embedding):
        self.embedding = embedding if embedding is not None else nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        return dict(vocab_size=vocab_size, embed_dim=embed_dim, pad_id=pad_id)

    def pooled_logits(self, input_ids, attention_mask, input_ids_b=None, attention_mask_b=None):
        """-> (logits [B, C], pooled [B, D])."""
        u = self.encode(input_ids, attention_mask)
        pooled = pair_features(u, self.encode(input_ids_b, attention_mask_b)) if self.is_pair else u
        return self.classify(pooled), pooled


class TextCNNCore(SiameseCore):
    """Kim (2014)'s TextCNN: n-gram convolutions, max over time, dropout, linear head."""

    def build_cnn(self, *, vocab_size, embed_dim, pad_id, filter_sizes, num_filters, dropout, num_labels, is_pair,
                  embedding=None):
        self.build_args = dict(self._word_table(vocab_size, embed_dim, pad_id, embedding), filter_sizes=list(filter_sizes),
                               num_filters=num_filters, dropout=dropout, num_labels=num_labels, is_pair=is_pair)
        self.filter_sizes, self.is_pair = tuple(filter_sizes), is_pair
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in self.filter_sizes)
        self.dropout = nn.Dropout(dropout)
        feat = num_filters * len(self.filter_sizes)
        self.pooled_dim = 4 * feat if is_pair else feat
        self.classifier = nn.Linear(self.pooled_dim, num_labels)

    def encode(self, ids, mask):
        """[B, L] token ids -> [B, filters * widths] max-over-time features."""
        # zero the padding (the teacher's [PAD] vector is not zero), then k_max-1 zero columns so every
        # width has a window even for a 1-token sentence; unconditional, so ONNX export keeps it
        x = (self.embedding(ids) * mask.unsqueeze(-1).to(self.embedding.weight.dtype)).transpose(1, 2)  # [B, D, L]
        x = F.pad(x, (0, max(self.filter_sizes) - 1))  # [B, D, L + k_max - 1]
        lengths = mask.sum(1, keepdim=True)  # [B, 1]
        feats = []
        for conv, k in zip(self.convs, self.filter_sizes):
            h = conv(x)  # [B, F, L + k_max - k]
            # windows that start inside the sentence (at least one per sentence): padding-invariant
            pos = torch.arange(h.shape[2], device=ids.device)[None, :]
            valid = pos < (lengths - k + 1).clamp(min=1)  # [B, L']
            feats.append(h.masked_fill(~valid.unsqueeze(1), torch.finfo(h.dtype).min).amax(dim=2))  # [B, F]
        return F.relu(torch.cat(feats, dim=-1))  # relu after the max: the same value, on [B, F*widths] only

    def classify(self, pooled):
        return self.classifier(self.dropout(pooled))


class BiLSTMCore(SiameseCore):
    """Tang et al. (2019)'s BiLSTM: max-pooled bidirectional LSTM states, ReLU MLP head."""

    def build_bilstm(self, *, vocab_size, embed_dim, pad_id, hidden, mlp_hidden, dropout, num_labels, is_pair, embedding=None):
        self.build_args = dict(self._word_table(vocab_size, embed_dim, pad_id, embedding), hidden=hidden,
                               mlp_hidden=mlp_hidden, dropout=dropout, num_labels=num_labels, is_pair=is_pair)
        self.is_pair = is_pair
        # Two one-way LSTMs instead of nn.LSTM(bidirectional=True) over a packed sequence: each row is
        # reversed within its own length for the backward pass, which gives the packed result exactly,
        # needs no sort/pack, and exports to ONNX (packed sequences do not).
        self.lstm_fwd = nn.LSTM(embed_dim, hidden, num_layers=1, batch_first=True)
        self.lstm_bwd = nn.LSTM(embed_dim, hidden, num_layers=1, batch_first=True)
        self.pooled_dim = (4 if is_pair else 1) * 2 * hidden
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.pooled_dim, mlp_hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(mlp_hidden, num_labels))

    def encode(self, ids, mask):
        """[B, L] token ids -> [B, 2 * hidden], max-pooled over the real tokens."""
        x = self.embedding(ids)  # [B, L, D]
        fwd, _ = self.lstm_fwd(x)  # right padding never reaches a real position going forwards
        rev = reverse_within_length(mask)  # [B, L] index: real tokens reversed, padding in place
        rows = torch.arange(ids.shape[0], device=ids.device).unsqueeze(1)  # [B, 1]
        bwd, _ = self.lstm_bwd(x[rows, rev])
        bwd = bwd[rows, rev]  # the same permutation undoes itself
        return masked_max(torch.cat([fwd, bwd], dim=-1), mask)  # [B, L, 2H] -> [B, 2H]

    def classify(self, pooled):
        return self.head(pooled)


class MeanBertCore(nn.Module):
    """A small BERT encoder (packed pairs), masked mean of the last states, dropout, linear head."""

    def build_encoder(self, *, bert, dropout, num_labels):
        """``bert``: BertConfig keyword arguments."""
        self.build_args = dict(bert=dict(bert), dropout=dropout, num_labels=num_labels)
        self.bert_config = BertConfig(**bert)
        self.bert = BertModel(self.bert_config, add_pooling_layer=False)
        self.dropout = nn.Dropout(dropout)
        self.pooled_dim = self.bert_config.hidden_size
        self.classifier = nn.Linear(self.pooled_dim, num_labels)

    def pooled_logits(self, input_ids, attention_mask, token_type_ids=None):
        """-> (logits [B, C], pooled [B, H])."""
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        pooled = masked_mean(h, attention_mask)  # [B, H]
        return self.classifier(self.dropout(pooled)), pooled


class DistillStudentConfig(PretrainedConfig):
    """``arch`` (cnn | bilstm | transformer) and ``student``: the keyword arguments its layers were
    built with (``build_args``); labels, ``problem_type`` and ``max_seq_length`` (the token length it was trained at)."""

    model_type = "distill_student"

    def __init__(self, arch="cnn", student=None, max_seq_length=128, **kwargs):
        self.arch, self.student, self.max_seq_length = arch, dict(student or {}), max_seq_length
        super().__init__(**kwargs)


class _StudentModel(PreTrainedModel):
    config_class = DistillStudentConfig
    base_model_prefix = "distill_student"  # no module has this name: the weights keep the student's own names
    main_input_name = "input_ids"

    def _init_weights(self, module):
        """torch's own initialisation, as distill's students start (a saved folder's weights replace it)."""
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()

    def _output(self, logits, pooled, labels):
        """The pooled sentence vector is distill's own output contract; transformers' carries the logits."""
        return SequenceClassifierOutput(loss=_loss(self.config, logits, labels), logits=logits)


class DistillTextCNNForSequenceClassification(_StudentModel, TextCNNCore):
    def __init__(self, config):
        super().__init__(config)
        self.build_cnn(**config.student)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, input_ids_b=None, attention_mask_b=None,
                labels=None, **kwargs):
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return self._output(*self.pooled_logits(input_ids, attention_mask, input_ids_b, attention_mask_b), labels)


class DistillBiLSTMForSequenceClassification(_StudentModel, BiLSTMCore):
    def __init__(self, config):
        super().__init__(config)
        self.build_bilstm(**config.student)
        self.post_init()

    forward = DistillTextCNNForSequenceClassification.forward


class DistillTransformerForSequenceClassification(_StudentModel, MeanBertCore):
    def __init__(self, config):
        super().__init__(config)
        self.build_encoder(**config.student)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return self._output(*self.pooled_logits(input_ids, attention_mask, token_type_ids), labels)


STUDENTS = {"cnn": DistillTextCNNForSequenceClassification, "bilstm": DistillBiLSTMForSequenceClassification,
            "transformer": DistillTransformerForSequenceClassification}


_REGISTERED = []


def register_auto_classes():
    """Let transformers' Auto classes read the folders distill writes in distill's own process,
    without running a folder's copy of this file (idempotent)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if _REGISTERED:
        return
    for cfg_cls, model_cls in MEAN_POOLED.values():
        AutoConfig.register(cfg_cls.model_type, cfg_cls, exist_ok=True)
        AutoModelForSequenceClassification.register(cfg_cls, model_cls, exist_ok=True)
    AutoConfig.register(DistillStudentConfig.model_type, DistillStudentConfig, exist_ok=True)
    _REGISTERED.append(True)


def load_tokenizer(path):
    """``AutoTokenizer`` for a model folder or Hub name. A folder distill wrote has an ``auto_map``
    in its config.json, on which transformers stops to ask whether to run the folder's code
    (blocking a terminal); with distill's classes registered first it does not ask."""
    from transformers import AutoTokenizer

    register_auto_classes()
    return AutoTokenizer.from_pretrained(path)
