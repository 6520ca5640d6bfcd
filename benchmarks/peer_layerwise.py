"""Peer comparison for layer-wise KD: one TinyBERT-shaped transformer student, the same teacher run in
the loop, TinyBERT's intermediate matches plus logit KD and the hard label in one stage — trained by
TextBrewer's ``GeneralDistiller`` and by distill's loop, in one run.

    python -m benchmarks.peer_layerwise runs/sst2-mean --epochs 2 --output runs/peer-layerwise.json

Shared: the student module and its initial weights (and the projections' initial weights), the
batches in the same order (distill's length-grouped sampler), AdamW with the same lr, weight decay
groups and linear schedule, the loss terms and weights. The matches are the uniform layer map's
embedding and hidden-state MSE (a learned linear projection per pair where the widths differ) and
the attention-score MSE; TextBrewer's ``hidden_mse`` / ``attention_mse`` with the inputs mask are
the same formulas as ``distill.losses``, and both frameworks read the states through
``distill.taps`` (pre-softmax scores, as TinyBERT compares), so the inputs are equal too. Logit KD:
TextBrewer's ``kd_loss_type="ce"`` weighted α·T² has the gradient of distill's KL·T² weighted α.
Each framework runs the teacher its own way: TextBrewer calls the transformers model as its users
do, distill its in-loop teacher (prepacked oneDNN linears). Gradient clipping at 1.0 in both
(TextBrewer clips the student's parameters, distill the student's and the projections').
Reported: training seconds per epoch and dev accuracy. Needs ``pip install .[peers]``.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.cli import config_from, dataclass_parser, field_docs
from distill.materials import open_teacher_run
from distill.rundir import JsonlLog, write_json
from distill.taps import EncoderTaps
from benchmarks.peer_textbrewer import EpochBatches, have_textbrewer, print_results, timed_epochs
from students.loop import FitOptions, evaluate, fit, linear_schedule, make_optimizers
from students.train import StudentConfig, new_layer_kd, prepare, resolved_for

WEIGHTS = {"embedding_mse": 1.0, "hidden_mse": 1.0, "attention_mse": 1.0}


class _Tapped(torch.nn.Module):
    """A model as TextBrewer's adaptors read it: logits (for the student also its hard-label loss),
    every mapped hidden state and attention-score matrix in pair order, and the inputs mask."""

    def __init__(self, model, hidden: list[int], attention: list[int], student: bool):
        super().__init__()
        self.model, self.hidden, self.attention, self.student = model, hidden, attention, student
        self.taps = EncoderTaps(model, set(hidden), set(attention))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        if self.student:
            logits = self.model(input_ids, attention_mask, token_type_ids).logits
        else:
            with torch.no_grad():
                extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
                logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
        st = self.taps.take()
        out = {"logits": logits, "hidden": [st.hidden[i] for i in self.hidden],
               "attention": [st.scores(i) for i in self.attention], "inputs_mask": attention_mask}
        if labels is not None:
            out["losses"] = [torch.nn.functional.cross_entropy(logits, labels)]
        return out


@field_docs
@dataclass
class PeerConfig:
    __positional__ = ("teacher_run",)

    teacher_run: str  # a finished distill.teach SST-2 run with materials (its best/ model runs in the loop)
    epochs: int = 2  # epochs for both frameworks
    batch_size: int = 32  # examples per optimiser step for both
    lr: float = 2e-4  # peak AdamW lr for both (linear decay, 6 % warmup)
    layers: int = 4  # student encoder layers (TinyBERT-4)
    hidden: int = 312  # student width (TinyBERT-4)
    heads: int = 12  # student attention heads (the teacher's count, for the attention MSE)
    intermediate: int = 1200  # student feed-forward width (TinyBERT-4)
    seed: int = 42  # the same initial student and batch order for both
    output: str | None = None  # write the results JSON here


def _setup(pc: PeerConfig):
    base = StudentConfig(arch="transformer", materials=pc.teacher_run, epochs=pc.epochs, batch_size=pc.batch_size, lr=pc.lr,
                         seed=pc.seed, patience=0, save_steps=0, device="cpu", **WEIGHTS,
                         options={"layers": pc.layers, "hidden": pc.hidden, "heads": pc.heads, "intermediate": pc.intermediate})
    base.validate()
    teacher = open_teacher_run(pc.teacher_run, "sst2")
    cfg = resolved_for(base, teacher)
    return cfg, teacher, prepare(cfg, teacher)


def run(pc: PeerConfig) -> dict:  # noqa: PLR0915 - the two frameworks side by side on the same set-up, in order
    import textbrewer
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    cfg, teacher, setup = _setup(pc)
    train, dev, pad, task = setup.train, setup.dev, setup.tokenizer.pad_token_id, teacher.task
    opts = FitOptions(**{f: getattr(cfg, f) for f in FitOptions.__dataclass_fields__ if hasattr(cfg, f)})
    results = {}

    # distill: one stage, every term together
    model = setup.new_model(cfg)
    layer_kd = new_layer_kd(cfg, setup, model)
    proj0 = {k: v.clone() for k, v in layer_kd.state_dict().items()}
    pairs = layer_kd.hidden_pairs
    att_pairs = layer_kd.attention_pairs
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = fit(task, model, train, dev, opts, Path(tmp), pad_id=pad, save_best=lambda m, d: None,
                      jlog=JsonlLog(Path(tmp) / "log.jsonl"), layer_kd=layer_kd)
        wall = time.perf_counter() - t0
    layer_kd.student_taps.remove()
    final, _ = evaluate(task, model, dev, pad_id=pad, opts=opts)
    results["distill"] = {"epoch_seconds": summary["epoch_seconds"], "dev_accuracy_per_epoch":
                          [h["accuracy"] for h in summary["history"]], "dev_accuracy": final["accuracy"], "wall_seconds": wall,
                          "teacher_prepacked_linears": layer_kd.teacher.prepacked}
    del layer_kd

    # TextBrewer: the same student, initial projections, batches, optimiser and schedule
    from teachers.hf import load_teacher

    t_model, _ = load_teacher(str(teacher.model_dir))
    t_model.eval()
    model = setup.new_model(cfg)
    model_s = _Tapped(model, [s for s, _ in pairs], [s for s, _ in att_pairs], student=True)
    model_t = _Tapped(t_model, [t for _, t in pairs], [t for _, t in att_pairs], student=False)
    s_width, t_width = cfg.options["hidden"], t_model.config.hidden_size
    proj = ["linear", s_width, t_width, {}] if s_width != t_width else None
    matches = [{"layer_T": k, "layer_S": k, "feature": "hidden", "loss": "hidden_mse", "weight": 1.0, "proj": proj}
               for k in range(len(pairs))]
    matches += [{"layer_T": k, "layer_S": k, "feature": "attention", "loss": "attention_mse", "weight": 1.0}
                for k in range(len(att_pairs))]
    optimizers, _ = make_optimizers(model, None, opts)
    (opt,) = optimizers  # the transformer student has no sparse embedding: one AdamW
    loader = EpochBatches(train, opts, pad, teacher_inputs=True)
    factor = linear_schedule(len(loader) * pc.epochs, opts.warmup_ratio)
    epoch_times, accs = [], []

    def callback(model, step):
        m, _ = evaluate(task, model.model, dev, pad_id=pad, opts=opts)
        accs.append(m["accuracy"])

    with tempfile.TemporaryDirectory() as tmp:
        distiller = GeneralDistiller(
            TrainingConfig(device="cpu", output_dir=tmp, log_dir=None, ckpt_frequency=1),
            DistillationConfig(temperature=cfg.temperature, kd_loss_type="ce", kd_loss_weight=cfg.alpha * cfg.temperature ** 2,
                               hard_label_weight=1 - cfg.alpha, intermediate_matches=matches),
            model_T=model_t, model_S=model_s, adaptor_T=lambda batch, out: out, adaptor_S=lambda batch, out: out)
        for k, p in enumerate(distiller.projs[: len(pairs)]):  # distill's initial projection of pair k
            if p is not None:
                p.weight.data.copy_(proj0[f"proj.{pairs[k][0]}.weight"])
                p.bias.data.copy_(proj0[f"proj.{pairs[k][0]}.bias"])
        train_timed = timed_epochs(distiller, epoch_times)
        torch.manual_seed(pc.seed)
        wall = train_timed(opt, loader, num_epochs=pc.epochs, scheduler_class=torch.optim.lr_scheduler.LambdaLR,
                           scheduler_args={"lr_lambda": factor}, max_grad_norm=opts.max_grad_norm, callback=callback)
    results["textbrewer"] = {"epoch_seconds": [round(t, 3) for t in epoch_times], "dev_accuracy_per_epoch": accs,
                             "dev_accuracy": accs[-1], "wall_seconds": wall, "version": textbrewer.__version__}
    for r in results.values():
        r["mean_epoch_seconds"] = float(np.mean(r["epoch_seconds"]))
    out = {"teacher_run": pc.teacher_run, **dataclasses.asdict(pc), "pairs": pairs, "attention_pairs": att_pairs,
           "temperature": cfg.temperature, "alpha": cfg.alpha,
           "machine": {"cpu_count": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
                       "platform": platform.platform(), "torch": torch.__version__},
           "results": results,
           "time_ratio": results["distill"]["mean_epoch_seconds"] / results["textbrewer"]["mean_epoch_seconds"],
           "accuracy_gain": results["distill"]["dev_accuracy"] - results["textbrewer"]["dev_accuracy"]}
    if pc.output:
        write_json(pc.output, out)
    return out


def main(argv=None) -> int:
    a = config_from(PeerConfig, dataclass_parser(PeerConfig, "python -m benchmarks.peer_layerwise", __doc__).parse_args(argv))
    if not have_textbrewer():
        return 2
    res = run(a)
    print_results(f"{a.layers}x{a.hidden} transformer, layer-wise + logit KD on SST-2, {a.epochs} epochs, lr {a.lr}", res["results"],
                  f"distill's epoch takes {res['time_ratio']:.2f}x TextBrewer's; accuracy {100 * res['accuracy_gain']:+.2f} pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
