"""Batched inference over examples: tokenise once, length-sorted batches, dynamic padding.

Sorting by length means each batch pads only to its own longest example, so a dump over SST-2
(13 tokens on average, 66 at most) computes on ~1.1x the real tokens instead of max_length.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from distill.data import Examples


@dataclass
class Encoded:
    """Token ids of a split, unpadded: one list per example.

    Packed pairs (BERT) hold both sentences in ``input_ids`` with ``token_type_ids``; siamese pairs
    (students that encode each sentence alone) hold the second sentence in ``input_ids_b``.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    input_ids_b: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        n = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        if self.input_ids_b is not None:
            n += np.fromiter((len(x) for x in self.input_ids_b), dtype=np.int64, count=len(self.input_ids_b))
        return n


def encode(tokenizer, examples: Examples, max_length: int, *, siamese: bool = False) -> Encoded:
    """Tokenise a split (fast tokenizer, batched). Pairs are packed and truncated longest-first, or
    with ``siamese`` tokenised as two separate sentences of at most ``max_length`` tokens each."""
    if siamese and examples.text_b is not None:
        kw = dict(truncation=True, max_length=max_length, padding=False, return_attention_mask=False,
                  return_token_type_ids=False)
        return Encoded(tokenizer(examples.text_a, **kw)["input_ids"], None, tokenizer(examples.text_b, **kw)["input_ids"])
    enc = tokenizer(examples.text_a, examples.text_b, truncation=True, max_length=max_length,
                    padding=False, return_attention_mask=False)
    return Encoded(enc["input_ids"], enc.get("token_type_ids"))


