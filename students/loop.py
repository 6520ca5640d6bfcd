"""The student training loop: KD losses over teaching materials, length-grouped batches, early
stopping on the dev metric, the best model kept, and exact resume after a crash.

Hand-written rather than transformers' Trainer because (1) a sparse word-embedding table needs its
own optimiser (SparseAdam) beside AdamW, which Trainer's single optimiser and its gradient clipping
over every parameter do not allow, and (2) a TextCNN step is a few milliseconds, so per-step
framework overhead would be a large share of an epoch.

The same loop runs on CUDA, on XLA (fixed-width buckets, one graph sync per step) and under
torchrun / an XLA launch with DistributedDataParallel (see ``setup``). ``fit`` is the algorithm:
epochs of ``train_epoch`` (each batch one ``train_step`` on ``distill.losses.student_objective``),
``evaluate_dev`` after each, early stopping; ``distill.resume.Checkpointer`` makes resume exact.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill import losses
from distill import metrics as task_metrics
from distill.inference import Encoded, autocast, pad_batch, predict_arrays
from distill.resume import Checkpointer, cpu_state
from distill.rundir import JsonlLog, atomic_dir, write_json
from distill.tasks import Task

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One split as a student sees it; row i of every field belongs to ``ids[i]`` (aligned by id)."""

    ids: list[str]
    enc: Encoded
    labels: np.ndarray | None  # [N] gold labels, None when the split is unlabelled
    teacher_logits: np.ndarray  # [N, C]
    teacher_embeddings: np.ndarray | None  # [N, H] the teacher's pooled vectors
    pairs: np.ndarray | None = None  # ranking gold [P, 2] (rows less, more), when the split has annotator pairs
    groups: list[str] | None = None  # per-example group (language) for per-group metrics
    labelled: np.ndarray | None = None  # [N] bool: rows with a gold label (None = all, when labels exist)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def gold(self) -> np.ndarray | None:
        return self.labels if self.labels is not None else self.pairs


@dataclass
class FitOptions:
    """The training knobs ``fit`` reads (a subset of ``students.train.StudentConfig``)."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    alpha: float  # weight of the teacher (soft) term; 0 = gold labels only
    beta: float  # weight of the hidden (embedding) matching term
    temperature: float
    kd_loss: str  # kl | mse
    hidden_loss: str  # cosine | mse
    patience: int
    save_steps: int
    eval_steps: int
    log_every: int
    seed: int
    device: str
    precision: str
    scale_lr: bool = False  # multi-process: lr x processes (linear scaling rule)
    prediction: bool = True  # False: TinyBERT's intermediate stage (layer terms only, no dev evaluation)


def grouped_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled batches of similar-length examples (less padding), a pure function of (seed, epoch)
    so a resumed run replays the same order: a random permutation, cut into megabatches of 50
    batches, each sorted by length and cut into batches, then the batch order shuffled."""
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches = []
    for i in range(0, len(perm), mega):
        chunk = perm[i : i + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[k] for k in rng.permutation(len(batches))]


