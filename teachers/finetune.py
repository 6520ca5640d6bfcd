"""Teacher fine-tuning with transformers' Trainer (AdamW, warmup + linear decay, clipping, mixed
precision, gradient accumulation, length-grouped batches, CUDA/DDP through accelerate).

Hand-written here, in ``KeepBest``, is only what Trainer does not do together with crash-resume:
Trainer's own best-model tracking and EarlyStoppingCallback need ``load_best_model_at_end``, which
forces checkpoints to the evaluation cadence (once an epoch); we want frequent step checkpoints for
``--resume`` *and* the best model per epoch, so the callback copies the best weights to ``RUN/best``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from distill import losses
from distill import metrics as task_metrics
from distill.resume import last_complete_checkpoint
from distill.rundir import JsonlLog, atomic_dir, read_json, write_json
from distill.tracking import parse_report_to
from distill.tasks import Task
from teachers.hf import make_hf_loadable

log = logging.getLogger(__name__)

class KeepBest(TrainerCallback):
    """After each evaluation: save the model to ``best_dir`` if the metric improved; stop after
    ``patience`` evaluations without improvement. State lives in ``best_dir/best.json`` so a
    resumed run continues the comparison."""

    def __init__(self, best_dir: Path, metric_key: str, tokenizer, patience: int, jlog: JsonlLog, xla: bool = False):
        self.best_dir, self.key, self.tokenizer, self.patience, self.jlog = best_dir, metric_key, tokenizer, patience, jlog
        self.xla = xla
        state = read_json(best_dir / "best.json") if (best_dir / "best.json").is_file() else {}
        self.best = state.get("value")
        self.bad_evals = state.get("bad_evals", 0)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        # Every process sees the same (gathered) metrics and keeps the same count, so all stop
        # together; only rank 0 writes.
        value = metrics[self.key]
        write = state.is_world_process_zero
        extra = {}
        if self.xla:  # graphs compiled so far: flat from the second evaluation on, unless shapes churn
            from distill.devices import xla_compiles

            extra["xla_compiles"] = xla_compiles()
        self.jlog("eval", step=state.global_step, epoch=state.epoch,
                  **{k[5:]: v for k, v in metrics.items() if k.startswith("eval_")}, **extra)
        if self.best is None or value > self.best:
            self.best, self.bad_evals = value, 0
            if write:
                with atomic_dir(self.best_dir) as tmp:
                    # host copies: safetensors cannot read XLA tensors (a no-op on CPU)
                    model.save_pretrained(tmp, state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()})
                    self.tokenizer.save_pretrained(tmp)
                    make_hf_loadable(tmp)  # a mean-pooled teacher: its own model_type + code (distill.hf_modeling)
                    write_json(tmp / "best.json", {"metric": self.key[5:], "value": value, "step": state.global_step,
                                                   "epoch": state.epoch, "bad_evals": 0})
            self.jlog("best", step=state.global_step, metric=self.key[5:], value=value)
        else:
            self.bad_evals += 1
            state_file = self.best_dir / "best.json"
            if write:
                write_json(state_file, {**read_json(state_file), "bad_evals": self.bad_evals})
            if self.patience and self.bad_evals >= self.patience:
                self.jlog("early_stop", step=state.global_step, bad_evals=self.bad_evals)
                control.should_training_stop = True


class LogToJsonl(TrainerCallback):
    """Trainer's periodic logs (loss, learning rate, grad norm) into ``RUN/log.jsonl``."""

    def __init__(self, jlog: JsonlLog):
        self.jlog = jlog

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and not any(k.startswith("eval_") for k in logs):
            self.jlog("train", step=state.global_step, **logs)


def _dataset(enc, labels):
    import datasets

    cols = {"input_ids": enc.input_ids, "labels": labels.tolist(), "length": enc.lengths.tolist()}
    if enc.token_type_ids is not None:
        cols["token_type_ids"] = enc.token_type_ids
    return datasets.Dataset.from_dict(cols)


def _pair_dataset(enc, pairs: np.ndarray):
    """Ranking: one row per annotator pair, the more toxic comment in ``input_ids``, the less toxic
    in ``input_ids_b``; ``length`` (both together) drives the length-grouped sampler."""
    import datasets

    less, more = pairs[:, 0].tolist(), pairs[:, 1].tolist()
    return datasets.Dataset.from_dict({
        "input_ids": [enc.input_ids[i] for i in more], "input_ids_b": [enc.input_ids[i] for i in less],
        "length": (enc.lengths[pairs[:, 0]] + enc.lengths[pairs[:, 1]]).tolist()})