def _pad(seqs: list[list[int]], pad_value: int, buckets: bool = False) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(map(len, seqs)))
    if buckets:  # XLA: a few fixed widths, so each compiled graph is reused (distill.devices.BUCKETS)
        from distill.devices import bucket_width

        width = bucket_width(width)
    ids = np.full((len(seqs), width), pad_value, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask


def pad_batch(enc: Encoded, idx, pad_id: int, *, buckets: bool = False) -> dict[str, torch.Tensor]:
    """Right-pad the examples ``idx`` to their longest (``buckets``: to the next bucket width):
    input_ids/attention_mask[/token_type_ids] [B, L] (and input_ids_b/attention_mask_b [B, L_b]
    for siamese pairs)."""
    ids, mask = _pad([enc.input_ids[i] for i in idx], pad_id, buckets)
    out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if enc.token_type_ids is not None:
        out["token_type_ids"] = torch.from_numpy(_pad([enc.token_type_ids[i] for i in idx], 0, buckets)[0])
    if enc.input_ids_b is not None:
        ids_b, mask_b = _pad([enc.input_ids_b[i] for i in idx], pad_id, buckets)
        out["input_ids_b"], out["attention_mask_b"] = torch.from_numpy(ids_b), torch.from_numpy(mask_b)
    return out


def length_sorted_batches(lengths: np.ndarray, batch_size: int, max_tokens: int | None = None) -> list[np.ndarray]:
    """Index batches, longest first (a memory problem shows up in the first batch, not the last).

    ``max_tokens``: a batch also holds at most this many padded tokens (its longest length x its
    size, at least one example), so short sentences come in larger batches and every batch hands
    the matmuls about the same number of rows.
    """
    order = np.argsort(-lengths, kind="stable")
    if not max_tokens:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    out, i = [], 0
    while i < len(order):
        n = max(1, min(batch_size, max_tokens // max(int(lengths[order[i]]), 1)))  # order[i] is the batch's longest
        out.append(order[i : i + n])
        i += n
    return out


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast context for ``precision``; fp32 is a no-op."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def replicate(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with its own module objects but the very same weight tensors (parameters
    and buffers, prepacked ones included: no extra weight memory). What modules and their hooks keep
    between calls (a pooler's mask, a head's stashed input) is then per copy, so copies can run side
    by side in threads."""
    memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
    return copy.deepcopy(module, memo)


def predict_arrays(model: torch.nn.Module, enc: Encoded, *, pad_id: int, batch_size: int = 128,
                   device: torch.device | str = "cpu", precision: str = "fp32",
                   on_progress: Callable[[int], None] | None = None,
                   max_tokens: int | None = None, workers: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Run a ``ModelOutput`` model over every example; returns (logits [N, C], pooled [N, H] or None).

    Outputs come back in the examples' own order (float32), whatever order the batches ran in.
    ``max_tokens`` caps a batch's padded tokens as well as its size (``length_sorted_batches``).
    ``device`` "xla" pads to fixed bucket widths (one compiled graph per width, not per batch) and
    keeps fixed batch sizes (``max_tokens`` ignored: every new batch size would be a new graph).
    ``workers`` > 1 (CPU only): that many threads each run whole batches on their own ``replicate``
    of the model with torch's threads split between them, instead of every op split across all
    threads. Why: a MiniLM-sized op is too short to share well; measured on the 2-core AMD machine,
    the whole MiniLM SST-2 train dump took 79.0 s with 2 workers and 86.9 s with 1 (same outputs).
    """
    from distill.devices import torch_device

    xla = str(device).startswith("xla")
    device = torch_device("xla") if xla else torch.device(device)
    model.eval()
    batches = length_sorted_batches(enc.lengths, batch_size, None if xla else max_tokens)
    out = _Outputs(len(enc))

    def run(m: nn.Module, idx: np.ndarray) -> None:
        batch = {k: v.to(device) for k, v in pad_batch(enc, idx, pad_id, buckets=xla).items()}
        with autocast(device, precision):
            res = m(**batch)
        out.put(idx, res.logits, res.pooled)

    # inference_mode is the fastest on CPU/CUDA, but XLA tensors refuse it ("Cannot set version_counter")
    grad_off = torch.no_grad if xla else torch.inference_mode
    if workers > 1 and device.type == "cpu" and len(batches) > 1:
        _in_threads(model, batches, run, workers, grad_off, on_progress)
    else:
        with grad_off():
            for idx in batches:
                run(model, idx)
                if on_progress is not None:
                    on_progress(len(idx))
    return out.logits, out.pooled


class _Outputs:
    """Rows of logits [N, C] and pooled [N, H], allocated at the first batch (C, H unknown before)."""

    def __init__(self, n: int):
        self.n, self.lock = n, threading.Lock()
        self.logits: np.ndarray | None = None
        self.pooled: np.ndarray | None = None

    def put(self, idx: np.ndarray, logits: torch.Tensor, pooled: torch.Tensor | None) -> None:
        lg = logits.float().cpu().numpy()
        pl = None if pooled is None else pooled.float().cpu().numpy()
        with self.lock:
            if self.logits is None:
                self.logits = np.zeros((self.n, lg.shape[-1]), dtype=np.float32)
                if pl is not None:
                    self.pooled = np.zeros((self.n, pl.shape[-1]), dtype=np.float32)
        self.logits[idx] = lg  # batches hold disjoint rows: no lock needed for the copy
        if self.pooled is not None:
            self.pooled[idx] = pl


def _in_threads(model: nn.Module, batches: list[np.ndarray], run: Callable, workers: int, grad_off,
                on_progress: Callable[[int], None] | None) -> None:
    """``run(replica, idx)`` for every batch on ``workers`` threads, each taking the next batch when
    it is free; progress is reported from the calling thread. torch's thread count is restored."""
    replicas = [model] + [replicate(model) for _ in range(workers - 1)]
    threads = torch.get_num_threads()
    pending, lock, done, stop = iter(batches), threading.Lock(), queue.SimpleQueue(), threading.Event()

    def work(m: nn.Module) -> None:
        torch.set_num_threads(max(1, threads // workers))  # this thread's share of the cores
        try:
            with grad_off():  # grad mode is per thread
                while not stop.is_set():
                    with lock:
                        idx = next(pending, None)
                    if idx is None:
                        return
                    run(m, idx)
                    done.put(len(idx))
        except BaseException:
            stop.set()  # the other workers stop at their next batch
            raise

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="distill-predict") as pool:
            futures = [pool.submit(work, m) for m in replicas]
            try:
                while not all(f.done() for f in futures):
                    with contextlib.suppress(queue.Empty):
                        n = done.get(timeout=0.05)
                        if on_progress is not None:
                            on_progress(n)
            finally:
                stop.set()  # on Ctrl-C here, workers finish their batch and quit
            while not done.empty():
                n = done.get()
                if on_progress is not None:
                    on_progress(n)
            for f in futures:
                f.result()  # a worker's exception, raised here
    finally:
        torch.set_num_threads(threads)


def resolve_workers(requested: int, device: str, compiled: bool = False) -> int:
    """``predict_arrays`` workers for a ``--dump-workers``-style request: ``requested`` when > 0, else
    one per torch thread for an eager CPU model and 1 otherwise (CUDA and XLA run one stream; an
    inductor-compiled model is not replicated)."""
    if requested:
        return requested
    return torch.get_num_threads() if device == "cpu" and not compiled else 1
