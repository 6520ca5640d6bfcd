"""``results.json`` -> ``report.md`` tables and ``pareto.png`` (accuracy against examples/s)."""

from __future__ import annotations

from pathlib import Path

from distill.tasks import task_from_record


def label(model: dict) -> str:
    """A short name for a model: "teacher" or its arch plus the run folder."""
    if model["kind"] == "teacher":
        return "teacher"
    return f"{model['arch']} ({short(model)})"


def short(model: dict) -> str:
    """The run's folder name (its parent's for a seed folder): cnn-kd, bilstm-nokd, ..."""
    if model["kind"] == "teacher":
        return "teacher"
    path = Path(model["run_dir"])
    return path.parent.name if path.name.startswith("seed-") else path.name


def score_key(models: list[dict]) -> str:
    """The accuracy column: the task's primary metric, or — where the dev split has no gold (a
    ranking task scored by its teacher alone) — the agreement with the teacher."""
    key = task_from_record(models[0]).primary_metric
    ok = all(key in r["metrics"] for m in models for r in m["backends"].values() if "metrics" in r)
    return key if ok else "teacher_agreement"


def points(results: dict, batch_size: str) -> list[dict]:
    """One point per (model, backend) that ran: accuracy (primary metric) and examples/s at ``batch_size``."""
    out = []
    key = score_key(results["models"])
    for m in results["models"]:
        for backend, r in m["backends"].items():
            if "error" in r or batch_size not in r["speed"]:
                continue
            out.append({"model": label(m), "short": short(m), "kind": m["kind"], "arch": m["arch"], "backend": backend,
                        "metric": r["metrics"][key], "examples_per_s": r["speed"][batch_size]["examples_per_s"]})
    return out


def pareto_front(pts: list[dict]) -> list[dict]:
    """Points no other point beats on both accuracy and speed, fastest first."""
    front = [p for p in pts if not any(q["metric"] >= p["metric"] and q["examples_per_s"] >= p["examples_per_s"]
                                       and (q["metric"] > p["metric"] or q["examples_per_s"] > p["examples_per_s"]) for q in pts)]
    return sorted(front, key=lambda p: -p["examples_per_s"])


