"""Student training as a library: ``run(StudentConfig)`` trains one student (or several seeds) on a
teacher run's materials and scores it; ``distill.student`` is its command line.

The task, label names, tokenizer, max length and splits come from the teacher run's manifest; the
student reads the teacher's outputs row by row of the materials, matched by example id. ``--no-kd``
trains the same student on gold labels only (the baseline every report shows). ``--seeds K`` trains
K seeds into RUN/seed-<s>/ and writes their mean ± std to RUN/metrics.json. The loop itself is
``students.loop.fit``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import shlex
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distill import materials
from distill.cli import add_dataclass_args, field_docs, given_fields
from distill.devices import DEVICES, resolve_device, torch_device, world
from distill.errors import DistillInputError
from distill.inference import encode
from distill.losses import LAYER_TERMS
from distill.ensemble import open_teacher_runs
from distill.materials import TeacherRun
from distill.resume import resumed_config
from distill.tracking import Trackers, parse_report_to
from distill.rundir import JsonlLog, clear_run, holds_run, load_weights, read_json, run_lock, write_json, write_text
from distill.tasks import Task, get_task, task_from_record, task_record
from students import ARCHS
from students.base import load_teacher_weights
from students.loop import FitOptions, SplitData, add_transfer, evaluate, fit, save_model

log = logging.getLogger(__name__)

# Per-arch defaults where one value does not suit all: (lr, warmup_ratio, epochs).
# CNN/BiLSTM: Adam at 1e-3 (Kim 2014 / Tang 2019 use Adadelta/Adam at this scale); the transformer
# starts from teacher layers, so it fine-tunes like one (1e-4, 6 % warmup), and needs fewer epochs.
ARCH_DEFAULTS = {"cnn": (1e-3, 0.0, 8), "bilstm": (1e-3, 0.0, 8), "transformer": (1e-4, 0.06, 3)}


@field_docs
@dataclass
class StudentConfig:
    arch: str = "cnn"  # cnn | bilstm | transformer
    materials: str = ""  # teacher run directory written by distill.teach; several (comma-separated or repeated): their ensemble, tokenizer and init from the first
    teacher_weights: str = ""  # with several --materials: one weight per run, comma-separated (default equal)
    output_dir: str = ""  # run directory (default runs/student-<arch>-<task>)
    task: str | None = None  # optional check: refuse materials of another task
    epochs: int = 0  # max epochs; 0 = the arch's default (cnn/bilstm 8, transformer 3); early stopping may end sooner
    batch_size: int = 32  # examples per optimiser step
    eval_batch_size: int = 256  # examples per evaluation batch
    lr: float = 0.0  # peak learning rate; 0 = the arch's default (cnn/bilstm 1e-3, transformer 1e-4)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not on biases / norms)
    warmup_ratio: float = -1.0  # share of steps of linear warmup, then linear decay; -1 = arch default
    max_grad_norm: float = 1.0  # gradient clipping of the dense parameters (0 = off)
    alpha: float = 0.5  # weight of the teacher term; the loss is (1-alpha)*hard + alpha*soft + beta*hidden
    beta: float = 0.0  # weight of the hidden term (student sentence vector -> teacher pooled embedding)
    temperature: float = 0.0  # KD temperature T; 0 = the one the materials were dumped with
    kd_loss: str = "kl"  # kl (Hinton 2015, KL at T with T^2) | mse (Tang 2019, MSE on logits)
    hidden_loss: str = "cosine"  # cosine | mse, through a learned projection to the teacher width
    kd: bool = True  # learn from the teacher; --no-kd: gold labels only (alpha = beta = 0), the baseline
    layer_map: str = "uniform"  # layer-wise KD pairs student:teacher (0 = embeddings): uniform (TinyBERT) | last | e.g. 0:0,1:2,2:4
    embedding_mse: float = 0.0  # weight of TinyBERT's embedding-layer MSE (Jiao et al. 2020); layer-wise terms need --arch transformer
    hidden_mse: float = 0.0  # weight of TinyBERT's hidden-state MSE, summed over the mapped layers
    attention_mse: float = 0.0  # weight of TinyBERT's attention-score MSE, summed over the mapped layers (same head count)
    attention_kl: float = 0.0  # weight of MiniLM's last-layer attention-distribution KL (Wang et al. 2020; same head count)
    value_kl: float = 0.0  # weight of MiniLM's last-layer value-relation KL (any head count, see --relation-heads)
    hidden_cosine: float = 0.0  # weight of DistilBERT's hidden-state cosine (Sanh et al. 2019), summed over the mapped layers
    relation_heads: int = 0  # relation heads of --value-kl (MiniLMv2); 0 = the teacher's attention heads
    layer_epochs: int = 0  # TinyBERT's two stages: this many epochs of layer-wise terms only, then --epochs of prediction KD; 0 = all terms in one stage
    report_to: str = "none"  # experiment trackers: none, or tensorboard, wandb, mlflow (comma-separated; offline, inside RUN; pip install '.[track]')
    transfer_split: str = ""  # materials split(s), comma-separated, of unlabelled texts (dumped with --extra NAME=FILE) added to train with the teacher term only
    max_length: int = 0  # token limit per sentence; 0 = the teacher's
    seed: int = 42  # first seed (init, dropout, batch order)
    seeds: int = 1  # train this many seeds (seed, seed+1, ...) and report mean ± std
    patience: int = 2  # stop after this many epochs without dev improvement (0 = never)
    eval_steps: int = 0  # also evaluate on dev every N steps into each epoch, keeping the best (0 = at epoch ends only; for big transfer sets)
    save_steps: int = 500  # checkpoint every N steps (and every epoch end) for --resume
    log_every: int = 50  # log the loss terms every N steps to RUN/log.jsonl
    resume: bool = False  # continue a killed run in --output-dir from its checkpoint
    overwrite: bool = False  # replace what --output-dir holds (a failed or unwanted run), once the new run's input checks pass
    device: str = "auto"  # auto (xla if torch_xla is installed and a TPU/PJRT_DEVICE is configured, else cuda if present, else cpu) | cpu | cuda | xla
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast)
    scale_lr: bool = False  # multi-process: multiply --lr by the number of processes (linear scaling rule, Goyal et al. 2017)
    options: dict = field(default_factory=dict)  # the arch's own settings (its config dataclass), e.g. {"num_filters": 100}

    def validate(self) -> Task:
        checks = [
            (self.arch in ARCHS, f"--arch must be one of {', '.join(ARCHS)}"),
            (bool(self.materials), "--materials is required: a teacher run directory written by python -m distill.teach"),
            (self.epochs >= 0 and self.batch_size >= 1 and self.eval_batch_size >= 1, "--epochs must be >= 0 and batch sizes >= 1"),
            (self.lr >= 0 and self.weight_decay >= 0, "--lr and --weight-decay must be >= 0"),
            (self.warmup_ratio == -1 or 0 <= self.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
            (0 <= self.alpha <= 1, "--alpha must be in [0, 1]"),
            (self.beta >= 0, "--beta must be >= 0"),
            (self.temperature >= 0, "--temperature must be > 0 (or 0 for the materials' own)"),
            (self.kd_loss in ("kl", "mse"), "--kd-loss must be kl or mse"),
            (self.hidden_loss in ("cosine", "mse"), "--hidden-loss must be cosine or mse"),
            (self.max_length == 0 or 4 <= self.max_length <= 512, "--max-length must be in 4..512 (or 0)"),
            (self.seeds >= 1, "--seeds must be >= 1"),
            (self.patience >= 0 and self.save_steps >= 0 and self.eval_steps >= 0 and self.log_every >= 1,
             "--patience/--save-steps/--eval-steps must be >= 0 and --log-every >= 1"),
            (self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}"),
            (self.precision in ("fp32", "bf16", "fp16"), "--precision must be fp32, bf16 or fp16"),
            (not (self.overwrite and self.resume), "--overwrite starts a new run: drop --resume"),
            (all(getattr(self, k) >= 0 for k in LAYER_TERMS) and self.relation_heads >= 0 and self.layer_epochs >= 0,
             "the layer-wise weights, --relation-heads and --layer-epochs must be >= 0"),
            (not self.layer_wise or self.arch == "transformer",
             f"the layer-wise terms ({', '.join('--' + k.replace('_', '-') for k in LAYER_TERMS)}) read token states "
             f"and attention: use --arch transformer (cnn and bilstm learn from the materials only)"),
            (not self.layer_epochs or self.layer_wise, "--layer-epochs runs the layer-wise terms first: give one a weight, "
                                                       "e.g. --hidden-mse 1 --attention-mse 1 --embedding-mse 1"),
            (not self.layer_wise or self.kd, "--no-kd trains on gold labels only: drop the layer-wise weights"),
        ]
        for ok, msg in checks:
            if not ok:
                raise DistillInputError(msg)
        if self.task is not None:
            get_task(self.task)
        parse_report_to(self.report_to)
        self.arch_config()  # validates the arch options
        return get_task(self.task) if self.task else None

    @property
    def layer_wise(self) -> bool:
        """Whether any layer-wise term has a weight (the teacher then runs in the loop)."""
        return any(getattr(self, k) > 0 for k in LAYER_TERMS)

    def arch_config(self):
        cls = ARCHS[self.arch][0]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(self.options) - known)
        if unknown:
            raise DistillInputError(f"--{unknown[0].replace('_', '-')} is not an option of --arch {self.arch} "
                                    f"(it has {', '.join('--' + k.replace('_', '-') for k in sorted(known))})")
        conf = cls(**_tuples(self.options))
        try:
            conf.validate()
        except ValueError as exc:
            raise DistillInputError(f"{exc} (--arch {self.arch})") from None
        return conf

    def resolved(self) -> StudentConfig:
        """Arch defaults filled in, the device chosen, the KD switch applied."""
        lr, warmup, epochs = ARCH_DEFAULTS[self.arch]
        device = resolve_device(self.device, self.precision)
        options = dataclasses.asdict(self.arch_config())
        if options.get("embedding") == "sparse" and (device == "xla" or world().size > 1):
            # sparse gradients (SparseAdam) exist neither on XLA nor in NCCL's all-reduce
            log.warning("--embedding sparse -> dense: sparse gradients do not run on %s",
                        "XLA" if device == "xla" else "several processes")
            options["embedding"] = "dense"
        return dataclasses.replace(
            self, lr=self.lr or lr, warmup_ratio=warmup if self.warmup_ratio == -1 else self.warmup_ratio,
            epochs=self.epochs or epochs, device=device,
            alpha=self.alpha if self.kd else 0.0, beta=self.beta if self.kd else 0.0,
            options=options,
            output_dir=self.output_dir or f"runs/student-{self.arch}-{'kd' if self.kd else 'nokd'}")


def _tuples(options: dict) -> dict:
    """Arch options with JSON/argparse lists as the tuples the config dataclasses declare."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


