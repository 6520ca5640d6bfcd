"""Google's original BERT release folders (``uncased_L-12_H-768_A-12``, ``multi_cased_L-12_H-768_A-12``,
...: ``bert_config.json``, ``vocab.txt``, ``bert_model.ckpt.{index,data-*}``) as transformers folders.

transformers 5 dropped its TensorFlow loaders, so the checkpoint is read by ``teachers.tf_checkpoint``
and every encoder variable is mapped to exactly one ``BertForSequenceClassification`` parameter
(dense kernels transposed: TF stores [in, out], torch [out, in]). What the mapping skips is a written
list (optimiser slots, the step counter, the pre-training heads); a ``run_classifier.py`` fine-tune's
``output_weights`` / ``output_bias`` become the classification head. Anything else unknown, or
anything missing, is named in the error. ``--teacher FOLDER`` converts once into a cache; ``distill
convert FOLDER OUT`` writes the folder where you say.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from distill.errors import DistillInputError

log = logging.getLogger(__name__)

CKPT = "bert_model.ckpt"
# variables a converted folder does not need, by pattern: Adam's slots (adam_m / adam_v), the step
# counter, and the pre-training heads (masked LM and next sentence: cls/predictions, cls/seq_relationship)
IGNORED = (r".*/adam_[mv]$", r"^global_step$", r"^cls/.*", r".*/(beta1|beta2)_power$")

_LAYER = {  # TF name inside bert/encoder/layer_N/ -> BERT's torch name inside bert.encoder.layer.N.
    "attention/self/query": "attention.self.query", "attention/self/key": "attention.self.key",
    "attention/self/value": "attention.self.value", "attention/output/dense": "attention.output.dense",
    "attention/output/LayerNorm": "attention.output.LayerNorm", "intermediate/dense": "intermediate.dense",
    "output/dense": "output.dense", "output/LayerNorm": "output.LayerNorm"}
_PARAM = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


def is_google_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "bert_config.json").is_file() and (p / f"{CKPT}.index").is_file()


def torch_name(tf_name: str) -> str | None:
    """The torch parameter of one TF variable; None for the ignored list; KeyError for anything else."""
    if any(re.match(p, tf_name) for p in IGNORED):
        return None
    if tf_name in ("output_weights", "output_bias"):  # run_classifier.py's head: weights [num_labels, hidden]
        return "classifier." + ("weight" if tf_name == "output_weights" else "bias")
    m = re.fullmatch(r"bert/embeddings/(word_embeddings|position_embeddings|token_type_embeddings)", tf_name)
    if m:
        return f"bert.embeddings.{m[1]}.weight"
    m = re.fullmatch(r"bert/embeddings/LayerNorm/(gamma|beta)", tf_name)
    if m:
        return f"bert.embeddings.LayerNorm.{_PARAM[m[1]]}"
    m = re.fullmatch(r"bert/pooler/dense/(kernel|bias)", tf_name)
    if m:
        return f"bert.pooler.dense.{_PARAM[m[1]]}"
    m = re.fullmatch(r"bert/encoder/layer_(\d+)/(.+)/(kernel|bias|gamma|beta)", tf_name)
    if m and m[2] in _LAYER:
        return f"bert.encoder.layer.{m[1]}.{_LAYER[m[2]]}.{_PARAM[m[3]]}"
    raise KeyError(tf_name)


def convert_state(variables: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """TF variables -> torch state dict (NumPy): every variable mapped once or on the ignored list."""
    state, unknown = {}, []
    for name, value in variables.items():
        try:
            target = torch_name(name)
        except KeyError:
            unknown.append(name)
            continue
        if target is not None:
            state[target] = value.T if name.endswith("/kernel") else value  # TF dense kernels are [in, out]
    if unknown:
        raise DistillInputError(f"{where} holds variable(s) this converter does not know: {', '.join(sorted(unknown)[:5])}"
                                f"{' …' if len(unknown) > 5 else ''}; it reads Google's BERT checkpoints (bert/…, cls/…, "
                                f"output_weights/output_bias)")
    return state


def cased_from(folder: Path, vocab: list[str]) -> bool:
    """Cased or uncased: from the folder name (Google's ``cased_`` / ``uncased_`` prefixes), checked
    against the vocabulary (an uncased vocab has no capitalised word pieces)."""
    capitals = sum(1 for w in vocab if w[:1].isupper() and not w.startswith("[") and w[1:].islower())
    name = folder.name.lower()
    by_name = None if "cased" not in name else "uncased" not in name
    by_vocab = capitals > 0.01 * len(vocab)
    if by_name is not None and by_name != by_vocab:
        raise DistillInputError(f"{folder}: the folder name says {'cased' if by_name else 'uncased'} but vocab.txt "
                                f"{'has' if by_vocab else 'has no'} capitalised words ({capitals}); rename the folder to match its vocab")
    return by_vocab


def convert(folder: str | os.PathLike, out: str | os.PathLike, num_labels: int | None = None) -> Path:
    """Write ``out``: a transformers BertForSequenceClassification folder (model.safetensors, config.json
    with ``distill_source``, tokenizer) made from Google's release ``folder``. Returns ``out``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from distill.rundir import atomic_dir
    from teachers.tf_checkpoint import read_checkpoint

    folder = Path(folder)
    if not is_google_folder(folder):
        raise DistillInputError(f"{folder} is not a Google BERT folder (bert_config.json + {CKPT}.index)")
    if not (folder / "vocab.txt").is_file():
        raise DistillInputError(f"{folder}/vocab.txt is missing; Google's release folders ship it beside the checkpoint")
    conf = json.loads((folder / "bert_config.json").read_text())
    state = convert_state(read_checkpoint(folder / CKPT), str(folder / CKPT))
    head = state.get("classifier.weight")
    labels = head.shape[0] if head is not None else (num_labels or 2)
    config = BertConfig(**{k: v for k, v in conf.items() if k != "directionality"}, num_labels=labels)
    model = BertForSequenceClassification(config)
    own = model.state_dict()
    expected = {k for k in own if not k.endswith("position_ids") and (head is not None or not k.startswith("classifier."))}
    missing = sorted(expected - set(state))
    if missing:
        raise DistillInputError(f"{folder / CKPT} lacks {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}; "
                                f"is it a complete BERT checkpoint for its bert_config.json?")
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise DistillInputError(f"{folder / CKPT}: {k} has shape {tuple(state[k].shape)}, bert_config.json implies "
                                f"{tuple(own[k].shape)}; the config and checkpoint do not belong together")
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False)
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    cased = cased_from(folder, vocab)
    with atomic_dir(Path(out)) as tmp:
        model.config.distill_source = {"google_checkpoint": str(folder.resolve()), "cased": cased,
                                       "classifier_from_checkpoint": head is not None}
        model.save_pretrained(tmp)
        BertTokenizer.from_pretrained(str(folder), do_lower_case=not cased).save_pretrained(tmp)  # reads vocab.txt
    log.info("converted %s (%d variables, %s, head %s) into %s", folder, len(state), "cased" if cased else "uncased",
             "from the checkpoint" if head is not None else "new", out)
    return Path(out)


def cached_conversion(folder: str | os.PathLike) -> str:
    """``--teacher FOLDER`` for a Google folder: its conversion in ``$DISTILL_CACHE`` (default
    ~/.cache/distill/google/), made once and keyed by the checkpoint's index bytes and config."""
    folder = Path(folder)
    key = hashlib.sha256((folder / f"{CKPT}.index").read_bytes() + (folder / "bert_config.json").read_bytes()).hexdigest()[:16]
    out = Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill")) / "google" / f"{folder.name}-{key}"
    if not (out / "config.json").is_file():
        convert(folder, out)
    return str(out)