def add_transfer(train: SplitData, transfer: SplitData, held_out: list[SplitData]) -> tuple[SplitData, int]:
    """``train`` plus the teacher-labelled ``transfer`` rows (Tang et al. 2019's transfer set), which
    carry no gold label: they get the teacher term only. Transfer rows whose tokens equal a row of
    ``train`` or of a held-out split are dropped, so no dev/test text leaks in as training input.
    Returns (merged split, rows dropped)."""
    seen = {tuple(x) for d in (train, *held_out) for x in d.enc.input_ids}
    keep = [i for i, x in enumerate(transfer.enc.input_ids) if tuple(x) not in seen]
    n, m = len(train), len(keep)
    enc = Encoded(train.enc.input_ids + [transfer.enc.input_ids[i] for i in keep],
                  None if train.enc.token_type_ids is None else
                  train.enc.token_type_ids + [transfer.enc.token_type_ids[i] for i in keep],
                  None if train.enc.input_ids_b is None else
                  train.enc.input_ids_b + [transfer.enc.input_ids_b[i] for i in keep])
    labels = None
    if train.labels is not None:  # transfer rows get a placeholder (zeros) that the mask keeps out of the hard loss
        labels = np.concatenate([train.labels, np.zeros((m, *train.labels.shape[1:]), dtype=train.labels.dtype)])
    labelled = np.concatenate([np.ones(n, dtype=bool) if train.labelled is None else train.labelled, np.zeros(m, dtype=bool)])
    emb = None
    if train.teacher_embeddings is not None and transfer.teacher_embeddings is not None:
        emb = np.concatenate([train.teacher_embeddings, transfer.teacher_embeddings[keep]])
    merged = SplitData(train.ids + [transfer.ids[i] for i in keep], enc, labels,
                       np.concatenate([train.teacher_logits, transfer.teacher_logits[keep]]), emb, labelled=labelled)
    return merged, len(transfer) - m