# Fields that must agree between a run and its --resume.
_RESUME_KEYS = ("arch", "epochs", "batch_size", "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "alpha", "beta",
                "temperature", "kd_loss", "hidden_loss", "kd", "max_length", "seed", "precision", "options", "transfer_split",
                "scale_lr", "layer_map", *LAYER_TERMS, "relation_heads", "layer_epochs")


def command_line(cfg: StudentConfig) -> str:
    """The ``python -m distill.student`` command that reproduces ``cfg`` (non-default flags only)."""
    base = StudentConfig()
    parts = ["python", "-m", "distill.student"]
    for f in dataclasses.fields(StudentConfig):
        v = getattr(cfg, f.name)
        if f.name in ("options", "resume", "seeds", "overwrite") or v == getattr(base, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        parts += [flag] if v is True else [f"--no-{f.name.replace('_', '-')}"] if v is False else [flag, str(v)]
    for k, v in cfg.options.items():
        parts += ["--" + k.replace("_", "-"), *(map(str, v) if isinstance(v, (list, tuple)) else [str(v)])]
    return shlex.join(parts)


@functools.lru_cache(maxsize=2)
def teacher_tokenizer(model_dir: str):
    """The teacher's tokenizer (the students' too), loaded once per process."""
    from distill.hf_modeling import load_tokenizer

    return load_tokenizer(model_dir)


def with_transfer(train: SplitData, teacher: TeacherRun, names: list[str], tokenizer, max_length: int, siamese: bool) -> SplitData:
    """``train`` plus the teacher-labelled rows of each transfer split in ``names``, in order; each is
    deduplicated against train, the labelled held-out splits and the transfer splits before it."""
    for name in names:
        if name not in teacher.manifest["splits"]:
            raise DistillInputError(f"--transfer-split {name}: {teacher.root} has no such materials split; dump it with "
                                    f"python -m distill.teach --output-dir {teacher.root} --dump-only --extra {name}=FILE")
    held = [split_data(teacher, s, tokenizer, max_length, siamese) for s in teacher.manifest["splits"]
            if s != "train" and s not in names and teacher.manifest["splits"][s].get("labelled")]
    for name in names:
        n_train = len(train)
        train, dropped = add_transfer(train, split_data(teacher, name, tokenizer, max_length, siamese), held)
        log.info("transfer split %s: %d rows added to %d training rows (%d dropped: also in train or a labelled split)",
                 name, len(train) - n_train, n_train, dropped)
    return train


def split_data(teacher: TeacherRun, split: str, tokenizer, max_length: int, siamese: bool):
    """One materials split, tokenised, as ``SplitData`` — cached per process (keyed by the split's
    ids hash in the manifest), so tuning trials and seeds load and tokenise each split once."""
    info = teacher.manifest["splits"].get(split, {})
    data = _split_data(str(teacher.root), split, tokenizer, max_length, siamese, teacher.task.name,
                       teacher.weights_sha256, info.get("ids_sha256"), info.get("text_sha256"))
    if teacher.ensemble is None:
        return data
    # several teachers: the ensemble's targets on the first run's rows; pooled vectors live in different spaces
    logits = teacher.ensemble.combine(split, data.ids, data.teacher_logits, teacher.task.kind)
    return dataclasses.replace(data, teacher_logits=logits, teacher_embeddings=None)


def ensemble_card(teacher: TeacherRun) -> dict:
    """The teacher entry of a student distilled from several runs: the members and their weights."""
    ens = teacher.ensemble
    return {"name": "ensemble of " + ", ".join(r.manifest["teacher"]["name"] for r in ens.runs), "weights_sha256": teacher.identity,
            "members": [{"run": str(r.root), **r.manifest["teacher"], "weight": w} for r, w in zip(ens.runs, ens.weights)]}


@functools.lru_cache(maxsize=6)
def _split_data(root: str, split: str, tokenizer, max_length: int, siamese: bool, task: str, weights_sha: str,
                ids_sha: str | None, text_sha: str | None):
    # weights_sha: the teacher's hash computed from its files (open_teacher_run), not the manifest's own;
    # texts, labels and teacher outputs are rows of this one split, whose files load() checks
    mat = materials.load(root, split, task=task, teacher_sha256=weights_sha)
    ex = mat.to_examples()
    enc = encode(tokenizer, ex, max_length, siamese=siamese)
    return SplitData(ex.ids, enc, None if mat.labels is None else np.array(mat.labels), np.array(mat.logits),
                     None if mat.embeddings is None else np.array(mat.embeddings),
                     pairs=None if mat.pairs is None else np.asarray(mat.pairs), groups=mat.groups)


def build_student(arch: str, options: dict, *, vocab_size: int, num_labels: int, pad_id: int, is_pair: bool,
                  teacher_width: int):
    conf_cls, model_cls = ARCHS[arch]
    return model_cls(conf_cls(**_tuples(options)), vocab_size=vocab_size, num_labels=num_labels, pad_id=pad_id, is_pair=is_pair,
                     teacher_width=teacher_width)


def load_student(model_dir: Path):
    """(model, tokenizer, meta) from a student's ``RUN/model`` folder (nothing outside it)."""
    from distill.hf_modeling import load_tokenizer

    meta = read_json(model_dir / "student.json")
    model = build_student(meta["arch"], meta["options"], vocab_size=meta["vocab_size"], num_labels=meta["num_labels"],
                          pad_id=meta["pad_id"], is_pair=meta["is_pair"], teacher_width=meta["teacher_width"])
    model.load_state_dict(load_weights(model_dir / "model.safetensors", "re-train the student (--overwrite)"))
    return model.eval(), load_tokenizer(model_dir), meta


def write_hf_config(folder: Path, model, meta: dict) -> None:
    """config.json + ``distill_modeling.py`` beside the student's weights, so plain transformers loads
    the folder: ``AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)``
    (the custom-code convention, ``auto_map``). The label order is the config's ``id2label``."""
    import shutil

    from distill import hf_modeling

    task = task_from_record(meta)
    cls = hf_modeling.STUDENTS[meta["arch"]]
    args = {k: v for k, v in model.build_args.items() if k != "embedding"}
    conf = hf_modeling.DistillStudentConfig(
        arch=meta["arch"], student=args, max_seq_length=meta["max_length"], num_labels=meta["num_labels"],
        id2label=dict(enumerate(meta["label_names"])), label2id={n: i for i, n in enumerate(meta["label_names"])},
        problem_type={"regression": "regression", "ranking": "regression", "multilabel": "multi_label_classification"}.get(
            task.kind, "single_label_classification"),
        pad_token_id=meta["pad_id"], architectures=[cls.__name__],
        auto_map={"AutoConfig": "distill_modeling.DistillStudentConfig",
                  "AutoModelForSequenceClassification": f"distill_modeling.{cls.__name__}"})
    conf.save_pretrained(folder)
    shutil.copyfile(hf_modeling.__file__, Path(folder) / "distill_modeling.py")


def migrate_model_folder(model_dir: Path) -> bool:
    """Give a student ``RUN/model`` folder written before students shipped their transformers config
    its config.json + ``distill_modeling.py`` (weights untouched). Returns whether it changed."""
    model_dir = Path(model_dir)
    if (model_dir / "config.json").is_file():
        return False
    meta = read_json(model_dir / "student.json")
    model = build_student(meta["arch"], meta["options"], vocab_size=meta["vocab_size"], num_labels=meta["num_labels"],
                          pad_id=meta["pad_id"], is_pair=meta["is_pair"], teacher_width=meta["teacher_width"])
    write_hf_config(model_dir, model, meta)
    return True


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def model_card(cfg: StudentConfig, meta: dict, metrics: dict, summary: dict, teacher_metrics: dict) -> str:
    size = meta["size_bytes"]
    lines = [f"# {cfg.arch} student for {meta['task']}", "",
             f"Distilled from `{meta['teacher']['name']}` ({meta['teacher'].get('architecture')}, "
             f"{meta['teacher'].get('num_parameters', 0):,} parameters, weights {meta['teacher']['weights_sha256'][:12]}…)"
             + (" — trained on gold labels only (`--no-kd` baseline)." if not cfg.kd else "."), "",
             "| | |", "|---|---|",
             f"| parameters | {meta['num_parameters']:,} |",
             f"| size on disk (model.safetensors) | {size / 1e6:.2f} MB |",
             f"| loss | (1-α)·hard + α·soft + β·hidden, α={cfg.alpha}, β={cfg.beta}, T={cfg.temperature}, {cfg.kd_loss} |",
             f"| best epoch | {summary.get('best_epoch')} of {summary.get('epochs_run')} |",
             f"| training time | {summary.get('train_seconds', 0):.1f} s (epochs: {', '.join(f'{s:.1f}' for s in summary.get('epoch_seconds', []))} s) |",
             "", "## Metrics", "", "| split | metric | student | teacher |", "|---|---|---|---|"]
    for split, ms in metrics.items():
        for k, v in ms.items():
            t = teacher_metrics.get(split, {}).get(k)
            lines.append(f"| {split} | {k} | {v:.4f} | {'' if t is None else f'{t:.4f}'} |")
    lines += ["", "## Reproduce", "", "```", command_line(cfg), "```", "",
              f"Arch options: `{json.dumps(cfg.options)}`", "",
              "Predict: `distill predict RUN --input FILE` (uses only this run directory).", ""]
    return hub_metadata(cfg, meta, metrics) + "\n".join(lines)


# the offline teachers' Hub names, for a card's base_model
_HUB_NAMES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}