def plot_pareto(results: dict, path: Path, batch_size: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = points(results, batch_size)
    front = pareto_front(pts)
    metric = score_key(results["models"])
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    markers = {"eager": "o", "bf16": "s", "int8": "D", "onnx": "^", "onnx-int8": "v"}
    names = list(dict.fromkeys(p["short"] for p in pts))
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    offsets = {b: (5, 6 - 4 * i) for i, b in enumerate(markers)}  # stagger labels of nearby backends
    for p in pts:
        ax.scatter(p["examples_per_s"], p["metric"], marker=markers.get(p["backend"], "o"), s=55,
                   color=colours[p["short"]], edgecolor="black" if p in front else "none", linewidth=1.2, zorder=3)
        ax.annotate(f"{p['short']} / {p['backend']}", (p["examples_per_s"], p["metric"]), textcoords="offset points",
                    xytext=offsets.get(p["backend"], (5, 4)), fontsize=6, color=colours[p["short"]])
    if front:
        xs = [p["examples_per_s"] for p in front]
        ys = [p["metric"] for p in front]
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1, label="Pareto front", zorder=2)
    for name, bl in (results.get("baselines") or {}).items():
        r = bl.get(batch_size)
        if r and name == "pipeline":
            ax.axvline(r["examples_per_s"], color="grey", linestyle=":", linewidth=1)
            ax.annotate("teacher via pipeline()", (r["examples_per_s"], ax.get_ylim()[1]), rotation=90, fontsize=7,
                        xytext=(2, -5), textcoords="offset points", color="grey", va="top")
    ax.set_xscale("log")
    ax.set_xlabel(f"examples/s at batch {batch_size} (log scale, {results['machine']['cpu_count']} CPU cores)")
    ax.set_ylabel(f"dev {metric}")
    ax.set_title(f"{results['models'][0]['task'].upper()}: accuracy against throughput (markers: "
                 + ", ".join(f"{m} {k}" for k, m in markers.items()) + ")", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def markdown(results: dict, batch_sizes: list[str]) -> str:
    s = results["summary"]
    mach = results["machine"]
    task = task_from_record(results["models"][0])
    key = score_key(results["models"])
    lines = [f"# Benchmark report — {task.name}", "",
             f"Machine: {mach['cpu']}, {mach['cpu_count']} cores, torch {mach['torch']} ({mach['torch_threads']} threads), "
             f"transformers {mach['transformers']}, onnxruntime {mach.get('onnxruntime', '-')}, Python {mach['python']}.",
             f"Command: `{results['command']}`", "",
             *([f"**Measured on a busy machine ({mach['busy']}): the speed figures are not a quiet machine's; "
                f"re-run when it is idle.**", ""] if mach.get("busy") else []),
             *([f"Load average {mach['load_before']['loadavg_1min']} / {mach['load_after']['loadavg_1min']} and fp32 matmul "
                f"peak {mach['load_before']['matmul_peak_gflops']} / {mach['load_after']['matmul_peak_gflops']} GFLOP/s "
                f"before / after the measurements.", ""] if "load_before" in mach else []),
             f"Speed: dev texts in file order, dynamic padding, tokenisation excluded (own column), {results['budget']['warmup']} "
             f"warm-up batches, median of {results['budget']['repeats']} passes of ≤ {results['budget']['max_seconds']} s. "
             f"Accuracy: the whole dev split ({results['models'][0]['dev_examples']} examples) per backend.", "",
             "| model | backend | dev " + key + " | Δ vs eager (pt) | teacher agreement | "
             + " | ".join(f"ex/s @{b}" for b in batch_sizes) + f" | p50 / p95 / p99 ms @{batch_sizes[0]} | params | size MB | peak RSS MB |",
             "|---|---|---|---|---|" + "---|" * len(batch_sizes) + "---|---|---|---|"]
    for m in results["models"]:
        eager = m["backends"].get("eager", {}).get("metrics", {}).get(key)
        for backend, r in m["backends"].items():
            if "error" in r:
                lines.append(f"| {label(m)} | {backend} | unavailable: {r['error']} |" + " |" * (len(batch_sizes) + 7))
                continue
            v = r["metrics"][key]
            delta = "" if eager is None or backend == "eager" else f"{100 * (v - eager):+.2f}"
            agree = r["metrics"].get("teacher_agreement")
            sp = r["speed"]
            b0 = sp[batch_sizes[0]]
            lines.append(f"| {label(m)} | {backend} | {v:.4f} | {delta} | {'' if agree is None else f'{agree:.4f}'} | "
                         + " | ".join(f"{sp[b]['examples_per_s']:,.0f}" for b in batch_sizes)
                         + f" | {b0['p50_ms']:.2f} / {b0['p95_ms']:.2f} / {b0['p99_ms']:.2f} | {m['params']:,} | "
                         f"{r['size_bytes'] / 1e6:.1f} | {m['peak_rss_mb']:.0f} |")
    lines += ["", "Tokenisation (fast WordPiece tokenizer, whole dev split, not in the model times above):", ""]
    for m in results["models"]:
        lines.append(f"- {label(m)}: {m['tokenize']['examples_per_s']:,.0f} examples/s")
    bl = results.get("baselines", {})
    if "pipeline" in bl:
        lines += ["", "Baseline — the teacher through `transformers.pipeline(\"text-classification\")` (tokenisation included): "
                  + ", ".join(f"{r['examples_per_s']:.1f} ex/s at batch {b}" for b, r in bl["pipeline"].items()) + "."]
    if "bert_base_random" in bl:
        r = next(iter(bl["bert_base_random"].values()))
        lines += [f"BERT-base (12 × 768, random weights from its config; {r['params']:,} parameters), eager fp32 at batch "
                  f"{next(iter(bl['bert_base_random']))}: {r['examples_per_s']:.1f} ex/s."]
    lines += ["", "## Summary", ""]
    for k, v in s.items():
        if isinstance(v, dict):
            v = ", ".join(f"{name} {x:,.2f}" for name, x in v.items())
        lines.append(f"- {k.replace('_', ' ')}: {v if not isinstance(v, float) else f'{v:,.2f}'}")
    lines += ["", "![accuracy against throughput](pareto.png)", ""]
    return "\n".join(lines)
