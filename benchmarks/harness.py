"""Measuring one run directory: accuracy and speed per backend, on the run's real dev texts.

Speed: the dev examples in file order (real lengths, as a server sees them) cut into batches of
each size and padded to their own longest (dynamic padding); tokenisation is timed on its own and
kept out of the model time; ``warmup`` batches first, then ``repeats`` timed passes of at most
``max_seconds`` each; examples/s is the median pass, latencies are per batch over all passes.
Accuracy: the whole dev split per backend (length-sorted batches of 128), so a backend's accuracy
is measured, never assumed.
"""

from __future__ import annotations

import copy
import io
import logging
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from distill import metrics as task_metrics
from distill.inference import autocast, encode, length_sorted_batches, pad_batch
from distill.tasks import task_record
from distill.rundir import read_json
from distill.timing import Budget, dev_data, file_order_batches, time_batches

log = logging.getLogger(__name__)

BACKENDS = ("eager", "bf16", "int8", "onnx", "onnx-int8")


def machine_load(peak_fn=None) -> dict:
    """How busy the machine is right now: load average and one fp32 matmul peak (GFLOP/s)."""
    import os

    if peak_fn is None:
        from benchmarks.dump_speed import matmul_peaks

        peak_fn = lambda: max(matmul_peaks(repeats=5).values())  # noqa: E731
    return {"loadavg_1min": round(os.getloadavg()[0], 2), "matmul_peak_gflops": round(peak_fn() / 1e9, 1)}


def busy_reason(before: dict, after: dict, cores: int) -> str | None:
    """Why figures taken between ``before`` and ``after`` (``machine_load``) are not a quiet
    machine's, or None: a load average above the core count (other work was queued), or a matmul
    peak that moved by over 20 % (another process took cores for part of the run)."""
    load = max(before["loadavg_1min"], after["loadavg_1min"])
    if load > cores:
        return f"load average {load} on {cores} cores"
    lo, hi = sorted((before["matmul_peak_gflops"], after["matmul_peak_gflops"]))
    if lo < 0.8 * hi:
        return f"matmul peak {lo} vs {hi} GFLOP/s before/after"
    return None