def hub_metadata(cfg: StudentConfig, meta: dict, metrics: dict) -> str:
    """The Hub's model-card header (YAML between --- lines, written by huggingface_hub): task,
    dataset, the dev metric as an eval result, the teacher as base_model when it has a Hub name,
    the distillation recipe as tags."""
    from huggingface_hub import EvalResult, ModelCardData

    from teachers.hf import teacher_family

    task = task_from_record(meta)
    dataset = "glue" if task.name in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli") else task.name
    source = meta.get("teacher_source") or ""
    base = _HUB_NAMES.get(teacher_family(source) or "") or (source if source.count("/") == 1 and not Path(source).exists() else None)
    split = task.eval_splits[0]
    results = [EvalResult(task_type="text-classification", dataset_type=dataset, dataset_name=task.name, dataset_config=task.name,
                          dataset_split=split, metric_type=k, metric_value=float(v)) for k, v in metrics.get(split, {}).items()
               if k != "teacher_agreement"]
    data = ModelCardData(library_name="distill", pipeline_tag="text-classification", datasets=[dataset], base_model=base,
                         metrics=[r.metric_type for r in results], model_name=f"{cfg.arch}-student-{task.name}",
                         tags=["knowledge-distillation", f"student-{cfg.arch}", f"kd-loss-{cfg.kd_loss}" if cfg.kd else "no-kd"],
                         eval_results=results or None)
    return f"---\n{data.to_yaml()}\n---\n"


