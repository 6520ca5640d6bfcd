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
import re
import shutil
from pathlib import Path

import numpy as np
from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from distill import metrics as task_metrics
from distill.rundir import JsonlLog, atomic_dir, read_json, write_json
from distill.tasks import Task

log = logging.getLogger(__name__)

_CKPT = re.compile(r"^checkpoint-(\d+)$")
# Trainer writes these last; a checkpoint without them was cut off by a crash mid-save.
_CKPT_COMPLETE = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that was written to the end; half-written ones are deleted."""
    if not folder.is_dir():
        return None
    ckpts = sorted((p for p in folder.iterdir() if _CKPT.match(p.name)), key=lambda p: int(_CKPT.match(p.name)[1]))
    while ckpts and not all((ckpts[-1] / f).is_file() for f in _CKPT_COMPLETE):
        log.warning("removing incomplete checkpoint %s (the run was killed while saving it)", ckpts[-1])
        shutil.rmtree(ckpts.pop())
    return ckpts[-1] if ckpts else None


class KeepBest(TrainerCallback):
    """After each evaluation: save the model to ``best_dir`` if the metric improved; stop after
    ``patience`` evaluations without improvement. State lives in ``best_dir/best.json`` so a
    resumed run continues the comparison."""

    def __init__(self, best_dir: Path, metric_key: str, tokenizer, patience: int, jlog: JsonlLog):
        self.best_dir, self.key, self.tokenizer, self.patience, self.jlog = best_dir, metric_key, tokenizer, patience, jlog
        state = read_json(best_dir / "best.json") if (best_dir / "best.json").is_file() else {}
        self.best = state.get("value")
        self.bad_evals = state.get("bad_evals", 0)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = metrics[self.key]
        self.jlog("eval", step=state.global_step, epoch=state.epoch,
                  **{k[5:]: v for k, v in metrics.items() if k.startswith("eval_")})
        if self.best is None or value > self.best:
            self.best, self.bad_evals = value, 0
            with atomic_dir(self.best_dir) as tmp:
                model.save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                write_json(tmp / "best.json", {"metric": self.key[5:], "value": value, "step": state.global_step,
                                               "epoch": state.epoch, "bad_evals": 0})
            self.jlog("best", step=state.global_step, metric=self.key[5:], value=value)
        else:
            self.bad_evals += 1
            state_file = self.best_dir / "best.json"
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


def finetune(model, tokenizer, task: Task, train_enc, train_labels: np.ndarray, evals: dict, cfg, run_dir: Path,
             jlog: JsonlLog, *, resume: bool, callbacks=()) -> dict:
    """Fine-tune ``model`` on the encoded train split; evaluate ``evals`` ({split: (enc, labels)}) each
    epoch; keep the best model in ``run_dir/best``. Returns Trainer's train summary."""
    ckpt_dir = run_dir / "checkpoints"
    eval_split = task.eval_splits[0]
    steps_per_epoch = math.ceil(len(train_labels) / (cfg.batch_size * cfg.grad_accum))
    eval_steps = max(1, math.ceil(steps_per_epoch / cfg.evals_per_epoch))
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,  # Trainer leaves biases and LayerNorm undecayed
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a share of all steps
        lr_scheduler_type="linear",
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,  # the newest complete checkpoint survives a kill during the next save
        logging_steps=cfg.log_every,
        report_to="none",
        seed=cfg.seed,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        use_cpu=cfg.device == "cpu",
        train_sampling_strategy="group_by_length",  # batches of similar length: less padding
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_dataset(train_enc, train_labels),
        eval_dataset={split: _dataset(enc, labels) for split, (enc, labels) in evals.items()},
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=lambda p: task_metrics.compute(task, p.predictions, p.label_ids),
        callbacks=[KeepBest(run_dir / "best", f"eval_{eval_split}_{task.primary_metric}", tokenizer, cfg.patience, jlog),
                   LogToJsonl(jlog), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    checkpoint = last_complete_checkpoint(ckpt_dir) if resume else None
    if checkpoint is not None:
        jlog("resume", checkpoint=checkpoint.name)
        log.info("resuming from %s", checkpoint)
    out = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return {"global_step": out.global_step, "train_loss": out.training_loss, **out.metrics}