def _ranking_eval_dataset(enc):
    """Ranking dev: single comments; ``labels`` = the row, so compute_metrics can place each score."""
    import datasets

    return datasets.Dataset.from_dict({"input_ids": enc.input_ids, "labels": [float(i) for i in range(len(enc))]})


class PairCollator:
    """Pads single comments as DataCollatorWithPadding does, and pairs (``input_ids_b``) side by side.
    ``buckets`` (XLA): pad each batch to the next of a few fixed widths (distill.devices.BUCKETS),
    so XLA compiles one graph per width instead of one per batch."""

    def __init__(self, tokenizer, buckets: bool = False):
        self.tokenizer, self.buckets = tokenizer, buckets
        self.plain = DataCollatorWithPadding(tokenizer)

    def pad(self, features):
        if not self.buckets:
            return self.plain(features)
        from distill.devices import bucket_width

        width = bucket_width(max(len(f["input_ids"]) for f in features))
        return DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=width)(features)

    def __call__(self, features):
        if "input_ids_b" not in features[0]:
            return self.pad([{k: v for k, v in f.items() if k != "length"} for f in features])
        a = self.pad([{"input_ids": f["input_ids"]} for f in features])
        b = self.pad([{"input_ids": f["input_ids_b"]} for f in features])
        return {"input_ids": a["input_ids"], "attention_mask": a["attention_mask"],
                "input_ids_b": b["input_ids"], "attention_mask_b": b["attention_mask"]}


def label_pos_weight(labels: np.ndarray, mode: str) -> np.ndarray | None:
    """Per-label weight of the positives in the BCE: "sqrt" = sqrt(negatives / positives) of the
    train labels [N, C] (a label with 13 positives in 1,440 rows, like threat in the 2018 sample, is
    otherwise never learnt), "none" = None."""
    if mode == "none":
        return None
    pos = labels.sum(0)
    return np.sqrt((len(labels) - pos) / np.maximum(pos, 1.0)).astype(np.float32)