def resolved_for(cfg: StudentConfig, teacher: TeacherRun) -> StudentConfig:
    """``cfg.resolved()`` with the teacher run's max length and temperature where ``cfg`` leaves them 0,
    and the teacher term alone for ranking tasks."""
    base = cfg.resolved()
    base = dataclasses.replace(base, max_length=base.max_length or int(teacher.manifest["max_length"]),
                               temperature=base.temperature or float(teacher.manifest["temperature"]))
    if teacher.task.kind == "ranking":
        # a comment has no gold of its own (annotators rank pairs), so the teacher's scores are the whole target
        if not base.kd:
            raise DistillInputError(f"{teacher.task.name}: --no-kd has nothing to learn from (comments carry no gold "
                                    f"label, only the teacher's score); drop --no-kd")
        base = dataclasses.replace(base, alpha=1.0)
    return base


@dataclass
class Setup:
    """A student's inputs, read once: the teacher's tokenizer, the train (+ transfer) and dev splits,
    and the teacher's weights for ``new_model``'s initialisation."""

    teacher: TeacherRun
    tokenizer: object
    siamese: bool  # each sentence of a pair encoded alone (cnn, bilstm) or packed (transformer)
    train: SplitData
    dev: SplitData
    eval_split: str
    teacher_state: dict
    teacher_conf: dict
    teacher_width: int
    context_vectors: object = None  # [V, H] torch table for --embedding-init context (students.word_vectors), else None

    def new_model(self, cfg: StudentConfig):
        """A fresh student of ``cfg``'s arch, seeded with ``cfg.seed``, initialised from the teacher."""
        import torch

        torch.manual_seed(cfg.seed)
        task, tok = self.teacher.task, self.tokenizer
        model = build_student(cfg.arch, cfg.options, vocab_size=len(tok), num_labels=task.num_labels, pad_id=tok.pad_token_id,
                              is_pair=task.is_pair, teacher_width=self.teacher_width)
        model.init_from_teacher(self.teacher_state, self.teacher_conf, self.context_vectors)  # each arch follows its own init option
        return model


