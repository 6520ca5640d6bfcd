"""Static word vectors averaged from a teacher's lower layers: the ``--embedding-init context`` table.

Bommasani et al. (2020), "Interpreting Pretrained Contextualized Representations via Reductions to
Static Embeddings": a token's hidden state averaged over many contexts is a static word vector that
beats word2vec and GloVe on word similarity, best from the lower layers; Ethayarajh (2019), "How
Contextual are Contextualized Word Representations?": the lower layers are the least context-specific.
The teacher's *input* table (``--embedding-init teacher``) knows nothing of the context a word comes
in; its layer-``L`` states, averaged over the train split, do. Tokens the split never shows get a
ridge regression from the input table, fitted on the tokens it shows often enough.

The table costs a forward pass through ``L`` layers over the train split (MPNet, SST-2, layer 4:
about 7 minutes on two cores), so it is kept beside the teacher's materials, keyed by what it was
computed from, and every seed, resume and tuning trial reuses it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.inference import Encoded, length_sorted_batches, pad_batch
from distill.materials import ids_sha256, weights_sha256

log = logging.getLogger(__name__)

MIN_COUNT = 3  # tokens seen at least this often fit the ridge regression for the unseen ones (rarer averages are noisy)
RIDGE = 0.01  # ridge penalty, as a share of the mean squared centred row norm of the input table (scale-free)
BATCH_TOKENS = 1024  # padded tokens a batch: ~1k matmul rows, the dump's setting (teachers.pipeline)


def context_layer(num_layers: int) -> int:
    """A third of the depth, at least 1: layer 4 of 12 (MPNet, bert-base), 2 of 6 (MiniLM). Bommasani et
    al. found the best static vectors in the lower layers; a third is where the prototype was declared
    (docs/mpnet.md) and measured."""
    return max(1, round(num_layers / 3))


@dataclass(frozen=True)
class TableKey:
    """What a cached table was computed from; a table whose key differs is computed afresh."""

    teacher_sha256: str  # the teacher's weight files, hashed from the files now
    layer: int
    ids_sha256: str  # the train split's example ids
    max_length: int

    def metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def token_state_sums(encoder: nn.Module, enc: Encoded, *, pad_id: int, vocab_size: int, skip_ids: set[int],
                     on_progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of each token's output state from ``encoder`` over every sentence of ``enc``
    (both sentences of a siamese pair; special tokens and padding left out): sums [V, H] float64,
    counts [V] int64. ``encoder(input_ids, attention_mask)`` returns an object with ``last_hidden_state``
    [B, T, H]. A hand-written scatter-add: no library averages contextual states per vocabulary entry."""
    sentences = Encoded(list(enc.input_ids) + list(enc.input_ids_b or []), None)
    skip = torch.tensor(sorted(skip_ids), dtype=torch.long)
    sums, counts = None, torch.zeros(vocab_size, dtype=torch.long)
    with torch.inference_mode():
        for idx in length_sorted_batches(sentences.lengths, 256, BATCH_TOKENS):
            batch = pad_batch(sentences, idx, pad_id)
            ids, mask = batch["input_ids"], batch["attention_mask"]
            states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, H]
            keep = mask.bool() & ~torch.isin(ids, skip)  # [B, T]
            if sums is None:
                sums = torch.zeros(vocab_size, states.shape[-1], dtype=torch.float64)
            sums.index_add_(0, ids[keep], states[keep].double())
            counts += torch.bincount(ids[keep], minlength=vocab_size)
            if on_progress is not None:
                on_progress(len(idx))
    return sums, counts


def fill_unseen(means: torch.Tensor, counts: torch.Tensor, input_table: torch.Tensor) -> tuple[torch.Tensor, float]:
    """[V, H] averages (rows with count 0 undefined) -> a full table: the unseen rows predicted from the
    input table [V, H_in] by a ridge regression fitted on the rows seen >= MIN_COUNT times (scikit-learn),
    the seen rows kept. Returns (table, R² of the fit on its own rows)."""
    from sklearn.linear_model import Ridge

    x = input_table.double().numpy()
    fit = (counts >= MIN_COUNT).numpy()
    if fit.sum() < 2:
        raise ValueError(f"the train split shows fewer than 2 tokens {MIN_COUNT} times or more: too little text for context vectors")
    centred = x[fit] - x[fit].mean(0)
    ridge = Ridge(alpha=RIDGE * float((centred ** 2).sum(1).mean())).fit(x[fit], means[fit].numpy())
    table = means.clone()
    unseen = counts == 0
    if unseen.any():
        table[unseen] = torch.from_numpy(ridge.predict(x[unseen.numpy()]))
    return table, float(ridge.score(x[fit], means[fit].numpy()))