def machine_info() -> dict:
    import transformers

    from distill.devices import cpu_name

    info = {"cpu": cpu_name(), "cpu_count": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def _quantize_int8(model: torch.nn.Module, run_dir: Path, calib: list[dict] | None, smooth_alpha: float = 0.5) -> torch.nn.Module:
    """Dynamic int8 with torchao (torch.ao.quantization is deprecated in torch 2.13): every nn.Linear
    gets int8 weights (one scale per output channel) and int8 activations quantised per token at run
    time, after SmoothQuant (``benchmarks.smoothquant.smooth_linears``, alpha 0.5, 512 training texts) moved
    the activations' outlier channels into the weights — per-token scales cure BERT's [CLS] outlier
    row but not its outlier channels (SST-2 MiniLM teacher on the AMD machine: -0.57 pt without,
    see the README) — then inductor compiles the model with frozen weights (``teachers.dump.FrozenCompiled``),
    which lowers the int8 matmuls to oneDNN's AMX/VNNI kernels and fuses the (de)quantisation around them.
    Eager torchao int8 is barely faster than fp32 (one tensor-subclass dispatch per op): on the SST-2
    MiniLM teacher at batch 32, 290 ex/s eager vs 614 compiled and frozen (fp32 eager 255).
    LSTM and convolution weights stay fp32 (torchao quantises linear layers)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from teachers.dump import FrozenCompiled
    from teachers import HFTeacher, load_teacher

    if isinstance(model, HFTeacher):  # a fresh copy (the eager backend keeps the fp32 one), its hook on the new head
        model = HFTeacher(load_teacher(str(run_dir / "best"))[0])
    else:
        model = copy.deepcopy(model)
    if smooth_alpha > 0 and calib:
        from benchmarks.smoothquant import smooth_linears

        smooth_linears(model.eval(), calib, smooth_alpha)
    quantize_(model.eval(), Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
    return FrozenCompiled(model)


def _state_size(model: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


class Runner:
    """One backend of one model: ``__call__(batch) -> logits`` (numpy), plus its size on disk."""

    def __init__(self, backend: str, model, run_dir: Path, size_bytes: int, calib: list[dict] | None = None):
        self.backend, self.size_bytes = backend, size_bytes
        self.session = None
        self.model = model
        if backend in ("onnx", "onnx-int8"):
            from distill.export import ExportConfig
            from distill.export import run as export
            from distill.onnx import INT8_SCHEME, ort_session, seven_bit_weights

            onnx = run_dir / "model.onnx"
            q = run_dir / "model.int8.onnx"
            exported = read_json(run_dir / "export.json") if (run_dir / "export.json").is_file() else {}
            int8 = exported.get("int8", {})
            if (not onnx.is_file() or not q.is_file() or int8.get("scheme") != INT8_SCHEME
                    or int8.get("reduce_range") != seven_bit_weights()):
                export(ExportConfig(str(run_dir), int8=True))  # missing, from an older recipe, or for another CPU kind
            path = onnx if backend == "onnx" else q
            self.session, self.size_bytes = ort_session(path), path.stat().st_size
            self.names = [i.name for i in self.session.get_inputs()]
        elif backend == "int8":
            self.model = _quantize_int8(model, run_dir, calib)
            self.size_bytes = _state_size(self.model.module)  # FrozenCompiled: the quantised model, once

    @torch.inference_mode()
    def __call__(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        if self.session is not None:
            return self.session.run(["logits"], {k: batch[k].numpy() for k in self.names})[0]
        with autocast(torch.device("cpu"), "bf16" if self.backend == "bf16" else "fp32"):
            return self.model(**batch).logits.float().numpy()


def measure_run(run_dir: str | Path, backends=BACKENDS, budget: Budget | None = None) -> dict:
    """Every figure for one run directory (a teacher, a student or a student's seed folder)."""
    from distill.rundir import resolve_run
    from students.predictor import load_predictor

    budget = budget or Budget()
    run_dir = resolve_run(run_dir)  # a --seeds run: its best seed, as predict does
    cfg = read_json(run_dir / "config.json")
    task, model, tokenizer, max_length, siamese = load_predictor(run_dir, "cpu")
    model.eval()
    kind = cfg.get("kind")
    weights = run_dir / ("best/model.safetensors" if kind == "teacher" else "model/model.safetensors")
    ex, teacher_logits = dev_data(run_dir)
    pad = tokenizer.pad_token_id

    tok_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        enc = encode(tokenizer, ex, max_length, siamese=siamese)
        tok_times.append(time.perf_counter() - t0)
    tok_s = statistics.median(tok_times)
    in_order = {bs: file_order_batches(enc, bs, pad) for bs in budget.batch_sizes}
    sorted_batches = [(idx, pad_batch(enc, idx, pad)) for idx in length_sorted_batches(enc.lengths, 128)]

    out = {"run_dir": str(run_dir), "kind": kind, "arch": cfg.get("arch") or cfg.get("teacher"), **task_record(task),
           "params": sum(p.numel() for p in model.parameters()), "size_bytes": weights.stat().st_size,
           "dev_examples": len(ex), "dev_tokens": int(enc.lengths.sum()),
           "tokenize": {"seconds": tok_s, "examples_per_s": len(ex) / tok_s}, "backends": {}}
    for backend in backends:
        logits = np.zeros((len(ex), task.num_labels), dtype=np.float32)
        try:
            calib = None
            if backend == "int8":  # SmoothQuant's calibration texts, tokenised with the tokenizer already loaded
                from distill.onnx import calibration_batches

                calib = calibration_batches(run_dir, tokenizer, max_length, siamese)[0]
            runner = Runner(backend, model, run_dir, out["size_bytes"], calib)
            for idx, batch in sorted_batches:  # the first calls also compile (int8)
                logits[idx] = runner(batch)
        except Exception as exc:  # a backend missing (no onnxruntime, no C++ compiler) must not sink the report
            log.warning("%s: backend %s unavailable (%s)", run_dir, backend, exc)
            out["backends"][backend] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            continue
        acc = task_metrics.compute(task, logits, ex.gold, ex.groups) if ex.gold is not None else {}
        if kind != "teacher" or ex.gold is None:  # a teacher without dev gold: agreement with its own dump
            from students.loop import teacher_agreement

            acc["teacher_agreement"] = teacher_agreement(task, logits, teacher_logits)
        speed = {str(bs): time_batches(runner, batches, budget) for bs, batches in in_order.items()}
        out["backends"][backend] = {"metrics": acc, "size_bytes": runner.size_bytes, "speed": speed}
        log.info("%s %s: %s, %s ex/s at batch %s", run_dir.name, backend, acc,
                 f"{speed[str(budget.batch_sizes[-1])]['examples_per_s']:.0f}", budget.batch_sizes[-1])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def measure_pipeline(teacher_run: str | Path, budget: Budget, limit: int = 512) -> dict:
    """The baseline: the teacher through ``transformers.pipeline("text-classification")`` (its own
    tokenisation included), on the first ``limit`` dev texts, per batch size."""
    from transformers import pipeline

    from students.predictor import load_predictor
    from teachers import load_teacher

    run_dir = Path(teacher_run)
    task, _, _, max_length, _ = load_predictor(run_dir, "cpu")
    model, tok = load_teacher(str(run_dir / "best"))
    ex, _ = dev_data(run_dir)
    n = min(limit, len(ex))
    inputs = ex.text_a[:n] if ex.text_b is None else [{"text": a, "text_pair": b} for a, b in zip(ex.text_a[:n], ex.text_b[:n])]
    pipe = pipeline("text-classification", model=model.eval(), tokenizer=tok, device="cpu")
    out = {}
    for bs in budget.batch_sizes:
        pipe(inputs[: max(bs, 2)], batch_size=bs, truncation=True, max_length=max_length)  # warm-up
        t0 = time.perf_counter()
        done = 0
        while done < n:
            chunk = inputs[done : done + max(bs, 16)]
            pipe(chunk, batch_size=bs, truncation=True, max_length=max_length)
            done += len(chunk)
            if time.perf_counter() - t0 >= budget.max_seconds * budget.repeats:
                break
        out[str(bs)] = {"examples_per_s": done / (time.perf_counter() - t0), "examples": done}
    return out


def measure_random_bert_base(teacher_run: str | Path, budget: Budget, batch_size: int = 32, **config_overrides) -> dict:
    """BERT-base (12 x 768, randomly initialised from its config: same compute as the trained one)
    on the teacher run's dev texts at one batch size, eager fp32."""
    from transformers import BertConfig, BertForSequenceClassification

    from students.predictor import load_predictor

    run_dir = Path(teacher_run)
    task, _, tokenizer, max_length, _ = load_predictor(run_dir, "cpu")
    ex, _ = dev_data(run_dir)
    torch.manual_seed(0)
    conf = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=task.num_labels, **config_overrides)  # bert-base defaults
    model = BertForSequenceClassification(conf).eval()
    enc = encode(tokenizer, ex, max_length)
    batches = [pad_batch(enc, list(range(i, min(i + batch_size, len(ex)))), tokenizer.pad_token_id)
               for i in range(0, len(ex), batch_size)]

    @torch.inference_mode()
    def fn(b):
        return model(**b).logits

    res = time_batches(fn, batches, budget)
    res["params"] = sum(p.numel() for p in model.parameters())
    return {str(batch_size): res}