def prepare(cfg: StudentConfig, teacher: TeacherRun, progress=None) -> Setup:
    """Read and check what a student of ``cfg`` learns from (``cfg`` resolved: ``resolved_for``).
    ``progress``: ``distill.progress.bar`` for the context word vectors' pass, or None."""
    task = teacher.task
    tokenizer = teacher_tokenizer(str(teacher.model_dir))
    siamese = ARCHS[cfg.arch][1].pair_input == "siamese"
    train = own_train = split_data(teacher, "train", tokenizer, cfg.max_length, siamese)
    eval_split = task.eval_splits[0]
    dev = split_data(teacher, eval_split, tokenizer, cfg.max_length, siamese)
    if (teacher.ensemble is not None or teacher.manifest["teacher"].get("members")) and (cfg.beta > 0 or cfg.layer_wise):
        raise DistillInputError("several --materials: the hidden term (--beta) and the layer-wise terms match one teacher's "
                                "own vectors; use one --materials for them, or drop them for the ensemble")
    transfer = [t for t in cfg.transfer_split.split(",") if t]
    if transfer:
        if not cfg.kd:
            raise DistillInputError("--transfer-split needs the teacher (its rows have no gold label); drop --no-kd")
        train = with_transfer(train, teacher, transfer, tokenizer, cfg.max_length, siamese)
    if dev.gold is None and task.kind != "ranking":
        raise DistillInputError(f"materials split {eval_split!r} has no gold labels; the student needs them for early stopping")
    if train.labels is None and cfg.alpha < 1:
        raise DistillInputError("the train materials have no gold labels; use --alpha 1 (teacher targets only)")
    state, conf = load_teacher_weights(teacher.model_dir)
    context = None
    if cfg.options.get("embedding_init") == "context":  # from the train split alone, without the transfer rows
        from students.base import word_embeddings
        from students.word_vectors import teacher_context_table

        context = teacher_context_table(teacher, own_train, tokenizer, word_embeddings(state), conf, cfg.max_length,
                                        progress)
    width = int(conf.get("hidden_size", 0)) or state[next(k for k in state if k.endswith("word_embeddings.weight"))].shape[1]
    return Setup(teacher, tokenizer, siamese, train, dev, eval_split, state, conf, width, context)