def context_table(encoder: nn.Module, enc: Encoded, input_table: torch.Tensor, *, pad_id: int, skip_ids: set[int],
                  on_progress=None) -> torch.Tensor:
    """The ``--embedding-init context`` table [V, H] (float32): each token's average ``encoder`` state over
    ``enc``, the unseen tokens regressed from ``input_table`` [V, H_in], the whole rescaled to the input
    table's mean row norm (the scale the students' initialisation and learning rates were tuned on),
    the padding row zero."""
    vocab_size = input_table.shape[0]
    sums, counts = token_state_sums(encoder, enc, pad_id=pad_id, vocab_size=vocab_size, skip_ids=skip_ids,
                                    on_progress=on_progress)
    means = sums / counts.clamp(min=1).unsqueeze(1)  # [V, H]
    table, r2 = fill_unseen(means, counts, input_table)
    table[pad_id] = 0
    table = table * (input_table.double().norm(dim=1).mean() / table.norm(dim=1).mean())
    log.info("context word vectors: %d of %d tokens seen in %d sentences (%d occurrences); the other %d from a "
             "ridge fit on the input table, R² %.3f", int((counts > 0).sum()), vocab_size,
             len(enc) + len(enc.input_ids_b or []), int(counts.sum()), int((counts == 0).sum()), r2)
    return table.float()


def cache_path(teacher_root: Path, layer: int) -> Path:
    """Where a teacher run keeps its layer-``layer`` table (beside ``materials/``)."""
    return Path(teacher_root) / "word-vectors" / f"context-layer{layer}.safetensors"


def read_cached(path: Path, key: TableKey) -> torch.Tensor | None:
    """The table at ``path`` when its recorded key equals ``key`` (recomputed by the caller), else None."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as fh:
            if fh.metadata() != key.metadata():
                log.info("%s was computed from other inputs; computing it afresh", path)
                return None
            return fh.get_tensor("table")
    except (SafetensorError, OSError) as exc:
        log.warning("%s is unreadable (%s); computing it afresh", path, exc)
        return None


def write_cached(path: Path, key: TableKey, table: torch.Tensor) -> None:
    """Save atomically; a teacher run the user cannot write to only costs the reuse."""
    from safetensors.torch import save

    from distill.rundir import write_bytes

    try:
        write_bytes(path, save({"table": table.contiguous()}, metadata=key.metadata()))
    except OSError as exc:
        log.warning("could not keep the context word vectors at %s (%s); the next run computes them again", path, exc)


def truncated_encoder(model: nn.Module, layer: int) -> nn.Module:
    """The base encoder of a transformers sequence classifier cut after ``layer`` layers, for inference
    (its output ``last_hidden_state`` is then layer ``layer``'s). MPNet's relative-position bias lives in
    the encoder, not in a layer, so it is kept."""
    base = model.base_model
    layers = base.encoder.layer
    if not 1 <= layer <= len(layers):
        raise ValueError(f"layer {layer} is outside the teacher's 1..{len(layers)}")
    base.encoder.layer = layers[:layer]
    return base.eval().requires_grad_(False)


def teacher_context_table(teacher, train, tokenizer, input_table: torch.Tensor, teacher_config: dict, max_length: int,
                          progress=None) -> torch.Tensor:
    """The context table of ``teacher`` (a ``distill.materials.TeacherRun``, its ``config.json`` as
    ``teacher_config``) over ``train`` (its train split, a ``students.loop.SplitData``): read from the run's
    cache when computed from the same weights, layer, ids and max length, else computed and kept there.
    ``progress``: ``distill.progress.bar`` or None."""
    from teachers.dump import prepack_linears
    from teachers.hf import load_teacher

    layer = context_layer(int(teacher_config["num_hidden_layers"]))
    one = teacher.ensemble is None and not teacher.manifest["teacher"].get("members")  # else: the first member's model
    key = TableKey(teacher.weights_sha256 if one else weights_sha256(teacher.model_dir), layer, ids_sha256(train.ids), max_length)
    path = cache_path(teacher.model_dir.parent, layer)
    table = read_cached(path, key)
    if table is not None:
        log.info("context word vectors (layer %d) from %s", layer, path)
        return table
    model, _ = load_teacher(str(teacher.model_dir))
    encoder = truncated_encoder(model, layer)
    prepack_linears(encoder)  # the dump's fast fp32 path on CPU (teachers.dump)
    skip = set(tokenizer.all_special_ids)
    n = len(train.enc) + len(train.enc.input_ids_b or [])
    bar = progress or (lambda description, total: contextlib.nullcontext(None))
    with bar(f"context word vectors (layer {layer})", n) as b:
        table = context_table(encoder, train.enc, input_table, pad_id=tokenizer.pad_token_id, skip_ids=skip,
                              on_progress=b.advance if b is not None else None)
    write_cached(path, key, table)
    return table
