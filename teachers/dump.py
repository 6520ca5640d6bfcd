"""The teacher's dump: its outputs on every example of a split, as fast as this CPU allows, written
as teaching materials (``distill.materials``). ``distill.teach`` and ``benchmarks.dump_speed`` both
run it through ``dump_module`` + ``dump_outputs``, so the benchmark times the real path.

The speed paths, each checked equal to eager in the tests: fp32 linears prepacked for oneDNN with
the FFN's exact GELU fused in (``prepack_linears``), batches capped in padded tokens, worker threads
each running whole batches on a weight-sharing replica (``distill.inference.predict_arrays``),
optionally an inductor-compiled teacher (``FrozenCompiled``). ``--extra`` files are labelled in
shards that survive a kill (``dump_extra``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.data import Examples, iter_text_file
from distill.inference import Encoded, encode, predict_arrays
from distill.materials import assemble_shards, write_shard
from distill.rundir import JsonlLog, read_json
from distill.tasks import Task
from teachers.hf import HFTeacher


@dataclass
class DumpSettings:
    """How a dump batches and where it runs (``distill.teach``'s dump flags)."""

    max_length: int  # token limit per example
    batch_size: int  # most sentences in a batch
    batch_tokens: int | None  # most padded tokens in a batch (None or 0 = no cap)
    workers: int  # threads each running whole batches (distill.inference.resolve_workers)
    device: str = "cpu"
    precision: str = "fp32"
    shard_size: int = 100_000  # --extra files: rows in memory at a time, one resumable shard each


def dump_module(model: nn.Module, *, device: str = "cpu", precision: str = "fp32", prepack: bool = True,
                compile: bool = False) -> tuple[nn.Module, dict]:
    """The teacher as the dump runs it: fp32 CPU linears prepacked (``prepack_linears``, in place: the
    model only dumps from here on), wrapped as a ``ModelOutput`` model (``HFTeacher``), compiled by
    inductor on request. Returns (module, {"prepacked_linears", "gelu_fused_linears", "compile"})."""
    prepacked = prepack_linears(model) if prepack and not compile and device == "cpu" and precision == "fp32" else 0
    fused = sum(bool(getattr(m, "gelu", False)) for m in model.modules())
    teacher: nn.Module = HFTeacher(model).to(device)  # after prepacking: HFTeacher hooks the head
    if compile:
        teacher = FrozenCompiled(teacher)  # the materials' weights hash is of best/ on disk, unchanged
    return teacher, {"prepacked_linears": prepacked, "gelu_fused_linears": fused, "compile": compile}


def dump_outputs(teacher: nn.Module, tokenizer, examples: Examples, s: DumpSettings,
                 on_progress=None) -> tuple[np.ndarray, np.ndarray | None, Encoded]:
    """(logits [N, C], pooled [N, H] or None, the tokenised examples) of ``teacher`` on ``examples``:
    tokenised once, length-sorted batches of at most ``s.batch_size`` sentences and
    ``s.batch_tokens`` padded tokens, ``s.workers`` threads; rows in the examples' order."""
    enc = encode(tokenizer, examples, s.max_length)
    logits, pooled = predict_arrays(teacher, enc, pad_id=tokenizer.pad_token_id, batch_size=s.batch_size, device=s.device,
                                    precision=s.precision, on_progress=on_progress, max_tokens=s.batch_tokens,
                                    workers=s.workers)
    return logits, pooled, enc


def dump_extra(teacher: nn.Module, tokenizer, task: Task, s: DumpSettings, base: dict, name: str, path: str, rows: int,
               mat_dir: Path, jlog: JsonlLog, bar) -> int:
    """Label an --extra file shard by shard (``s.shard_size`` rows in memory at a time); finished
    shards survive a kill and are skipped by the next run; then the shards become one split.
    ``bar(description, total)`` is a progress context (``distill.progress.bar`` or a null one)."""
    shard_root = mat_dir / f".{name}.shards"
    st = Path(path).stat()
    meta = {"source": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "shard_size": s.shard_size, "max_length": s.max_length, "teacher_sha256": base["teacher"]["weights_sha256"]}
    if shard_root.is_dir() and any(
            {k: v for k, v in read_json(f / "shard.json").items() if k not in ("index", "n")} != meta
            for f in shard_root.iterdir() if (f / "shard.json").is_file()):
        shutil.rmtree(shard_root)  # shards of another file, teacher or shard size
    shards, done, t0 = [], 0, time.perf_counter()
    with bar(f"dump {name}", rows) as b:
        chunks = iter_text_file(path, split=name, pair=task.is_pair, text_columns=task.splits["train"].text_columns,
                                chunk=s.shard_size)
        for k, ex in enumerate(chunks):
            folder = shard_root / f"{k:05d}"
            shards.append(folder)
            if (folder / "shard.json").is_file() and read_json(folder / "shard.json")["n"] == len(ex):
                done += len(ex)
                if b:
                    b.advance(len(ex), note=f"shard {k} done before")
                continue
            ts = time.perf_counter()
            logits, pooled, enc = dump_outputs(teacher, tokenizer, ex, s, on_progress=b.advance if b else None)
            write_shard(folder, ex, logits, pooled, {**meta, "index": k})
            secs = time.perf_counter() - ts
            done += len(ex)
            jlog("dump_shard", split=name, shard=k, n=len(ex), seconds=round(secs, 3),
                 examples_per_s=round(len(ex) / secs, 1), tokens=int(enc.lengths.sum()), done=done, of=rows)
    assemble_shards(mat_dir, base, name, shards, task, source=str(path))
    shutil.rmtree(shard_root, ignore_errors=True)
    secs = time.perf_counter() - t0
    jlog("dump", split=name, n=rows, seconds=round(secs, 3), examples_per_s=round(rows / secs, 1), shards=len(shards))
    return rows


class PrepackedLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose weight oneDNN reorders once into its blocked layout, run
    by ``torch.ops.mkldnn._linear_pointwise`` (the kernel inductor's frozen graphs call).

    Why: eager fp32 ``nn.Linear`` goes to MKL's sgemm, which takes its AVX2 path on AMD CPUs. Measured
    on this project's AMD EPYC machine (2 cores, torch 2.13): a 2048^3 matmul at 174 GFLOP/s through
    ``torch.mm`` (MKL) and 417-442 through oneDNN; the SST-2 MiniLM dump went from 449 to 1,009
    sentences/s (with --dump-batch-tokens). Same math (fp32 accumulation), different blocking: outputs agree to ~1e-6.
    ``gelu`` applies the exact (erf) GELU to the output as a oneDNN post-op, on each tile while it is
    still in cache: bit-identical to ``F.gelu`` after the linear. (Its tanh approximation is not:
    within 5e-7, so tanh-GELU models keep their own activation.)
    """

    def __init__(self, linear: nn.Linear, batch_hint: int = 1024, gelu: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.gelu = linear.in_features, linear.out_features, gelu
        self.post_op = ("gelu", "none") if gelu else ("none", "")  # oneDNN (attr, algorithm): erf GELU or none
        w = linear.weight.detach()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(w, batch_hint), persistent=False)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        attr, algorithm = self.post_op
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, attr, [], algorithm)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, gelu={self.gelu}"


def _is_exact_gelu(act) -> bool:
    """Whether an activation module is exactly ``F.gelu`` with the erf: ``nn.GELU()`` or transformers'
    ACT2FN["gelu"] (``GELUActivation``; its pure-Python variant computes another formula)."""
    from transformers.activations import GELUActivation

    if isinstance(act, nn.GELU):
        return act.approximate == "none"
    return isinstance(act, GELUActivation) and act.act is nn.functional.gelu


def prepack_linears(module: nn.Module) -> int:
    """Swap every fp32 ``nn.Linear`` of a CPU ``module`` for a ``PrepackedLinear``, in place (the module
    is then for inference only: no gradients, no state_dict of those weights). Returns how many;
    0 where oneDNN is not built into torch.

    A BERT-style FFN input block (``*Intermediate``: ``intermediate_act_fn(dense(x))``, as in BERT,
    RoBERTa, ELECTRA, XLM-R, DeBERTa) with an exact ``F.gelu`` gets the GELU fused into its linear
    (the activation becomes ``nn.Identity``). Why: the [tokens, 4H] GELU output is the largest
    activation of the layer, and computing it on the linear's tiles saves a round trip through
    memory: the MiniLM SST-2 dump ran 4 % faster on the 2-core AMD machine, the same outputs.
    """
    if not torch.backends.mkldnn.is_available():
        return 0
    n = 0
    gelu = (type(module).__name__.endswith("Intermediate") and isinstance(getattr(module, "dense", None), nn.Linear)
            and _is_exact_gelu(getattr(module, "intermediate_act_fn", None)))
    for name, child in module.named_children():
        if isinstance(child, nn.Linear) and child.weight.device.type == "cpu" and child.weight.dtype == torch.float32:
            fuse = gelu and name == "dense"
            setattr(module, name, PrepackedLinear(child, gelu=fuse))
            if fuse:
                module.intermediate_act_fn = nn.Identity()
            n += 1
        else:
            n += prepack_linears(child)
    return n


class FrozenCompiled(nn.Module):
    """``module`` for inference, compiled by inductor with its weights frozen as constants.

    Freezing lets inductor hand oneDNN prepacked weights once and fuse the element-wise work around
    the matmuls (bias, GELU, residual add, LayerNorm; int8 (de)quantisation for torchao models).
    ``dynamic=True``: every length-sorted batch has its own shape, one graph serves them all.
    Measured on the SST-2 MiniLM teacher dump (8,000 train sentences, batch 128, 2 cores): 836 ->
    979 examples/s after ~40 s of compiling. Inference only (inference_mode/no_grad), not on XLA.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.compiled = torch.compile(module, dynamic=True)

    def forward(self, *args, **kwargs):
        import torch._inductor.config as inductor

        with inductor.patch(freezing=True):
            return self.compiled(*args, **kwargs)