def _check_run_dir(cfg: StudentConfig, teacher: TeacherRun, run_dir: Path, cfg_file: Path) -> None:
    if cfg.resume:
        old = resumed_config(run_dir, cfg, _RESUME_KEYS, StudentConfig(), what="student run")
        if old.get("teacher_weights_sha256") != teacher.identity:
            raise DistillInputError(f"--resume: {run_dir} was distilled from a different teacher's materials; "
                                    f"pass the original --materials or use a new --output-dir")
    elif holds_run(run_dir) and not cfg.overwrite:
        raise DistillInputError(f"--output-dir {run_dir} already holds a run; pass --resume to continue it, --overwrite "
                                f"to replace it, or choose a new --output-dir")


def _run_one(cfg: StudentConfig, teacher: TeacherRun, show_progress: bool, trial_hook=None) -> dict:
    # one writer per run directory; seeds run side by side in their own seed-N/ folders
    names = parse_report_to(cfg.report_to) if world().main else []
    trackers = Trackers(names, Path(cfg.output_dir), dataclasses.asdict(cfg), eval_split=teacher.task.eval_splits[0]) if names else None
    with run_lock(cfg.output_dir) if world().main else contextlib.nullcontext():
        try:
            return _train_one(cfg, teacher, show_progress, trial_hook, sinks=(trackers,) if trackers else ())
        finally:
            if trackers is not None:
                trackers.close()


def _train_one(cfg: StudentConfig, teacher: TeacherRun, show_progress: bool, trial_hook=None, sinks: tuple = ()) -> dict:
    import torch

    task = teacher.task
    run_dir = Path(cfg.output_dir)
    cfg_file = run_dir / "config.json"
    main_rank = world().main  # under torchrun / an XLA launch only rank 0 checks and writes the run directory
    if main_rank:
        _check_run_dir(cfg, teacher, run_dir, cfg_file)

    progress = None
    if show_progress:
        from distill.progress import bar as progress
    setup = prepare(cfg, teacher, progress if main_rank else None)
    tokenizer, train, dev = setup.tokenizer, setup.train, setup.dev
    model = setup.new_model(cfg)
    setup.teacher_state, setup.context_vectors = {}, None  # the teacher's weights serve the initialisation only
    layer_kd = new_layer_kd(cfg, setup, model) if cfg.layer_wise else None  # checks the mapping before anything is written

    if main_rank:
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:  # only now: bad input above left the old run as it was
            clear_run(run_dir)
    jlog = JsonlLog(run_dir / "log.jsonl", enabled=main_rank, sinks=sinks)
    if main_rank and not cfg.resume:
        write_json(cfg_file, {"kind": "student", **dataclasses.asdict(cfg), **task_record(task),
                              "teacher_run": str(teacher.root),
                              "teacher_weights_sha256": teacher.identity,
                              "command": command_line(cfg)})
    jlog("start", mode="resume" if cfg.resume else "train", arch=cfg.arch, device=cfg.device,
         torch_threads=torch.get_num_threads(), train=len(train), dev=len(dev))
    n_params = sum(p.numel() for p in model.parameters())
    meta = {"arch": cfg.arch, "options": cfg.options, **task_record(task), "label_names": list(task.label_names),
            "num_labels": task.num_labels, "is_pair": task.is_pair, "pair_input": ARCHS[cfg.arch][1].pair_input,
            "vocab_size": len(tokenizer), "pad_id": tokenizer.pad_token_id, "teacher_width": setup.teacher_width,
            "max_length": cfg.max_length, "num_parameters": n_params,
            "teacher": teacher.manifest["teacher"] if teacher.ensemble is None else ensemble_card(teacher),
            "teacher_source": (read_json(teacher.root / "config.json").get("teacher") if teacher.ensemble is None
                               and (teacher.root / "config.json").is_file() else None)}

    def save_best(m, dev_metrics):
        save_model(m, run_dir / "model", {**meta, "dev_metrics": dev_metrics},
                   extra_files=lambda folder: (tokenizer.save_pretrained(folder), write_hf_config(folder, m, meta)))

    opts = FitOptions(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(FitOptions) if hasattr(cfg, f.name)})
    summary = train_stages(cfg, setup, model, opts, layer_kd, save_best=save_best, jlog=jlog,
                           progress=progress if main_rank else None, trial_hook=trial_hook)
    if not main_rank:  # rank 0 saved the best model and scores it
        return {"run_dir": str(run_dir), "metrics": {}, "summary": summary}
    write_json(run_dir / "train_summary.json", summary)

    metrics = score_splits(cfg, setup, run_dir / "model", opts)
    size = _file_size(run_dir / "model" / "model.safetensors")
    meta.update(size_bytes=size)
    metrics_doc = {**metrics, "params": n_params, "size_bytes": size, "train_seconds": summary["train_seconds"],
                   "epoch_seconds": summary["epoch_seconds"], "best_epoch": summary["best_epoch"]}
    write_json(run_dir / "metrics.json", metrics_doc)
    teacher_metrics = read_json(teacher.root / "metrics.json") if (teacher.root / "metrics.json").is_file() else {}
    write_text(run_dir / "README.md", model_card(cfg, meta, metrics, summary, teacher_metrics))
    jlog("done", metrics=metrics)
    return {"run_dir": str(run_dir), "metrics": metrics_doc, "summary": summary}