def teacher_agreement(task: Task, student_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Share of examples where student and teacher predict the same label (multi-label: the same
    label set); for regression, the Pearson correlation of their scores; for ranking, the pairwise
    concordance of their scores on 10,000 random pairs (``distill.metrics.concordance``)."""
    s, t = task_metrics.predictions(task, student_logits), task_metrics.predictions(task, teacher_logits)
    if task.kind == "ranking":
        return task_metrics.concordance(s, t)
    if task.kind == "regression":
        return float(np.corrcoef(s, t)[0, 1])
    if task.kind == "multilabel":
        return float((s == t).all(axis=-1).mean())
    return float((s == t).mean())


def evaluate(task: Task, model: nn.Module, data: SplitData, *, pad_id: int, opts: FitOptions,
             on_progress: Callable[[int], None] | None = None) -> tuple[dict[str, float], np.ndarray]:
    """(metrics incl. teacher_agreement, logits [N, C]) of ``model`` on one split."""
    logits, _ = predict_arrays(model, data.enc, pad_id=pad_id, batch_size=opts.eval_batch_size, device=opts.device,
                               precision=opts.precision, on_progress=on_progress)
    out = task_metrics.compute(task, logits, data.gold, data.groups) if data.gold is not None else {}
    out["teacher_agreement"] = teacher_agreement(task, logits, data.teacher_logits)
    return out, logits


class _Step(nn.Module):
    """Student + projector + layer-wise terms as one module, so one DistributedDataParallel wrapper
    syncs all three. Returns (ModelOutput, projected sentence vector or None, layer terms or None)."""

    def __init__(self, model: nn.Module, projector: nn.Module | None, layer_kd: nn.Module | None = None):
        super().__init__()
        self.model, self.projector, self.layer_kd = model, projector, layer_kd

    def forward(self, **batch):
        out = self.model(**batch)
        projected = self.projector(out.pooled.float()) if self.projector is not None else None
        return out, projected, (self.layer_kd(batch) if self.layer_kd is not None else None)


class Projector(nn.Module):
    """Learned map from the student's sentence vector to the teacher's width, for the hidden loss
    (TextBrewer's "adaptor" idea: the loss compares like with like). Used in training only."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def make_optimizers(model: nn.Module, projector: nn.Module | None, opts: FitOptions, lr: float | None = None,
                    extra: nn.Module | None = None):
    """[AdamW over the dense parameters (+ SparseAdam over a sparse embedding)], dense parameters;
    ``projector`` and ``extra`` (the layer-wise projections) train with the student."""
    lr = opts.lr if lr is None else lr
    sparse = model.sparse_parameters() if hasattr(model, "sparse_parameters") else []
    sparse_ids = {id(p) for p in sparse}
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    for m in (projector, extra):
        if m is not None:
            dense += list(m.parameters())
    decay = [p for p in dense if p.dim() >= 2]  # no weight decay on biases / norms (as BERT)
    no_decay = [p for p in dense if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    opts_list = [opt]
    if sparse:
        opts_list.append(torch.optim.SparseAdam(sparse, lr=lr))
    return opts_list, dense


def linear_schedule(total_steps: int, warmup_ratio: float):
    """LambdaLR factor: linear warmup, then linear decay to 0. Kept rather than transformers'
    ``get_linear_schedule_with_warmup``: without warmup (cnn, bilstm) the two are equal; with it, ours
    trains the first step at lr/warmup where transformers' spends it at lr 0 (tests/test_equivalence.py)."""
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:  # linear warmup, then linear decay to 0 (as the teacher)
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def save_model(model: nn.Module, folder: Path, meta: dict, extra_files: Callable[[Path], None] | None = None) -> None:
    """Write ``folder/model.safetensors`` + ``folder/student.json`` (+ extra files) atomically."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file(cpu_state(model), tmp / "model.safetensors")
        write_json(tmp / "student.json", meta)
        if extra_files is not None:
            extra_files(tmp)


@dataclass
class Loop:
    """What one training run holds while ``fit`` runs: the modules, optimisers, the teacher's targets
    as tensors, and ``state`` (epoch, batch, step, best, history: all a checkpoint needs)."""

    task: Task
    model: nn.Module
    step_module: nn.Module  # model + projector (DDP-wrapped with several processes)
    train: SplitData
    dev: SplitData
    opts: FitOptions
    world: object
    device: torch.device
    pad_id: int
    optimizers: list
    schedulers: list
    dense_params: list
    checkpointer: Checkpointer
    save_best: Callable[[nn.Module, dict], None]
    jlog: JsonlLog
    bar: Callable
    metric_key: str
    targets: dict[str, torch.Tensor | None]  # logits, embeddings, labels, labelled: [N, ...] CPU tensors
    scaler: torch.amp.GradScaler  # fp16: dynamic loss scaling (Micikevicius et al. 2018); a no-op otherwise
    state: dict = field(default_factory=lambda: {"epoch": 0, "batch": 0, "global_step": 0, "best": None, "best_epoch": None,
                                                 "bad_evals": 0, "history": [], "train_seconds": 0.0, "epoch_seconds": []})
    xla_compiles0: int = 0

    @property
    def xla(self) -> bool:
        return self.opts.device == "xla"


def fit(task: Task, model: nn.Module, train: SplitData, dev: SplitData, opts: FitOptions, run_dir: Path, *,
        pad_id: int, save_best: Callable[[nn.Module, dict], None], jlog: JsonlLog, resume: bool = False,
        progress=None, on_epoch: Callable[[int, dict], None] | None = None, layer_kd: nn.Module | None = None) -> dict:
    """Train ``model`` on ``train`` against the teacher's outputs (``distill.losses.student_objective``);
    evaluate on ``dev`` every epoch (and every ``eval_steps`` steps into each epoch when set), keep
    the best model through ``save_best(model, metrics)``, stop after ``patience`` epochs without a
    better dev metric. A checkpoint every ``save_steps`` steps and at each epoch end lets ``resume``
    replay the run exactly. ``on_epoch(epoch, dev_metrics)`` may raise to stop (Optuna pruning).
    ``layer_kd`` (``students.layerwise.LayerKD``) adds the layer-wise terms; with
    ``opts.prediction`` False only those train, for ``opts.epochs`` epochs without dev evaluation
    (TinyBERT's intermediate stage). Returns a summary dict."""
    loop = setup(task, model, train, dev, opts, run_dir, pad_id=pad_id, save_best=save_best, jlog=jlog, progress=progress,
                 layer_kd=layer_kd)
    if resume and (saved := loop.checkpointer.load()) is not None:
        loop.state = saved
        jlog("resume", epoch=saved["epoch"], batch=saved["batch"], global_step=saved["global_step"])
        log.info("resuming at epoch %d, batch %d", saved["epoch"], saved["batch"])
    else:  # a new run, or one killed before its first checkpoint: start as a new run does
        torch.manual_seed(opts.seed + loop.world.rank)  # rank 0 = a single-process run; the others get their own dropout
    state = loop.state
    while state["epoch"] < opts.epochs and not state.get("stopped", False):
        epoch = state["epoch"]
        secs = train_epoch(loop, epoch)
        if not opts.prediction:  # an intermediate stage: its head is untrained, so dev says nothing yet
            state["epoch"], state["batch"] = epoch + 1, 0
            loop.jlog("epoch", epoch=epoch + 1, step=state["global_step"], seconds=round(secs, 3))
            log.info("epoch %d: intermediate layers (%.1f s)", epoch + 1, secs)
            if loop.world.main:
                loop.checkpointer.save(state)
            continue
        improved, dev_metrics = evaluate_dev(loop, epoch + 1, secs)
        log.info("epoch %d: %s (%.1f s)", epoch + 1, ", ".join(f"{k}={v:.4f}" for k, v in dev_metrics.items()), secs)
        if not improved:
            state["bad_evals"] += 1  # patience counts epochs: a mid-epoch best (--eval-steps) resets it
        state["epoch"], state["batch"] = epoch + 1, 0
        if opts.patience and state["bad_evals"] >= opts.patience:
            jlog("early_stop", epoch=epoch + 1, bad_evals=state["bad_evals"])
            state["stopped"] = True
        if loop.world.main:
            loop.checkpointer.save(state)
        if on_epoch is not None:
            on_epoch(epoch, dev_metrics)
    return summary(loop)


def train_step(loop: Loop, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """One optimiser step on the training rows ``idx``; returns the loss terms."""
    opts, t, device = loop.opts, loop.targets, loop.device
    batch = {k: v.to(device) for k, v in pad_batch(loop.train.enc, idx, loop.pad_id, buckets=loop.xla).items()}
    with autocast(device, opts.precision):
        out, projected, layer_terms = loop.step_module(**batch)
    on = lambda x: None if x is None else x[idx].to(device)  # noqa: E731 - this batch's rows of a target
    terms = losses.student_objective(loop.task.kind, out.logits.float(), on(t["logits"]), on(t["labels"]), on(t["labelled"]),
                                     alpha=opts.alpha, beta=opts.beta, temperature=opts.temperature, kd_loss=opts.kd_loss,
                                     projected=projected, teacher_vec=on(t["embeddings"]), hidden_loss=opts.hidden_loss,
                                     layer=None if layer_terms is None else layer_terms["layer"], prediction=opts.prediction)
    if layer_terms is not None:  # each layer-wise term, for the log
        terms.update({k: v for k, v in layer_terms.items() if k != "layer"})
    for o in loop.optimizers:
        o.zero_grad(set_to_none=True)
    loop.scaler.scale(terms["total"]).backward()  # fp16: the loss scaled so small gradients survive in half precision
    if opts.max_grad_norm > 0:  # the sparse embedding rows are left unclipped (SparseAdam)
        loop.scaler.unscale_(loop.optimizers[0])  # AdamW holds every dense parameter: clip true gradients
        torch.nn.utils.clip_grad_norm_(loop.dense_params, opts.max_grad_norm)
    for o in loop.optimizers:
        loop.scaler.step(o)  # skipped when a gradient overflowed (fp16)
    loop.scaler.update()
    for s in loop.schedulers:
        s.step()
    if loop.xla:
        from distill.devices import xla_sync

        xla_sync()  # run this step's graph now (XLA builds graphs lazily)
    return terms


def train_epoch(loop: Loop, epoch: int) -> float:
    """The rest of one epoch from ``state["batch"]``, with mid-epoch evaluations and checkpoints;
    returns its training seconds (evaluation and checkpoint writes excluded)."""
    opts, state, world = loop.opts, loop.state, loop.world
    batches = grouped_batches(loop.train.enc.lengths, opts.batch_size * world.size, opts.seed, epoch)
    if world.size > 1:  # a last batch with fewer rows than processes would leave one without work
        batches = [b for b in batches if len(b) >= world.size]
    loop.step_module.train()
    # a resumed epoch counts the training seconds its checkpoint saved (batches redone after a kill count once)
    t0, epoch_secs = time.perf_counter(), state.get("epoch_elapsed", 0.0) if state["batch"] else 0.0
    run_loss = run_n = 0.0
    with loop.bar(f"epoch {epoch + 1}/{opts.epochs}", len(batches)) as b:
        if b is not None and state["batch"]:
            b.advance(state["batch"], note=f"resumed at batch {state['batch']}")
        for bi in range(state["batch"], len(batches)):
            terms = train_step(loop, batches[bi][world.rank :: world.size])  # this process's share of the global batch
            state["batch"], state["global_step"] = bi + 1, state["global_step"] + 1
            run_loss, run_n = run_loss + terms["total"].detach(), run_n + 1  # a tensor: no device->host sync each step
            if state["global_step"] % opts.log_every == 0:
                mean_loss = float(run_loss) / run_n
                shown = ("hard", "soft", "hidden") + (("layer", *losses.LAYER_TERMS) if "embedding_mse" in terms else ())
                loop.jlog("train", step=state["global_step"], epoch=epoch + (bi + 1) / len(batches), loss=mean_loss,
                          **{k: terms[k].item() for k in shown}, lr=loop.schedulers[0].get_last_lr()[0])
                if b is not None:
                    b.advance(0, note=f"loss {mean_loss:.4f}")
                run_loss = run_n = 0.0
            if b is not None:
                b.advance(1)
            # counted from the epoch start, so a mid-epoch eval never lands a step after the epoch-end one
            mid_eval = opts.prediction and opts.eval_steps and state["batch"] % opts.eval_steps == 0
            save = opts.save_steps and state["global_step"] % opts.save_steps == 0
            if (mid_eval or save) and state["batch"] < len(batches):
                dt = time.perf_counter() - t0  # evaluation and checkpoint writes stay out of the epoch time
                epoch_secs += dt
                state["train_seconds"] += dt
                state["epoch_elapsed"] = round(epoch_secs, 3)
                if mid_eval:
                    evaluate_dev(loop, round(epoch + state["batch"] / len(batches), 3), epoch_secs)
                if world.main:  # a mid-epoch evaluation is checkpointed with it, so --resume keeps its best
                    loop.checkpointer.save(state)
                t0 = time.perf_counter()
    dt = time.perf_counter() - t0
    state["train_seconds"] += dt
    state["epoch_seconds"].append(round(epoch_secs + dt, 3))
    state["epoch_elapsed"] = 0.0
    return epoch_secs + dt


def evaluate_dev(loop: Loop, at_epoch: float, secs: float) -> tuple[bool, dict]:
    """Score dev, keep the model if it is the best so far, log the event: (improved, dev metrics)."""
    state, dev = loop.state, loop.dev
    with loop.bar(f"evaluate {len(dev)}", len(dev)) as b:
        dev_metrics, _ = evaluate(loop.task, loop.model, dev, pad_id=loop.pad_id, opts=loop.opts,
                                  on_progress=b.advance if b else None)
    loop.step_module.train()  # evaluate() switched to eval mode; a mid-epoch evaluation goes on training
    value = dev_metrics[loop.metric_key]
    improved = state["best"] is None or value > state["best"]
    if improved:
        state.update(best=value, best_epoch=at_epoch, bad_evals=0)
        if loop.world.main:
            loop.save_best(loop.model, dev_metrics)
    state["history"].append({"epoch": at_epoch, **dev_metrics})
    xla = {"xla_compiles": _xla_compiles() - loop.xla_compiles0} if loop.xla else {}  # flat after epoch 1 unless shapes churn
    loop.jlog("eval", epoch=at_epoch, step=state["global_step"], seconds=round(secs, 3), best=improved, **dev_metrics, **xla)
    return improved, dev_metrics


def setup(task: Task, model: nn.Module, train: SplitData, dev: SplitData, opts: FitOptions, run_dir: Path, *,
          pad_id: int, save_best, jlog: JsonlLog, progress=None, layer_kd: nn.Module | None = None) -> Loop:
    """The modules, optimisers, schedules and targets of a run, placed on its device.

    Several processes (torchrun, or an XLA launch): each takes every world.size-th row of the same
    global batch (--batch-size rows per process), DDP averages the gradients, every process scores
    the whole dev split (so all take the same early-stopping decision), and rank 0 alone writes."""
    from distill.devices import init_process_group, scaled_lr, torch_device

    world = init_process_group(opts.device)
    compiles0 = _xla_compiles() if opts.device == "xla" else 0
    device = torch_device(opts.device)
    model.to(device)
    if opts.beta > 0 and train.teacher_embeddings is None:
        raise ValueError("beta > 0 needs the teacher's embeddings in the materials")
    projector = Projector(model.pooled_dim, train.teacher_embeddings.shape[1]).to(device) if opts.beta > 0 else None
    if layer_kd is not None:
        layer_kd.to(device)
    step_module: nn.Module = _Step(model, projector, layer_kd)
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None,
                                              find_unused_parameters=True)  # e.g. a head a task does not use
    optimizers, dense_params = make_optimizers(model, projector, opts, lr=scaled_lr(opts.lr, opts.scale_lr), extra=layer_kd)
    total_steps = math.ceil(len(train) / (opts.batch_size * world.size)) * opts.epochs
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, linear_schedule(total_steps, opts.warmup_ratio)) for o in optimizers]
    as_tensor = lambda a, dtype=None: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))  # noqa: E731
    scaler = torch.amp.GradScaler(device.type if device.type in ("cuda", "cpu") else "cpu", enabled=opts.precision == "fp16")
    targets = {"logits": as_tensor(train.teacher_logits, np.float32),
               "embeddings": as_tensor(train.teacher_embeddings, np.float32) if projector is not None else None,
               "labels": as_tensor(train.labels), "labelled": as_tensor(train.labelled)}  # labelled: transfer rows False
    return Loop(task=task, model=model, step_module=step_module, train=train, dev=dev, opts=opts, world=world, device=device,
                pad_id=pad_id, optimizers=optimizers, schedulers=schedulers, dense_params=dense_params,
                checkpointer=Checkpointer(run_dir / "checkpoint", model, {"projector": projector, "layer_kd": layer_kd},
                                          optimizers, schedulers, scaler=scaler, device_type=device.type),
                save_best=save_best, jlog=jlog, bar=progress or (lambda desc, total: contextlib.nullcontext(None)),
                # without gold on dev (ranking from a teacher's scores alone) the teacher is the yardstick
                metric_key=task.primary_metric if dev.gold is not None else "teacher_agreement",
                targets=targets, scaler=scaler, xla_compiles0=compiles0)


def summary(loop: Loop) -> dict:
    state = loop.state
    extra = {"processes": loop.world.size} if loop.world.size > 1 else {}
    if loop.xla:
        extra["xla_compiles"] = _xla_compiles() - loop.xla_compiles0  # flat after the first batch of each width unless shapes churn
        loop.jlog("xla", compiles=extra["xla_compiles"])
        if log.isEnabledFor(logging.DEBUG):
            import torch_xla.debug.metrics as met

            log.debug("XLA metrics after training:\n%s", met.short_metrics_report())
    return {**extra, "best_" + loop.metric_key: state["best"], "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
            "global_step": state["global_step"], "train_seconds": round(state["train_seconds"], 3),
            "epoch_seconds": state["epoch_seconds"], "history": state["history"]}


def _xla_compiles() -> int:
    from distill.devices import xla_compiles

    return xla_compiles()
