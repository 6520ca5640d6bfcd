"""The teacher pipeline as a library: ``run(TeachConfig)`` fine-tunes a teacher on a task
(``teachers.finetune``), dumps its teaching materials (``teachers.dump``) and scores every labelled
split; ``distill.teach`` is its command line.

Writes RUN/config.json, RUN/log.jsonl, RUN/checkpoints/, RUN/best/ (the best model by the task's
first metric on dev), RUN/materials/ (see distill.materials) and RUN/metrics.json
({split: {metric: value}}, computed from the dumped logits of the best model).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill import metrics as task_metrics
from distill.cli import field_docs
from distill.data import Examples, iter_text_file, load_split
from distill.data.xnli import train_languages
from distill.devices import DEVICES, keep_libraries_off_xla, resolve_device, world
from distill.errors import DistillInputError
from distill.inference import resolve_workers
from distill.materials import base_manifest, splits_replaced, weights_sha256, write_split
from distill.modeling import POOLINGS
from distill.resume import changed_settings, flags, resumed_config
from distill.rundir import JsonlLog, clear_run, holds_run, read_json, run_lock, write_json
from distill.tracking import parse_report_to, tracker_env
from distill.tasks import Task, get_task, task_record
from teachers.dump import DumpSettings, dump_extra, dump_module, dump_outputs
from teachers.hf import make_hf_loadable

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


@field_docs
@dataclass
class TeachConfig:
    task: str = "sst2"  # task name from distill.tasks (GLUE: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; Jigsaw: jigsaw-toxic, jigsaw-severity, jigsaw-multilingual; xnli)
    teacher: str = "minilm"  # "minilm" (offline all-MiniLM-L6-v2), "mpnet" (offline all-mpnet-base-v2, `make base`), a Hub name (bert-base-uncased), a local folder or a teacher run
    pooling: str = "auto"  # sentence vector for the head: auto (the teacher's own: mean for sentence-transformers folders like MiniLM, else cls) | cls | mean
    data_dir: str | None = None  # classic glue_data folder (GLUE; leave out to load from the Hub), the Kaggle files' folder (Jigsaw), or the folder holding XNLI-1.0/ and XNLI-MT-1.0/
    output_dir: str = ""  # run directory (default runs/teach-<task>)
    train_file: str = ""  # your own task: a train .csv/.tsv/.jsonl with a header (then --task names the new task)
    dev_file: str = ""  # your own task: the labelled dev file, which picks the best evaluation
    test_file: str = ""  # your own task: a test file (labels optional), dumped like dev
    dataset: str = ""  # your own task from `datasets`: a Hub name (needs the network) or a local folder of train/validation files
    dataset_config: str = ""  # --dataset's configuration, e.g. sst2 for nyu-mll/glue
    text_columns: tuple[str, ...] = ()  # your own task: the text column, or two for sentence pairs
    label_column: str = ""  # your own task: the gold column (several, comma-separated: multi-label)
    task_kind: str = ""  # your own task: classification | regression | multilabel (default: inferred; integer labels need it)
    metrics: tuple[str, ...] = ()  # your own task: metrics, the first picks the best evaluation (default by kind: accuracy | pearson spearman | auc)
    epochs: float = 3.0  # BERT fine-tunes for 2-4 epochs (Devlin et al. 2019)
    lr: float | None = None  # peak AdamW lr (default: the teacher's: 1e-4 for small MiniLM, 2e-5 for MPNet and any other)
    batch_size: int = 32  # examples per optimiser step (per device), before accumulation
    eval_batch_size: int = 128  # examples per batch for evaluation and the materials dump
    grad_accum: int = 1  # gradient accumulation steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases / LayerNorm)
    warmup_ratio: float = 0.06  # share of steps of linear warmup, then linear decay to 0 (RoBERTa's 6 %)
    max_grad_norm: float = 1.0  # gradient clipping
    max_length: int = 128  # token limit; with dynamic padding a larger limit costs only for long examples
    max_train_samples: int | None = None  # train on the first K training examples only
    seed: int = 42  # seed for head init, shuffling and dropout
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 needs CUDA); mixed precision via Trainer/autocast; use bf16 on TPU
    device: str = "auto"  # auto (xla if torch_xla is installed and a TPU/PJRT_DEVICE is configured, else cuda if present, else cpu) | cpu | cuda | xla
    scale_lr: bool = False  # multi-process: multiply --lr by the number of processes (linear scaling rule, Goyal et al. 2017)
    evals_per_epoch: int = 2  # dev evaluations per epoch; the best one is kept (finer than once an epoch)
    patience: int = 2  # early stopping: stop after this many evaluations without improvement (0 = never)
    save_steps: int = 500  # checkpoint every N optimiser steps, for --resume
    log_every: int = 50  # log loss / lr every N steps to RUN/log.jsonl
    resume: bool = False  # continue a killed run in --output-dir from its newest complete checkpoint
    overwrite: bool = False  # replace what --output-dir holds (a failed or unwanted run), once the new run's input checks pass
    dump_only: bool = False  # no training: dump materials from RUN/best, or from --teacher if RUN is new
    splits: tuple[str, ...] = ()  # splits to dump (default: all of the task's splits)
    extra: tuple[str, ...] = ()  # NAME=FILE: unlabelled texts (.txt/.tsv/.csv) dumped as extra splits
    temperature: float = 2.0  # T of the stored soft targets softmax(z/T); students may re-derive from logits
    keep_checkpoints: bool = False  # keep RUN/checkpoints (optimiser state) after training finishes
    compile: bool = False  # dump with the teacher compiled by inductor, weights frozen (~40 s compiling; faster on fixed shapes, measured slower than the prepacked eager dump on length-sorted shards); not on XLA
    dump_batch_tokens: int = 1024  # dump batches hold at most this many padded tokens (and --eval-batch-size sentences), so every matmul gets ~1k rows: BERT-base dump 80 % of peak vs 71 % in 64-sentence batches (0 = off)
    dump_workers: int = 0  # CPU dump: threads that each run whole batches on a weight-sharing copy of the teacher (0 = one per torch thread; 1 = every op split across the threads): MiniLM's SST-2 train dump 79 s vs 87 s on 2 cores
    prepack: bool = True  # CPU fp32 dump: Linear layers through oneDNN with weights prepacked once (MKL's eager sgemm runs AVX2 code on AMD CPUs, 2.4x slower there), the FFN's erf GELU fused into its linear; off with --compile
    shard_size: int = 100_000  # --extra files are labelled this many rows at a time (memory bound; a kill loses one shard)
    skip_bad_rows: bool = False  # drop malformed/empty rows with a warning instead of stopping
    train_languages: tuple[str, ...] = ("en",)  # XNLI: languages of the translated training files, en (zero-shot) | all | codes
    valid_fraction: float = 0.1  # Jigsaw: share of train held out as dev (Kaggle ships no dev), stratified, seeded
    folds: int = 0  # Jigsaw: k-fold instead of --valid-fraction, dev = fold --fold of K (0 = off)
    fold: int = 0  # Jigsaw: which fold (0-based) is dev when --folds is set
    holdout_seed: int = 42  # seed of the held-out dev split; fixed apart from --seed so every run sees the same split
    label_smoothing: float = 0.0  # multi-label: BCE targets y(1-e) + e/2
    aux_weight: float = 1.0  # multi-label: loss weight of the labels after the first (toxic is the main label)
    pos_weight: str = "sqrt"  # multi-label: weight of each label's positives, sqrt (sqrt(neg/pos) on train: rare labels like threat get learnt) | none
    margin: float = 0.5  # ranking: margin of the margin ranking loss on (more, less) toxic pairs
    label_weights: tuple[str, ...] = ()  # ranking from a multi-label teacher: LABEL=W terms of score = sum W*sigmoid(logit) (default all 1)
    report_to: str = "none"  # experiment trackers: none, or tensorboard, wandb, mlflow (comma-separated; Trainer's integrations, offline, inside RUN; pip install '.[track]')
    ensemble: tuple[str, ...] = ()  # RUN RUN ...: no training; write these teacher runs' ensemble (materials, metrics) into --output-dir
    teacher_weights: str = ""  # --ensemble: one weight per run, comma-separated (default equal)

    def validate(self) -> Task:
        """Check every flag before anything is read or written; returns the task."""
        task = self.own_task() or get_task(self.task)
        checks = [
            (self.epochs > 0, "--epochs must be > 0"),
            (self.lr is None or self.lr > 0, "--lr must be > 0"),
            (self.batch_size > 0 and self.eval_batch_size > 0, "--batch-size and --eval-batch-size must be > 0"),
            (self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}"),
            (self.grad_accum >= 1, "--grad-accum must be >= 1"),
            (0 <= self.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
            (8 <= self.max_length <= 512, "--max-length must be in 8..512 (BERT has 512 positions)"),
            (self.max_train_samples is None or self.max_train_samples > 0, "--max-train-samples must be > 0"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.temperature > 0, "--temperature must be > 0"),
            (self.save_steps > 0 and self.log_every > 0, "--save-steps and --log-every must be > 0"),
            (self.evals_per_epoch >= 1, "--evals-per-epoch must be >= 1"),
            (self.shard_size >= 1, "--shard-size must be >= 1"),
            (self.dump_batch_tokens >= 0, "--dump-batch-tokens must be >= 0 (0 = batches of --eval-batch-size sentences)"),
            (self.dump_workers >= 0, "--dump-workers must be >= 0 (0 = one per torch thread on CPU)"),
            (not (self.compile and self.dump_workers > 1), "--compile runs one compiled teacher: drop --dump-workers or --compile"),
            (not (self.resume and self.dump_only), "--resume and --dump-only exclude each other"),
            (not (self.overwrite and (self.resume or self.dump_only)), "--overwrite starts a new run: drop --resume / --dump-only"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.aux_weight >= 0 and self.margin >= 0, "--aux-weight and --margin must be >= 0"),
            (self.pos_weight in ("sqrt", "none"), "--pos-weight must be sqrt or none"),
        ]
        for ok, message in checks:
            if not ok:
                raise DistillInputError(message)
        parse_report_to(self.report_to)
        for s in self.splits:
            if s not in task.splits:
                raise DistillInputError(f"--splits {s}: task {task.name} has splits {', '.join(task.splits)}")
        names = [e.split("=", 1)[0] for e in self.extra]
        for e in self.extra:
            name, _, path = e.partition("=")
            if not name or not path or not name.replace("_", "").replace("-", "").isalnum():
                raise DistillInputError(f"--extra {e!r} must be NAME=FILE with a NAME of letters, digits, - or _")
            if name in task.splits or names.count(name) > 1:
                raise DistillInputError(f"--extra name {name!r} clashes with another split; choose another NAME")
        self.holdout().validate()
        train_languages(self.train_languages)
        for w in self.label_weights:
            name, _, value = w.partition("=")
            try:
                float(value)
            except ValueError:
                raise DistillInputError(f"--label-weights {w!r} must be LABEL=NUMBER, e.g. severe_toxic=2") from None
        return task

    def own_task(self) -> Task | None:
        """The task --train-file / --dataset and the column flags define (read once to check it), or None."""
        from distill.data import GenericSpec, generic_task

        own = ("dev_file", "test_file", "dataset_config", "text_columns", "label_column", "task_kind", "metrics")
        if not (self.train_file or self.dataset):
            given = [f"--{f.replace('_', '-')}" for f in own if getattr(self, f)]
            if given:
                raise DistillInputError(f"{', '.join(given)} define your own task: add --train-file or --dataset")
            return None
        return generic_task(GenericSpec(self.task, self.train_file, self.dev_file, self.test_file, self.dataset,
                                        self.dataset_config, tuple(self.text_columns), self.label_column, self.task_kind,
                                        tuple(self.metrics)))

    def holdout(self):
        from distill.data.holdout import Holdout

        return Holdout(self.valid_fraction, self.folds, self.fold, self.holdout_seed)

    @classmethod
    def from_run(cls, run_dir: str | Path, **overrides) -> "TeachConfig":
        """The config a run was started with (RUN/config.json), with ``overrides`` applied."""
        saved = read_json(Path(run_dir) / "config.json")
        known = {f.name for f in dataclasses.fields(cls)}
        merged = {k: v for k, v in saved.items() if k in known}
        merged.update(overrides, output_dir=str(run_dir))
        merged["device"] = overrides.get("device", "auto")  # the saved device is the machine's, not the user's
        merged["overwrite"] = overrides.get("overwrite", False)  # what started the run, not what continues it
        for k in ("splits", "extra", "label_weights", "text_columns", "metrics", "train_languages"):
            merged[k] = tuple(merged.get(k) or ())
        return cls(**merged)

    def resolved(self) -> "TeachConfig":
        device = resolve_device(self.device, self.precision)
        if self.compile and device == "xla":
            raise DistillInputError("--compile is for CPU/CUDA dumps: XLA compiles its own graphs; drop --compile")
        keep_libraries_off_xla(device)
        from teachers.hf import default_lr

        return dataclasses.replace(self, device=device, output_dir=self.output_dir or f"runs/teach-{self.task}",
                                   lr=self.lr if self.lr is not None else default_lr(self.teacher))


# Fields that define a run's data: a --resume or --dump-only of the run must use the saved values.
_DATA_KEYS = ("task", "data_dir", "max_train_samples", "valid_fraction", "folds", "fold", "holdout_seed")
# Fields that must agree between a run and its --resume (the rest, e.g. --splits, may change).
_RESUME_KEYS = ("task", "teacher", "pooling", "data_dir", "epochs", "lr", "batch_size", "grad_accum", "weight_decay",
                "warmup_ratio", "max_grad_norm", "max_length", "max_train_samples", "seed", "precision",
                "evals_per_epoch", "valid_fraction", "folds", "fold", "holdout_seed", "label_smoothing", "aux_weight",
                "margin", "pos_weight", "scale_lr")


def _seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)  # random, numpy and torch: the draws the hand-written seeding made (tests/test_equivalence.py)


def tokenizer_info(tokenizer, name: str) -> dict:
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode()
    return {"name": name, "class": type(tokenizer).__name__, "vocab_size": len(vocab),
            "vocab_sha256": hashlib.sha256(blob).hexdigest(), "do_lower_case": getattr(tokenizer, "do_lower_case", None)}


def _check_run_dir(cfg: TeachConfig, run_dir: Path) -> None:
    cfg_file = run_dir / "config.json"
    if cfg.resume:
        resumed_config(run_dir, cfg, _RESUME_KEYS, TeachConfig())
    elif cfg.dump_only:
        if cfg_file.is_file():
            old = read_json(cfg_file)
            diff = changed_settings(old, cfg, _DATA_KEYS, TeachConfig())
            if diff:
                raise DistillInputError(
                    f"--dump-only: {run_dir} was trained with other {flags(diff)} "
                    f"({', '.join(f'{old.get(k)!r}' for k in diff)}); drop those flags to dump the run's own data, or "
                    f"dump into a new --output-dir with --teacher {run_dir}")
        return
    elif holds_run(run_dir) and not cfg.overwrite:
        raise DistillInputError(f"--output-dir {run_dir} already holds a run; pass --resume to continue it, "
                                f"--dump-only to re-dump it, --overwrite to replace it, or choose a new --output-dir")


def _load_split(task: Task, cfg: TeachConfig, split: str) -> Examples:
    """One split as the run defines it: its data dir, holdout and (train) sample limit, the same for
    training, its --resume and every re-dump."""
    ex = load_split(task, split, cfg.data_dir, skip_bad_rows=cfg.skip_bad_rows, holdout=cfg.holdout(),
                    languages=train_languages(cfg.train_languages))
    return ex.select(cfg.max_train_samples) if split == "train" and cfg.max_train_samples else ex


def _load_all(task: Task, cfg: TeachConfig, training: bool) -> dict[str, Examples]:
    """Every split the run needs, read (and validated) before anything is written."""
    wanted = list(cfg.splits or task.splits)
    if training:
        wanted = list(dict.fromkeys(["train", *task.eval_splits, *wanted]))
    data = {s: _load_split(task, cfg, s) for s in wanted}
    if training and data["train"].gold is None:
        raise DistillInputError(
            f"{data['train'].source} gives {task.name} no gold to train on"
            + ("; put Kaggle's validation_data.csv (annotator pairs) in --data-dir, or score the comments with a "
               "fine-tuned jigsaw-toxic teacher: --teacher TOXIC_RUN --dump-only" if task.kind == "ranking" else ""))
    return data


def _check_extras(task: Task, cfg: TeachConfig) -> dict[str, tuple[str, int]]:
    """{name: (file, rows)} of the --extra files, each streamed through once so a bad row stops the
    run before anything is written (the dump streams them again, shard by shard)."""
    out = {}
    for e in cfg.extra:
        name, _, path = e.partition("=")
        rows = sum(len(c) for c in iter_text_file(path, split=name, pair=task.is_pair,
                                                  text_columns=task.splits["train"].text_columns, chunk=cfg.shard_size))
        out[name] = (path, rows)
    return out


def _derive_score(model, label_weights: tuple[str, ...]) -> None:
    """Turn a multi-label (Jigsaw 2018) teacher into a severity scorer: score = sum_l w_l * sigmoid(z_l),
    recorded in its config (``distill_score_weights``) so every later load scores the same way."""
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    weights = dict.fromkeys(names, 1.0)
    for w in label_weights:
        name, _, value = w.partition("=")
        if name not in weights:
            raise DistillInputError(f"--label-weights {w!r}: the teacher has no label {name!r} (it has {', '.join(names)})")
        weights[name] = float(value)
    model.config.distill_score_weights = [weights[n] for n in names]
    log.info("severity score = %s", " + ".join(f"{w:g}*p({n})" for n, w in weights.items()))


def _warn_if_one_class(task: Task, split: str, logits: np.ndarray, jlog: JsonlLog) -> None:
    """A teacher that gives every row of a labelled split the same class has learnt nothing a student
    can use (its students then agree with it perfectly); say so instead of letting it pass."""
    if task.kind != "classification" or len(logits) < 2:
        return
    classes = np.unique(logits.argmax(-1))
    if len(classes) == 1:
        name = task.label_names[int(classes[0])]
        log.warning("the teacher predicts %r for every %s row: it has not learnt the task (too little data, "
                    "too few steps or a bad --lr); its students would only copy that", name, split)
        jlog("warning", split=split, message=f"teacher predicts one class ({name}) on every row")


def _bar(show: bool, description: str, total: int):
    if not show:
        return contextlib.nullcontext(None)
    from distill.progress import bar

    return bar(description, total)


def run(cfg: TeachConfig, *, show_progress: bool = False) -> dict:
    """Fine-tune (unless --dump-only), dump materials and score every labelled split.

    Returns {"run_dir", "metrics": {split: {metric: value}}, "timings": {...}}.
    """
    task = cfg.validate()
    if cfg.ensemble:
        from teachers.ensemble import write_ensemble

        out = cfg.output_dir or "runs/ensemble"  # the task is the runs' own
        with run_lock(out):
            return write_ensemble(list(cfg.ensemble), out, weights=cfg.teacher_weights, overwrite=cfg.overwrite)
    cfg = cfg.resolved()  # before transformers loads: see distill.devices.keep_libraries_off_xla
    # one writer per run directory (rank 0 writes for all processes of a launch)
    with run_lock(cfg.output_dir) if world().main else contextlib.nullcontext():
        return _run(cfg, task, show_progress)


def _run(cfg: TeachConfig, task: Task, show_progress: bool) -> dict:
    import torch

    from teachers import load_teacher

    run_dir = Path(cfg.output_dir)
    # Under torchrun / an XLA launch every process trains (Trainer shards the batches); rank 0 alone
    # checks and writes the run directory and dumps the materials.
    rank = world()
    if rank.main:
        _check_run_dir(cfg, run_dir)
    best_dir = run_dir / "best"
    have_best = (best_dir / "best.json").is_file() or (best_dir / "config.json").is_file()
    training = not cfg.dump_only and not (run_dir / "train_summary.json").is_file()
    if cfg.dump_only and not have_best and (run_dir / "config.json").is_file():
        raise DistillInputError(f"--dump-only: {run_dir} has no best model yet; finish training with --resume first")

    # Everything that can fail on bad input happens before the run directory is touched.
    data = _load_all(task, cfg, training)
    extras = _check_extras(task, cfg)
    _seed_everything(cfg.seed)  # before the head is initialised, so a resumed run rebuilds the same model
    source = str(best_dir) if (cfg.dump_only and have_best) else cfg.teacher
    model, tokenizer = _load_source(cfg, task, source, best_dir)

    if rank.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:  # only now: bad input above left the old run as it was
            clear_run(run_dir)
    jlog = JsonlLog(run_dir / "log.jsonl", enabled=rank.main)
    if rank.main and not (cfg.dump_only and (run_dir / "config.json").is_file()):
        write_json(run_dir / "config.json", {"kind": "teacher", **dataclasses.asdict(cfg), **task_record(task)})
    jlog("start", mode="dump_only" if cfg.dump_only else ("resume" if cfg.resume else "train"), device=cfg.device,
         torch_threads=torch.get_num_threads(), processes=rank.size)
    timings: dict[str, float] = read_json(run_dir / "timings.json") if (run_dir / "timings.json").is_file() else {}
    if training:
        _train(cfg, task, model, tokenizer, data, run_dir, jlog, timings, show_progress and rank.main)
    if not rank.main:  # the others are done: rank 0 saves, dumps and scores
        return {"run_dir": str(run_dir), "metrics": {}, "timings": {}, "rank": rank.rank}
    if training or not cfg.dump_only:
        model, tokenizer = load_teacher(str(best_dir))
    elif source != str(best_dir):
        # dump-only straight from a fine-tuned folder: keep a copy so the run is self-contained
        model.save_pretrained(best_dir)
        tokenizer.save_pretrained(best_dir)
        make_hf_loadable(best_dir)
    metrics = _dump(cfg, task, model, tokenizer, data, extras, run_dir, jlog, timings, show_progress)
    jlog("done", metrics=metrics)
    return {"run_dir": str(run_dir), "metrics": metrics, "timings": timings}


def _load_source(cfg: TeachConfig, task: Task, source: str, best_dir: Path):
    """(model, tokenizer) to train or dump: dump-only keeps a fine-tuned head as it is (or derives a
    severity score from a multi-label teacher); training (re)initialises the head for the task."""
    from teachers import load_teacher

    model, tokenizer = load_teacher(source, task=None if cfg.dump_only else task,
                                    pooling="auto" if source == str(best_dir) else cfg.pooling)
    if cfg.dump_only and source == cfg.teacher and task.kind == "ranking" and \
            model.config.problem_type == "multi_label_classification":
        _derive_score(model, cfg.label_weights)
    elif cfg.dump_only and source == cfg.teacher and model.config.num_labels != task.num_labels:
        raise DistillInputError(f"--dump-only --teacher {cfg.teacher}: its head has {model.config.num_labels} labels, "
                                f"{task.name} needs {task.num_labels}; fine-tune it first")
    return model, tokenizer


def _train(cfg: TeachConfig, task: Task, model, tokenizer, data: dict[str, Examples], run_dir: Path, jlog: JsonlLog,
           timings: dict, show_progress: bool) -> None:
    """Fine-tune with Trainer (``teachers.finetune``) into RUN/best; record the time and summary."""
    from distill.inference import encode
    from teachers.finetune import finetune

    t0 = time.perf_counter()
    train_enc = encode(tokenizer, data["train"], cfg.max_length)
    evals = {s: (encode(tokenizer, data[s], cfg.max_length), data[s].gold) for s in task.eval_splits}
    callbacks = []
    if show_progress:
        from distill.progress import TrainerProgress

        callbacks.append(TrainerProgress())
    # --report-to: Trainer's own integrations, writing inside the run and offline (distill.tracking)
    with tracker_env(run_dir, parse_report_to(cfg.report_to)):
        summary = finetune(model, tokenizer, task, train_enc, data["train"].gold, evals, cfg, run_dir, jlog,
                           resume=cfg.resume, callbacks=callbacks)
    if not world().main:
        return
    timings["train_s"] = timings.get("train_s", 0.0) + time.perf_counter() - t0
    write_json(run_dir / "train_summary.json", summary)
    if not cfg.keep_checkpoints:  # RUN/best has the model; optimiser checkpoints only serve --resume
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    write_json(run_dir / "timings.json", timings)
    jlog("train_done", **summary)


def dump_settings(cfg: TeachConfig) -> DumpSettings:
    return DumpSettings(max_length=cfg.max_length, batch_size=cfg.eval_batch_size, batch_tokens=cfg.dump_batch_tokens,
                        workers=resolve_workers(cfg.dump_workers, cfg.device, cfg.compile), device=cfg.device,
                        precision=cfg.precision, shard_size=cfg.shard_size)


def _dump(cfg: TeachConfig, task: Task, model, tokenizer, data: dict[str, Examples], extras: dict, run_dir: Path,
          jlog: JsonlLog, timings: dict, show_progress: bool) -> dict:
    """Dump every requested split (and --extra file) of the fine-tuned ``model`` as materials and score
    the labelled ones; returns RUN/metrics.json's content."""
    import torch

    num_parameters = sum(p.numel() for p in model.parameters())
    teacher_meta = {"name": cfg.teacher, "weights_sha256": weights_sha256(run_dir / "best"), "num_parameters": num_parameters,
                    "architecture": type(model).__name__, "hidden_size": getattr(model.config, "hidden_size", None)}
    teacher, setup = dump_module(model, device=cfg.device, precision=cfg.precision, prepack=cfg.prepack, compile=cfg.compile)
    base = base_manifest(task, teacher=teacher_meta, tokenizer=tokenizer_info(tokenizer, cfg.teacher),
                         max_length=cfg.max_length, temperature=cfg.temperature)
    dump_splits = list(cfg.splits or task.splits) + [e.split("=", 1)[0] for e in cfg.extra]
    # another temperature (or teacher) replaces the materials whole: every split they hold is re-dumped
    lost = splits_replaced(run_dir / "materials", base, dump_splits)
    if [s for s in lost if s not in task.splits]:
        raise DistillInputError(
            f"--temperature {cfg.temperature:g} (or another teacher) replaces {run_dir}/materials whole, which holds the "
            f"extra split(s) {', '.join(s for s in lost if s not in task.splits)}; pass them again with --extra NAME=FILE, "
            f"or dump into a new --output-dir")
    for split in lost:
        log.info("re-dumping %s too: the materials change temperature or teacher, and one manifest never mixes them", split)
        data[split] = _load_split(task, cfg, split)
        dump_splits.append(split)

    settings = dump_settings(cfg)
    jlog("dump_setup", prepacked_linears=setup["prepacked_linears"], compile=cfg.compile, batch_tokens=cfg.dump_batch_tokens,
         batch_size=cfg.eval_batch_size, workers=settings.workers, threads=torch.get_num_threads())
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    bar = functools.partial(_bar, show_progress)
    t0 = time.perf_counter()
    n_total = 0
    for split in dump_splits:
        if split in extras:
            n_total += dump_extra(teacher, tokenizer, task, settings, base, split, *extras[split], run_dir / "materials", jlog, bar)
            continue
        ex = data[split] if split in data else _load_split(task, cfg, split)
        ts = time.perf_counter()
        with bar(f"dump {split}", len(ex)) as b:
            logits, pooled, enc = dump_outputs(teacher, tokenizer, ex, settings, on_progress=b.advance if b else None)
        write_split(run_dir / "materials", base, split, ex, logits, pooled, task)
        secs = time.perf_counter() - ts
        n_total += len(ex)
        jlog("dump", split=split, n=len(ex), seconds=round(secs, 3), examples_per_s=round(len(ex) / secs, 1),
             tokens=int(enc.lengths.sum()))
        if ex.gold is not None:
            metrics[split] = task_metrics.compute(task, logits, ex.gold, ex.groups)
            write_json(run_dir / "metrics.json", metrics)
            _warn_if_one_class(task, split, logits, jlog)
    timings["dump_s"] = time.perf_counter() - t0
    timings["dump_examples_per_s"] = n_total / max(timings["dump_s"], 1e-9)
    write_json(run_dir / "timings.json", timings)
    return metrics