def new_layer_kd(cfg: StudentConfig, setup: Setup, model):
    """The layer-wise terms of ``cfg`` between ``model`` and the teacher run's ``best/`` model, which is
    loaded here to run in the loop (``students.layerwise``)."""
    from students.layerwise import FrozenTeacher, LayerKD, parse_layer_map

    s_layers, t_layers = model.bert_config.num_hidden_layers, int(setup.teacher_conf.get("num_hidden_layers", 0))
    pairs = parse_layer_map(cfg.layer_map, s_layers, t_layers)
    teacher = FrozenTeacher.load(setup.teacher.model_dir, torch_device(cfg.device))
    return LayerKD(model, teacher, pairs, {k: getattr(cfg, k) for k in LAYER_TERMS}, cfg.relation_heads)


def train_stages(cfg: StudentConfig, setup: Setup, model, opts: FitOptions, layer_kd, *, save_best, jlog, progress,
                 trial_hook=None) -> dict:
    """``fit`` once (every term together), or TinyBERT's task-specific distillation with
    ``--layer-epochs``: the intermediate stage (layer-wise terms only, RUN/stage1/, its end weights in
    RUN/stage1/model/) and then the prediction stage (logit KD only, the teacher out of the loop).
    Resumable at any point: a finished stage 1 is loaded, not re-run."""
    run_dir, task, pad = Path(cfg.output_dir), setup.teacher.task, setup.tokenizer.pad_token_id
    stage1 = None
    if cfg.layer_epochs:
        end = run_dir / "stage1" / "model"
        if (end / "model.safetensors").is_file():
            model.load_state_dict(load_weights(end / "model.safetensors", "remove RUN/stage1 to run stage 1 again"))
            stage1 = read_json(end / "student.json")["stage1"]
            log.info("stage 1 (intermediate layers) done before: loaded its weights")
        else:
            jlog("stage", stage="intermediate", epochs=cfg.layer_epochs)
            s1 = dataclasses.replace(opts, epochs=cfg.layer_epochs, prediction=False, patience=0, eval_steps=0)
            stage1 = fit(task, model, setup.train, setup.dev, s1, run_dir / "stage1", pad_id=pad, save_best=lambda *a: None,
                         jlog=jlog, resume=cfg.resume, progress=progress, layer_kd=layer_kd)
            if world().main:
                save_model(model, end, {"stage1": stage1})
        layer_kd.student_taps.remove()  # stage 2 is prediction-layer KD alone: no teacher in the loop
        layer_kd = None
        jlog("stage", stage="prediction", epochs=cfg.epochs)
    summary = fit(task, model, setup.train, setup.dev, opts, run_dir, pad_id=pad, save_best=save_best, jlog=jlog,
                  resume=cfg.resume, progress=progress, on_epoch=trial_hook, layer_kd=layer_kd)
    return summary if stage1 is None else {**summary, "stage1": stage1}


def score_splits(cfg: StudentConfig, setup: Setup, model_dir: Path, opts: FitOptions) -> dict[str, dict]:
    """The kept best model's metrics on every labelled split of the materials (dev always; for ranking
    against the teacher)."""
    teacher, tok = setup.teacher, setup.tokenizer
    best, _, _ = load_student(model_dir)
    best.to(torch_device(cfg.device))  # loaded on the CPU; score it where it trained
    metrics = {}
    for split, info in teacher.manifest["splits"].items():
        if split == "train" or (not info.get("labelled") and split != setup.eval_split):
            continue
        data = setup.dev if split == setup.eval_split else split_data(teacher, split, tok, cfg.max_length, setup.siamese)
        metrics[split], _ = evaluate(teacher.task, best, data, pad_id=tok.pad_token_id, opts=opts)
    return metrics


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run(cfg: StudentConfig, *, show_progress: bool = False, trial_hook=None) -> dict:
    """Train one student (or ``cfg.seeds`` of them) and score it; returns {"run_dir", "metrics", ...}.

    With several seeds, RUN/seed-<s>/ are full runs and RUN/metrics.json holds, for each split and
    metric, the mean (same key), ``<metric>_std`` and the per-seed values under "seeds".
    """
    cfg.validate()
    teacher = open_teacher_runs([m for m in cfg.materials.split(",") if m], cfg.task, cfg.teacher_weights)
    base = resolved_for(cfg, teacher)
    if teacher.ensemble is not None:  # the members' distributions are averaged at the student's T
        teacher = dataclasses.replace(teacher, ensemble=dataclasses.replace(teacher.ensemble, temperature=base.temperature))
    if base.seeds == 1:
        return _run_one(base, teacher, show_progress, trial_hook)
    with run_lock(base.output_dir) if world().main else contextlib.nullcontext():
        return _run_seeds(base, teacher, show_progress)


