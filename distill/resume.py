"""Where a run continues after a crash or kill -9 (``--resume``), for every kind of run:

* the settings check: a resumed run must keep the settings that shape its result
  (``changed_settings``; a setting newer than the run counts as its default);
* teachers: transformers' Trainer checkpoints in RUN/checkpoints/, the newest complete one
  (``last_complete_checkpoint``), with RUN/best kept by ``teachers.finetune.KeepBest``;
* students: RUN/checkpoint/, written atomically every ``--save-steps`` and at each epoch end by
  ``Checkpointer`` (weights, optimiser and scheduler states, RNG, the loop's own state), so the
  resumed run replays the remaining steps exactly;
* dumps: ``--extra`` files in finished shards (``teachers.dump.dump_extra``); the other splits are
  re-dumped whole;
* the run directory itself: one writer at a time (``distill.rundir.run_lock``), every file written
  atomically (``distill.rundir``).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch
from torch import nn

from distill.errors import DistillInputError
from distill.rundir import atomic_dir, load_weights, read_json, write_json

log = logging.getLogger(__name__)


def changed_settings(saved: dict, cfg, keys: tuple[str, ...], defaults) -> list[str]:
    """The ``keys`` whose value in ``cfg`` differs from the run's saved config (a key the saved config
    lacks counts as its value in ``defaults``, the config class's defaults); values compared as JSON."""
    return [k for k in keys if saved.get(k, _json(getattr(defaults, k))) != _json(getattr(cfg, k))]


def resumed_config(run_dir: Path, cfg, keys: tuple[str, ...], defaults, what: str = "run") -> dict:
    """The saved config.json of the run ``--resume`` continues, refused with one sentence when there is
    none or when ``cfg`` changes one of ``keys``."""
    cfg_file = run_dir / "config.json"
    if not cfg_file.is_file():
        raise DistillInputError(f"--resume: {run_dir} holds no {what} (no config.json); drop --resume to start one")
    saved = read_json(cfg_file)
    diff = changed_settings(saved, cfg, keys, defaults)
    if diff:
        raise DistillInputError(f"--resume: {run_dir} was started with other {flags(diff)}; "
                                f"repeat the original flags or use a new --output-dir")
    return saved


def _json(value):
    return json.loads(json.dumps(value))  # tuples become lists, as in the saved config


def flags(keys: list[str]) -> str:
    return ", ".join("--" + k.replace("_", "-") for k in keys)


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


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict as contiguous CPU tensors (what safetensors writes)."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


CHECKPOINT_FORMAT = 2  # 2: every RNG in use (torch CPU/CUDA/XLA, NumPy, Python) and the fp16 gradient scaler


def rng_states(device_type: str) -> dict:
    """Every random state a training step may draw from, as plain tensors/lists (``torch.load`` with
    ``weights_only=True`` reads them back): torch's CPU generator, each CUDA device's, XLA's seed,
    NumPy's legacy global state and Python's ``random``."""
    import random

    import numpy as np

    np_state = np.random.get_state()  # ("MT19937", keys [624] uint32, pos, has_gauss, cached_gaussian)
    out = {"rng": torch.get_rng_state(), "numpy_rng": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                                                        "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                                                        "cached_gaussian": float(np_state[4])},
           "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}
    if device_type == "cuda" and torch.cuda.is_available():
        out["cuda_rng"] = torch.cuda.get_rng_state_all()
    if device_type == "xla":
        import torch_xla.core.xla_model as xm

        out["xla_rng"] = int(xm.get_rng_state())
    return out


def restore_rng(blob: dict) -> None:
    """Put back what ``rng_states`` saved (a format-1 checkpoint holds the CPU generator only)."""
    import random

    import numpy as np

    torch.set_rng_state(blob["rng"])
    if "numpy_rng" in blob:
        n = blob["numpy_rng"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python_rng" in blob:
        version, state, gauss = blob["python_rng"]
        random.setstate((version, tuple(state), gauss))
    if "cuda_rng" in blob and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    if "xla_rng" in blob:
        import torch_xla.core.xla_model as xm

        xm.set_rng_state(blob["xla_rng"])


class Checkpointer:
    """``run_dir/checkpoint``: model, training-only modules (``modules``: name -> module or None, e.g.
    the hidden-term projector, the layer-wise projections; each saved as NAME.safetensors),
    optimiser, scheduler and gradient-scaler states, every RNG state in use (``rng_states``) and the
    loop's own state with the checkpoint format, written atomically (a folder without state.json is
    incomplete) so ``--resume`` replays the run exactly."""

    def __init__(self, folder: Path, model: nn.Module, modules: dict[str, nn.Module | None], optimizers: list,
                 schedulers: list, scaler=None, device_type: str = "cpu"):
        self.folder, self.model = folder, model
        self.modules = {k: m for k, m in modules.items() if m is not None and len(m.state_dict())}
        self.optimizers, self.schedulers, self.scaler, self.device_type = optimizers, schedulers, scaler, device_type

    def save(self, state: dict) -> None:
        from safetensors.torch import save_file

        with atomic_dir(self.folder) as tmp:
            save_file(cpu_state(self.model), tmp / "model.safetensors")
            for name, m in self.modules.items():
                save_file(cpu_state(m), tmp / f"{name}.safetensors")
            torch.save({"optimizers": [o.state_dict() for o in self.optimizers],
                        "schedulers": [s.state_dict() for s in self.schedulers],
                        "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                        **rng_states(self.device_type)}, tmp / "optim.pt")
            # the last file: its presence marks the checkpoint complete
            write_json(tmp / "state.json", {**state, "checkpoint_format": CHECKPOINT_FORMAT})

    def load(self) -> dict | None:
        """The saved loop state with every module restored, or None when there is no complete checkpoint."""
        folder = self.folder
        if not (folder / "state.json").is_file():
            return None
        fix = f"remove {folder} to resume from the epoch before it, or start over with --overwrite"
        state = read_json(folder / "state.json")
        if state.pop("checkpoint_format", 1) > CHECKPOINT_FORMAT:
            raise DistillInputError(f"{folder} was written by a newer distill (checkpoint format above {CHECKPOINT_FORMAT}); "
                                    f"resume it with that version, or {fix}")
        self.model.load_state_dict(load_weights(folder / "model.safetensors", fix))
        for name, m in self.modules.items():
            m.load_state_dict(load_weights(folder / f"{name}.safetensors", fix))
        blob = torch.load(folder / "optim.pt", weights_only=True)
        for o, sd in zip(self.optimizers, blob["optimizers"]):
            o.load_state_dict(sd)
        for s, sd in zip(self.schedulers, blob["schedulers"]):
            s.load_state_dict(sd)
        if self.scaler is not None and blob.get("scaler"):
            self.scaler.load_state_dict(blob["scaler"])
        restore_rng(blob)
        return state
