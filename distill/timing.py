"""Timing a model on a run's dev texts: the latency/throughput timer the benchmarks report and
``distill.tune --objective pareto`` minimises (one timer, so the two never disagree)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.inference import pad_batch


@dataclass
class Budget:
    batch_sizes: tuple[int, ...] = (1, 32, 128)
    max_seconds: float = 3.0  # timed seconds per pass (model x backend x batch size)
    repeats: int = 3  # timed passes; examples/s is their median
    warmup: int = 2  # untimed batches first (allocator, oneDNN/ORT kernel selection)


def dev_data(run_dir: Path):
    """(dev Examples, the teacher's dev logits, row for row) of a run directory."""
    from distill.materials import eval_materials

    mat = eval_materials(run_dir)
    return mat.to_examples(), np.asarray(mat.logits)


def file_order_batches(enc, batch_size: int, pad_id: int) -> list[dict]:
    """Padded batches of the examples in file order (real lengths, as traffic arrives): what speed is timed on."""
    return [pad_batch(enc, list(range(i, min(i + batch_size, len(enc)))), pad_id) for i in range(0, len(enc), batch_size)]


def time_batches(fn, batches: list[dict], budget: Budget) -> dict:
    """examples/s (median of passes) and per-batch latency percentiles of ``fn`` over ``batches``."""
    for b in batches[: budget.warmup]:
        fn(b)
    rates, lat = [], []
    for _ in range(budget.repeats):
        n, t_pass = 0, 0.0
        for b in batches:
            t0 = time.perf_counter()
            fn(b)
            dt = time.perf_counter() - t0
            lat.append(dt)
            n += len(b["input_ids"])
            t_pass += dt
            if t_pass >= budget.max_seconds:
                break
        rates.append(n / t_pass)
    ms = np.array(lat) * 1e3
    return {"examples_per_s": float(statistics.median(rates)), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "timed_batches": len(lat), "passes": [round(r, 2) for r in rates]}