def _run_seeds(base: StudentConfig, teacher: TeacherRun, show_progress: bool) -> dict:
    root = Path(base.output_dir)
    main_rank = world().main
    if main_rank and base.overwrite:
        clear_run(root)  # each seed's folder is then new
        base = dataclasses.replace(base, overwrite=False)
    if main_rank and not base.resume and holds_run(root):
        raise DistillInputError(f"--output-dir {root} already holds a run; pass --resume to continue it or choose a new --output-dir")
    if main_rank:
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "config.json", {"kind": "student-seeds", **dataclasses.asdict(base), **task_record(teacher.task),
                                          "command": command_line(base) + f" --seeds {base.seeds}"})
    per_seed = {}
    t0 = time.perf_counter()
    for s in range(base.seed, base.seed + base.seeds):
        sub = dataclasses.replace(base, seed=s, seeds=1, output_dir=str(root / f"seed-{s}"))
        if base.resume and (Path(sub.output_dir) / "metrics.json").is_file():
            per_seed[s] = read_json(Path(sub.output_dir) / "metrics.json")
            continue
        sub = dataclasses.replace(sub, resume=base.resume and (Path(sub.output_dir) / "config.json").is_file())
        per_seed[s] = _run_one(sub, teacher, show_progress)["metrics"]
    if not main_rank:
        return {"run_dir": str(root), "metrics": {}}
    summary: dict = {}
    for split, ms in per_seed[base.seed].items():
        if not isinstance(ms, dict):
            continue
        summary[split] = {}
        for k in ms:
            mean, std = _mean_std([per_seed[s][split][k] for s in per_seed])
            summary[split][k], summary[split][f"{k}_std"] = mean, std
    summary["seeds"] = {str(s): {k: v for k, v in m.items() if isinstance(v, dict)} for s, m in per_seed.items()}
    summary["params"] = per_seed[base.seed]["params"]
    summary["size_bytes"] = per_seed[base.seed]["size_bytes"]
    summary["mean_epoch_seconds"] = statistics.fmean(x for m in per_seed.values() for x in m["epoch_seconds"])
    summary["wall_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(root / "metrics.json", summary)
    return {"run_dir": str(root), "metrics": summary}


def _arch_flags(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--arch" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--arch="):
            return a.split("=", 1)[1]
    return StudentConfig.arch


def build_parser(arch: str) -> argparse.ArgumentParser:
    # allow_abbrev off: --hidden (a bilstm/transformer option) must not be taken as --hidden-loss under --arch cnn
    p = argparse.ArgumentParser(prog="python -m distill.student", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="a JSON file of these settings (flags given on the command line win); "
                                    "arch options may sit at the top level or under \"options\"")
    add_dataclass_args(p, StudentConfig, skip=("options",))
    if arch in ARCHS:
        g = p.add_argument_group(f"--arch {arch} options")
        add_dataclass_args(g, ARCHS[arch][0])
    return p


def _refuse_unknown(flag: str, arch: str) -> None:
    name = flag.split("=")[0]
    owners = [a for a, (c, _) in ARCHS.items() if name.lstrip("-").replace("-", "_") in {f.name for f in dataclasses.fields(c)}]
    raise DistillInputError(f"{name} is not an option of --arch {arch}" + (f" (it is one of --arch {', '.join(owners)})" if owners else "")
                            + f"; see python -m distill.student --arch {arch} --help")


def _all_materials(argv: list[str]) -> str:
    """Every ``--materials`` given, comma-joined (argparse keeps only the last of a repeated flag)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--materials", action="append", default=[])
    return ",".join(pre.parse_known_args(argv)[0].materials)


def config_from_args(argv: list[str]) -> StudentConfig:
    all_names = {f.name for f in dataclasses.fields(StudentConfig)} | {"config"}
    for conf_cls, _ in ARCHS.values():
        all_names |= {f.name for f in dataclasses.fields(conf_cls)}
    given = given_fields(argv, all_names)
    file_values: dict = {}
    if "config" in given:
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config")
        path = Path(pre.parse_known_args(argv)[0].config)
        if not path.is_file():
            raise DistillInputError(f"--config {path} does not exist; pass a JSON file such as a tuning run's best.json")
        try:
            file_values = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DistillInputError(f"--config {path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    if "config" not in given and "resume" in given:  # a resumed run reuses its saved settings
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--output-dir", default="")
        saved = Path(pre.parse_known_args(argv)[0].output_dir or ".") / "config.json"
        if saved.is_file():
            known = {f.name for f in dataclasses.fields(StudentConfig)}
            file_values = {k: v for k, v in read_json(saved).items() if k in known}
    arch = _arch_flags(argv) if "arch" in given else file_values.get("arch", StudentConfig.arch)
    args, unknown = build_parser(arch).parse_known_args(argv)
    if unknown:
        _refuse_unknown(unknown[0], arch)
    args.materials = _all_materials(argv) or args.materials  # repeated: an ensemble
    top = {f.name for f in dataclasses.fields(StudentConfig)} - {"options"}
    arch_fields = {f.name for f in dataclasses.fields(ARCHS[arch][0])} if arch in ARCHS else set()
    values = {k: v for k, v in file_values.items() if k in top}
    options = dict(file_values.get("options", {}))
    options.update({k: v for k, v in file_values.items() if k in arch_fields})
    unknown = sorted(set(file_values) - top - arch_fields - {"options"})
    if unknown:
        raise DistillInputError(f"--config: unknown setting {unknown[0]!r}; see python -m distill.student --arch {arch} --help")
    for k in top:
        if k in given or k not in values:
            values[k] = getattr(args, k)
    for k in arch_fields:
        if k in given:
            options[k] = getattr(args, k)
    return StudentConfig(**values, options=_tuples(options))