class DistillTrainer(Trainer):
    """Trainer with the losses transformers' heads lack: multi-label BCE with label smoothing and
    auxiliary-label weights, and the margin ranking loss on (more, less) toxic pairs (Jigsaw 2022)."""

    def __init__(self, *args, task: Task, label_smoothing: float = 0.0, aux_weight: float = 1.0, margin: float = 0.5,
                 pos_weight: np.ndarray | None = None, **kwargs):
        import torch

        super().__init__(*args, **kwargs)
        self.task, self.smoothing, self.aux_weight, self.margin = task, label_smoothing, aux_weight, margin
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight)
        if task.kind in ("multilabel", "ranking"):
            self.loss_is_scaled_for_ga = False  # our losses are per-batch means; Trainer divides by accumulation

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if self.args.world_size > 1 and hasattr(sampler, "lengths") and hasattr(sampler, "batch_size"):
            # Length groups ("megabatches") sized by the global batch, not the per-process one, so N
            # processes step through the same batches as one process with N times the batch.
            sampler.batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        if self.task.kind == "multilabel":
            labels = inputs.pop("labels")
            out = model(**inputs)
            pw = None if self.pos_weight is None else self.pos_weight.to(out.logits.device)
            loss = losses.multilabel_bce(out.logits, labels, smoothing=self.smoothing, aux_weight=self.aux_weight,
                                         pos_weight=pw)
            return (loss, out) if return_outputs else loss
        if self.task.kind == "ranking":
            if "input_ids_b" not in inputs:  # evaluation: single comments, no loss
                inputs = {k: v for k, v in inputs.items() if k != "labels"}
                out = model(**inputs)
                loss = torch.zeros((), device=out.logits.device)
                return (loss, out) if return_outputs else loss
            more = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            less = model(input_ids=inputs["input_ids_b"], attention_mask=inputs["attention_mask_b"])
            s_more, s_less = more.logits[:, 0].float(), less.logits[:, 0].float()
            loss = losses.pair_margin(s_more, s_less, self.margin)
            return (loss, more) if return_outputs else loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def finetune(model, tokenizer, task: Task, train_enc, train_gold: np.ndarray, evals: dict, cfg, run_dir: Path,
             jlog: JsonlLog, *, resume: bool, callbacks=()) -> dict:
    """Fine-tune ``model`` on the encoded train split; evaluate ``evals`` ({split: (enc, gold)}) each
    epoch; keep the best model in ``run_dir/best``. Returns Trainer's train summary.

    ``train_gold`` is the labels, or for ranking the annotator pairs [P, 2] (rows less, more)."""
    ckpt_dir = run_dir / "checkpoints"
    eval_split = task.eval_splits[0]
    if task.kind == "multilabel":
        train_gold = train_gold.astype(np.float32)  # BCE targets
    train_ds, eval_ds, compute_metrics = _datasets(task, train_enc, train_gold, evals)
    xla = cfg.device == "xla"
    trainer = DistillTrainer(
        model=model,
        args=training_arguments(cfg, task, len(train_gold), ckpt_dir),
        task=task,
        label_smoothing=cfg.label_smoothing,
        aux_weight=cfg.aux_weight,
        margin=cfg.margin,
        pos_weight=label_pos_weight(train_gold, cfg.pos_weight) if task.kind == "multilabel" else None,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=PairCollator(tokenizer, buckets=xla),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[KeepBest(run_dir / "best", f"eval_{eval_split}_{task.primary_metric}", tokenizer, cfg.patience, jlog, xla),
                   LogToJsonl(jlog), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    checkpoint = last_complete_checkpoint(ckpt_dir) if resume else None
    if checkpoint is not None:
        jlog("resume", checkpoint=checkpoint.name)
        log.info("resuming from %s", checkpoint)
    if xla:
        from distill.devices import xla_compiles

        compiles0 = xla_compiles()
    out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    summary = {"global_step": out.global_step, "train_loss": out.training_loss, **out.metrics}
    if xla:
        summary["xla_compiles"] = xla_compiles() - compiles0  # stays flat after the first few steps unless shapes churn
        if log.isEnabledFor(logging.DEBUG):
            import torch_xla.debug.metrics as met

            log.debug("XLA metrics after training:\n%s", met.short_metrics_report())
    return summary


def _datasets(task: Task, train_enc, train_gold: np.ndarray, evals: dict):
    """(train dataset, {split: eval dataset}, compute_metrics) for Trainer; ranking trains on pairs."""
    if task.kind == "ranking":
        dev_pairs = evals[task.eval_splits[0]][1]

        def ranking_metrics(p):  # scores back in row order (labels hold the rows), then the pair metric
            scores = np.zeros(len(p.label_ids), dtype=np.float64)
            scores[np.asarray(p.label_ids).astype(np.int64)] = np.asarray(p.predictions).reshape(-1)
            return task_metrics.compute(task, scores[:, None], dev_pairs)

        return (_pair_dataset(train_enc, train_gold), {s: _ranking_eval_dataset(enc) for s, (enc, _) in evals.items()},
                ranking_metrics)
    return (_dataset(train_enc, train_gold), {s: _dataset(enc, labels) for s, (enc, labels) in evals.items()},
            lambda p: task_metrics.compute(task, p.predictions, p.label_ids))


def training_arguments(cfg, task: Task, n_train: int, ckpt_dir: Path) -> TrainingArguments:
    """Trainer's settings for a teacher run (``TeachConfig``) of ``n_train`` training rows."""
    from distill.devices import scaled_lr, world

    xla = cfg.device == "xla"
    # per_device_train_batch_size is per process: N processes step on N x --batch-size examples
    steps_per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world().size))
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=scaled_lr(cfg.lr, cfg.scale_lr),  # --scale-lr: x processes (linear scaling rule)
        weight_decay=cfg.weight_decay,  # Trainer leaves biases and LayerNorm undecayed
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a share of all steps
        lr_scheduler_type="linear",
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy="steps",
        eval_steps=max(1, math.ceil(steps_per_epoch / cfg.evals_per_epoch)),
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,  # the newest complete checkpoint survives a kill during the next save
        logging_steps=cfg.log_every,
        report_to=parse_report_to(cfg.report_to) or "none",  # inside distill.tracking.tracker_env (teachers.pipeline)
        seed=cfg.seed,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        use_cpu=cfg.device == "cpu",  # cuda and xla: Trainer/accelerate place the model and wrap DDP/XLA
        # Our losses (and BERT's classification CE) are per-batch means that ignore num_items_in_batch;
        # left on, Trainer multiplies them by the number of processes, so DDP's gradient average and
        # the logged loss come out N times too large.
        average_tokens_across_devices=False,
        train_sampling_strategy="group_by_length",  # batches of similar length: less padding
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=task.kind != "ranking",  # the pair columns are ours, not the model's forward arguments
        # XLA: the fused AdamW default has no XLA kernel; torch-xla's syncfree AdamW is its own
        **({"optim": "adamw_torch_xla"} if xla else {}),
    )
