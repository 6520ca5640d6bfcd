"""Peer comparison: the same TextCNN, on the same SST-2 materials, distilled by TextBrewer's
``BasicDistiller`` and by distill's own loop, in one run.

    python -m benchmarks.peer_textbrewer runs/sst2-mean --epochs 2 --output runs/peer.json

Everything that decides the numbers is shared: the module and its initial weights (teacher word
embeddings), the batches in the same order (distill's length-grouped sampler), the optimisers
(AdamW for dense weights + SparseAdam for the sparse embedding, linear decay), gradient clipping of
the dense weights, the temperature and the loss — TextBrewer's ``kd_loss_type="ce"`` (cross entropy
to the teacher's softmax at T) weighted by α·T² has the same gradient as distill's KL·T² weighted by
α, and TextBrewer's hard-label weight is 1-α. The teacher's logits come from the materials
(TextBrewer's ``teacher_cache`` batch field), so neither side runs the teacher. Reported: seconds per
epoch (training only) and dev accuracy of each. Needs ``pip install .[peers]`` (textbrewer).
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.cli import config_from, dataclass_parser, field_docs
from distill.inference import pad_batch
from distill.materials import open_teacher_run
from distill.rundir import JsonlLog, write_json
from students.loop import FitOptions, SplitData, evaluate, fit, grouped_batches, linear_schedule, make_optimizers
from students.train import StudentConfig, prepare, resolved_for


class _ClippedOptimizer:
    """AdamW + SparseAdam behind one ``step()`` that clips the dense gradients first, exactly as
    distill's loop does; TextBrewer drives a single optimizer object and clips every parameter
    (sparse gradients included), so its own clipping is switched off and this one used."""

    def __init__(self, optimizers, dense_params, max_norm):
        self.optimizers, self.dense, self.max_norm = optimizers, dense_params, max_norm
        self.param_groups = [g for o in optimizers for g in o.param_groups]

    def step(self):
        if self.max_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.dense, self.max_norm)
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True):
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)


class EpochBatches:
    """distill's batches for successive epochs: TextBrewer iterates the loader once per epoch. The
    teacher's logits come from the materials (``teacher_cache``), or with ``teacher_inputs`` the
    teacher gets the padded batch to run on (GeneralDistiller with the teacher in the loop)."""

    def __init__(self, data: SplitData, opts: FitOptions, pad_id: int, teacher_inputs: bool = False):
        self.data, self.opts, self.pad_id, self.epoch, self.teacher_inputs = data, opts, pad_id, 0, teacher_inputs
        self.t_logits = torch.from_numpy(np.ascontiguousarray(data.teacher_logits, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(data.labels))

    def __len__(self):
        return int(np.ceil(len(self.data) / self.opts.batch_size))

    def __iter__(self):
        batches = grouped_batches(self.data.enc.lengths, self.opts.batch_size, self.opts.seed, self.epoch)
        self.epoch += 1
        for idx in batches:
            b = pad_batch(self.data.enc, idx, self.pad_id)
            student = {**b, "labels": self.labels[idx]}
            if self.teacher_inputs:
                yield {"student": student, "teacher": dict(b)}
            else:
                yield {"student": student, "teacher": {}, "teacher_cache": {"logits": self.t_logits[idx]}}


class _WithLoss(torch.nn.Module):
    """The student as TextBrewer expects it: a dict with logits and the hard-label loss."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None):
        logits = self.model(input_ids, attention_mask).logits
        return {"logits": logits, "loss": torch.nn.functional.cross_entropy(logits, labels)}


@field_docs
@dataclass
class PeerConfig:
    __positional__ = ("teacher_run",)

    teacher_run: str  # a finished distill.teach SST-2 run with materials
    epochs: int = 2  # epochs for both frameworks
    batch_size: int = 32  # examples per optimiser step for both
    seed: int = 42  # the same initial student and batch order for both
    output: str | None = None  # write the results JSON here


