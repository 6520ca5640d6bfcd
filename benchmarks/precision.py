"""bf16 against fp32 on this CPU, for teacher fine-tuning and the materials dump, in one run.

    python -m benchmarks.precision --teacher mpnet --train-samples 512 --output-dir runs/precision-mpnet

For each precision and seed: ``distill.teach`` fine-tunes the teacher for one epoch on the first
``--train-samples`` sentences and scores dev; training examples/s exclude the dev evaluation (its
own runtime, from the run's log, is subtracted). Then the first seed's fp32 model dumps
``--dump-split`` in each precision, each on its fastest path here: fp32 through the prepacked oneDNN
linears (GELU fused, worker threads), bf16 under CPU autocast (oneDNN bf16 matmuls: native
AVX512-BF16/AMX where the CPU has them, emulated in fp32 arithmetic where it does not). Reports
examples/s, top-label agreement and the largest |logit difference| of the bf16 dump against fp32.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.cli import config_from, dataclass_parser, field_docs, print_result, run_cli
from distill.devices import cpu_flags, cpu_name
from distill.rundir import read_json, write_json


@field_docs
@dataclass
class PrecisionConfig:
    teacher: str = "minilm"  # teacher name or folder, as distill.teach --teacher
    task: str = "sst2"  # task to fine-tune on
    data_dir: str = "../shared/data/glue_data"  # glue_data folder
    train_samples: int = 1024  # first N train sentences for each fine-tuning run (one epoch)
    seeds: int = 2  # seeds per precision (42, 43, ...): the spread the bf16 dev metric is judged against
    lr: float | None = None  # peak lr (default: the teacher's)
    dump_split: str = "dev"  # split dumped in both precisions by the first fp32 model
    output_dir: str = "runs/precision"  # one run directory per precision and seed below this


def cpu_bf16_instructions() -> list[str]:
    """The CPU's bf16 instruction sets as the kernel reports them (oneDNN uses them natively)."""
    return sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"})


def _train(cfg: PrecisionConfig, precision: str, seed: int) -> dict:
    from teachers.pipeline import TeachConfig, run

    out = Path(cfg.output_dir) / f"train-{precision}-s{seed}"
    if not (out / "metrics.json").is_file():
        run(TeachConfig(task=cfg.task, teacher=cfg.teacher, data_dir=cfg.data_dir, output_dir=str(out), epochs=1,
                        lr=cfg.lr, max_train_samples=cfg.train_samples, seed=seed, precision=precision,
                        evals_per_epoch=1, patience=0, splits=("dev",), save_steps=10_000))
    summary = read_json(out / "train_summary.json")
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    eval_s = sum(e.get("dev_runtime", 0.0) for e in events if e["event"] == "eval")
    train_s = summary["train_runtime"] - eval_s
    metric = next(iter(read_json(out / "metrics.json")["dev"].items()))
    return {"precision": precision, "seed": seed, "train_s": train_s, "eval_s": eval_s,
            "train_examples_per_s": cfg.train_samples / train_s, "dev_metric": metric[0], "dev": metric[1],
            "run_dir": str(out)}


def _dump(cfg: PrecisionConfig, model_dir: Path, precision: str) -> tuple[dict, np.ndarray]:
    from distill.materials import load
    from teachers.pipeline import TeachConfig, run

    out = Path(cfg.output_dir) / f"dump-{precision}"
    t = time.perf_counter()
    res = run(TeachConfig(task=cfg.task, teacher=str(model_dir), data_dir=cfg.data_dir, output_dir=str(out),
                          dump_only=True, precision=precision, splits=(cfg.dump_split,)))
    wall = time.perf_counter() - t
    event = [e for e in map(json.loads, (out / "log.jsonl").read_text().splitlines())
             if e["event"] == "dump" and e["split"] == cfg.dump_split][-1]
    logits = np.asarray(load(out, cfg.dump_split).logits)
    return {"precision": precision, "dump_s": event["seconds"], "dump_examples_per_s": event["examples_per_s"],
            "wall_s": wall, "metrics": res["metrics"].get(cfg.dump_split)}, logits


def run(cfg: PrecisionConfig) -> dict:
    import torch

    trains = [_train(cfg, p, 42 + s) for p in ("fp32", "bf16") for s in range(cfg.seeds)]
    model_dir = Path(trains[0]["run_dir"]) / "best"
    dumps, logits = {}, {}
    for p in ("fp32", "bf16"):
        dumps[p], logits[p] = _dump(cfg, model_dir, p)
    by = {p: [t for t in trains if t["precision"] == p] for p in ("fp32", "bf16")}
    mean = {p: float(np.mean([t["train_examples_per_s"] for t in by[p]])) for p in by}
    dev = {p: [t["dev"] for t in by[p]] for p in by}
    return {
        "teacher": cfg.teacher, "task": cfg.task, "train_samples": cfg.train_samples, "trains": trains, "dumps": dumps,
        "train_speed_bf16_over_fp32": mean["bf16"] / mean["fp32"],
        "dump_speed_bf16_over_fp32": dumps["bf16"]["dump_examples_per_s"] / dumps["fp32"]["dump_examples_per_s"],
        "dev_by_precision": dev, "dev_mean_diff_bf16_minus_fp32": float(np.mean(dev["bf16"]) - np.mean(dev["fp32"])),
        "dump_top_label_agreement": float(np.mean(logits["bf16"].argmax(-1) == logits["fp32"].argmax(-1))),
        "dump_max_abs_logit_diff": float(np.abs(logits["bf16"] - logits["fp32"]).max()),
        "machine": {"cpu": cpu_name(), "bf16_instructions": cpu_bf16_instructions(),
                    "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    def body():
        cfg = config_from(PrecisionConfig, dataclass_parser(PrecisionConfig, "python -m benchmarks.precision", __doc__).parse_args(argv))
        res = run(cfg)
        write_json(Path(cfg.output_dir) / "precision.json", res)
        print_result({k: v for k, v in res.items() if k not in ("trains", "dumps")})

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
