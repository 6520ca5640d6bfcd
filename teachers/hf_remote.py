"""Mean-pooled sequence classifiers in the form transformers loads as remote code.

A teacher fine-tuned with mean pooling (all-MiniLM-L6-v2, all-mpnet-base-v2: sentence-transformers
checkpoints) is a ``*ForSequenceClassification`` whose head reads the masked mean of the last hidden
states, not BERT's pooled [CLS]. Plain transformers would load its folder as a [CLS] model and
re-initialise BERT's pooler: silently wrong logits. So the folder says what it is — its own
``model_type`` (``distill_mean_bert`` / ``distill_mean_mpnet``), this file copied in as
``distill_modeling.py`` and an ``auto_map`` pointing at it — and
``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)`` gives
distill's logits; without ``trust_remote_code`` transformers refuses the unknown type.

This file needs only torch and transformers: it is what runs on a machine without distill.
"""

import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, MPNetConfig, MPNetForSequenceClassification
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