def run(pc: PeerConfig) -> dict:  # noqa: PLR0915 - the two frameworks side by side on the same set-up, in order
    import textbrewer
    from textbrewer import BasicDistiller, DistillationConfig, TrainingConfig

    epochs, seed, output = pc.epochs, pc.seed, pc.output
    base = StudentConfig(arch="cnn", materials=pc.teacher_run, epochs=epochs, batch_size=pc.batch_size, seed=seed,
                         patience=0, save_steps=0, device="cpu")
    base.validate()
    teacher = open_teacher_run(pc.teacher_run, "sst2")
    cfg = resolved_for(base, teacher)
    setup = prepare(cfg, teacher)  # the student set-up distill.student runs
    train, dev, pad = setup.train, setup.dev, setup.tokenizer.pad_token_id
    opts = FitOptions(**{f: getattr(cfg, f) for f in FitOptions.__dataclass_fields__ if hasattr(cfg, f)})

    def fresh_model():
        return setup.new_model(cfg)

    results = {}
    # distill
    with tempfile.TemporaryDirectory() as tmp:
        model = fresh_model()
        t0 = time.perf_counter()
        summary = fit(teacher.task, model, train, dev, opts, Path(tmp), pad_id=pad, save_best=lambda m, d: None,
                      jlog=JsonlLog(Path(tmp) / "log.jsonl"))
        wall = time.perf_counter() - t0
        final, _ = evaluate(teacher.task, model, dev, pad_id=pad, opts=opts)
        results["distill"] = {"epoch_seconds": summary["epoch_seconds"], "dev_accuracy_per_epoch":
                              [h["accuracy"] for h in summary["history"]], "dev_accuracy": final["accuracy"],
                              "wall_seconds": wall}
    # TextBrewer
    model = fresh_model()
    optimizers, dense = make_optimizers(model, None, opts)
    opt = _ClippedOptimizer(optimizers, dense, opts.max_grad_norm)
    loader = EpochBatches(train, opts, pad)
    factor = linear_schedule(len(loader) * epochs, opts.warmup_ratio)
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in optimizers]

    class _Sched:
        def step(self):
            for s in scheds:
                s.step()

    epoch_times, accs = [], []

    def callback(model, step):  # after each epoch (and TextBrewer's own checkpoint): evaluate
        m, _ = evaluate(teacher.task, model.model, dev, pad_id=pad, opts=opts)
        accs.append(m["accuracy"])

    with tempfile.TemporaryDirectory() as tmp:
        distiller = BasicDistiller(
            TrainingConfig(device="cpu", output_dir=tmp, log_dir=None, ckpt_frequency=1),
            DistillationConfig(temperature=cfg.temperature, kd_loss_type="ce",
                               kd_loss_weight=cfg.alpha * cfg.temperature ** 2, hard_label_weight=1 - cfg.alpha),
            model_T=torch.nn.Identity(), model_S=_WithLoss(model),
            adaptor_T=lambda batch, out: {"logits": out["logits"]},
            adaptor_S=lambda batch, out: {"logits": out["logits"], "losses": [out["loss"]]})
        train_timed = timed_epochs(distiller, epoch_times)
        torch.manual_seed(seed)
        wall = train_timed(opt, loader, num_epochs=epochs, scheduler=_Sched(), max_grad_norm=-1, callback=callback)
    results["textbrewer"] = {"epoch_seconds": [round(t, 3) for t in epoch_times], "dev_accuracy_per_epoch": accs,
                             "dev_accuracy": accs[-1], "wall_seconds": wall,
                             "version": textbrewer.__version__}
    for r in results.values():
        # training only: each framework's per-epoch save (distill: a resumable checkpoint with the
        # optimiser state, fsync'ed; TextBrewer: the student's weights) and the dev evaluation are
        # outside; wall_seconds has everything
        r["mean_epoch_seconds"] = float(np.mean(r["epoch_seconds"]))
    out = {"teacher_run": pc.teacher_run, "epochs": epochs, "batch_size": pc.batch_size, "seed": seed,
           "temperature": cfg.temperature, "alpha": cfg.alpha, "options": cfg.options,
           "machine": {"cpu_count": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
                       "platform": platform.platform(), "torch": torch.__version__},
           "results": results,
           "speedup": results["textbrewer"]["mean_epoch_seconds"] / results["distill"]["mean_epoch_seconds"],
           "accuracy_gain": results["distill"]["dev_accuracy"] - results["textbrewer"]["dev_accuracy"]}
    if output:
        write_json(output, out)
    return out


def timed_epochs(distiller, epoch_times: list[float]):
    """``distiller.train`` wrapped to time each epoch's training, up to where its save and callback
    start, into ``epoch_times``; the wrapper returns the wall seconds of the whole run."""
    marks = {"t": 0.0}
    save_and_callback = distiller.save_and_callback

    def timed_save_and_callback(*a, **kw):
        epoch_times.append(time.perf_counter() - marks["t"])
        save_and_callback(*a, **kw)
        marks["t"] = time.perf_counter()

    distiller.save_and_callback = timed_save_and_callback

    def train(*a, **kw) -> float:
        marks["t"] = t0 = time.perf_counter()
        distiller.train(*a, **kw)
        return time.perf_counter() - t0

    return train


def have_textbrewer() -> bool:
    """Whether TextBrewer imports; if not, the one-line fix on stderr (the peers' shared check)."""
    try:
        import textbrewer  # noqa: F401
    except ImportError:
        print("error: the peer benchmark needs TextBrewer; pip install '.[peers]'", file=sys.stderr)
        return False
    return True


def print_results(title: str, results: dict, footer: str) -> None:
    """The peers' table: per framework, training seconds per epoch, wall seconds and dev accuracy."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in ("framework", "train s / epoch", "wall s (all epochs, saves, evals)", "dev accuracy"):
        t.add_column(c)
    for name, r in results.items():
        t.add_row(name, f"{r['mean_epoch_seconds']:.2f}", f"{r['wall_seconds']:.1f}", f"{r['dev_accuracy']:.4f}")
    Console().print(t)
    Console().print(footer)


def main(argv=None) -> int:
    a = config_from(PeerConfig, dataclass_parser(PeerConfig, "python -m benchmarks.peer_textbrewer", __doc__).parse_args(argv))
    if not have_textbrewer():
        return 2
    res = run(a)
    print_results(f"TextCNN on SST-2, {a.epochs} epochs, batch {a.batch_size}, T={res['temperature']}, alpha={res['alpha']}",
                  res["results"], f"distill is {res['speedup']:.2f}x TextBrewer's speed, accuracy {100 * res['accuracy_gain']:+.2f} pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
