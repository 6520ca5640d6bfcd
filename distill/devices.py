"""Where a run computes: the ``--device`` choice (auto | cpu | cuda | xla), the process's place in
a multi-process job (torchrun for CPU/GPU, ``python -m distill.launch`` for TPU cores), and the XLA
specifics the student loop needs (fixed shape buckets, graph sync, compile count).

The teacher goes through transformers' Trainer, which does device placement, DDP and the XLA
optimiser step itself; only the hand-written student loop (see students.loop) uses the
process-group helpers here.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass

from distill.errors import DistillInputError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "xla")
XLA_HELP = ("install torch-xla in its own virtualenv (torch-xla wheels pair with their own torch release; "
            "README section 'TPU (XLA) and several GPUs')")


def xla_installed() -> bool:
    return importlib.util.find_spec("torch_xla") is not None


def tpu_configured() -> bool:
    """A PJRT device was chosen (``PJRT_DEVICE=TPU``, or ``CPU`` to test XLA on a CPU), or TPU chips
    are attached (``/dev/accel*`` on TPU VMs)."""
    return bool(os.environ.get("PJRT_DEVICE")) or bool(glob.glob("/dev/accel*"))


def _cpuinfo_field(field: str, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The first value of ``field`` in Linux's cpuinfo (``None`` elsewhere or on a read error)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere or on a read error)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_name() -> str:
    """The CPU's model name as Linux reports it, else what ``platform`` knows."""
    import platform

    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_int8_dot() -> bool:
    """Whether int8 dot products accumulate straight into int32 here (AVX-VNNI, AVX512-VNNI or AMX-INT8).
    Without them x86 int8 kernels sum u8*s8 pairs into a saturating int16 (vpmaddubsw)."""
    return bool(cpu_flags() & {"avx_vnni", "avx512_vnni", "amx_int8"})


def resolve_device(requested: str, precision: str = "fp32") -> str:
    """``--device`` to cpu | cuda | xla, checked against ``--precision``. auto = xla when torch_xla
    is installed and a TPU is configured, else cuda when visible, else cpu."""
    import torch

    if requested not in DEVICES:
        raise DistillInputError(f"--device must be one of {', '.join(DEVICES)}")
    device = requested
    if requested == "auto":
        device = "xla" if xla_installed() and tpu_configured() else "cuda" if torch.cuda.is_available() else "cpu"
    elif requested == "cuda" and not torch.cuda.is_available():
        raise DistillInputError("--device cuda but no CUDA device is visible; use --device cpu or auto")
    elif requested == "xla" and not xla_installed():
        raise DistillInputError(f"--device xla but torch_xla is not installed; {XLA_HELP}")
    if precision == "fp16" and device != "cuda":
        raise DistillInputError(f"--precision fp16 needs CUDA; on {device.upper()} use --precision bf16 or fp32")
    return device


def keep_libraries_off_xla(device: str) -> None:
    """transformers and accelerate train on XLA whenever torch_xla imports, whatever ``--device``
    says; their switch (``USE_TORCH_XLA=0``) is read once, when they are imported. For a cpu/cuda
    run in an environment with torch_xla: set it before they load, or refuse if they already have."""
    if device == "xla" or not xla_installed() or os.environ.get("USE_TORCH_XLA", "1").upper() in ("0", "FALSE", "OFF", "NO"):
        return
    if "transformers" in sys.modules or "accelerate" in sys.modules:
        raise DistillInputError(f"--device {device}: torch_xla is installed and transformers is already loaded with XLA on, "
                                f"so Trainer would run on XLA; set USE_TORCH_XLA=0 in the environment, or use --device xla")
    os.environ["USE_TORCH_XLA"] = "0"


def torch_device(name: str):
    """The ``torch.device`` of a resolved device name (xla: this process's XLA device)."""
    import torch

    if name == "xla":
        import torch_xla

        return torch_xla.device()
    if name == "cuda" and world().size > 1:
        return torch.device("cuda", world().local_rank)
    return torch.device(name)


@dataclass(frozen=True)
class World:
    """This process's place in a multi-process job (1 process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes the run directory; the others only compute."""
        return self.rank == 0


def world() -> World:
    """From torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) or, in an XLA multi-process
    launch, from the PJRT runtime."""
    if "WORLD_SIZE" in os.environ:
        return World(int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if os.environ.get("DISTILL_XLA_LAUNCH"):
        import torch_xla.runtime as xr

        return World(xr.global_ordinal(), xr.world_size(), xr.local_ordinal())
    return World()


def init_process_group(device: str) -> World:
    """Join the job's process group (gloo on CPU, nccl on CUDA, xla on XLA) when there is more than
    one process; a no-op otherwise. Returns ``world()``."""
    import torch.distributed as dist

    w = world()
    if w.size > 1 and not dist.is_initialized():
        if device == "xla":
            import torch_xla.distributed.xla_backend  # noqa: F401  registers the "xla" backend

            dist.init_process_group("xla", init_method="xla://")
        elif device == "cuda":
            import torch

            torch.cuda.set_device(w.local_rank)  # one GPU per process, before NCCL binds to one
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
        log.info("process %d of %d joined the %s process group", w.rank, w.size, dist.get_backend())
    return w


def scaled_lr(lr: float, scale: bool) -> float:
    """The linear scaling rule (Goyal et al. 2017): with N processes the global batch is N times
    larger, so multiply the learning rate by N. Optional (``--scale-lr``); warm-up helps with it."""
    return lr * world().size if scale else lr


# XLA compiles one graph per distinct tensor shape; padding every batch to its own longest example
# would compile a new graph for almost every batch. Widths are rounded up to these buckets instead.
BUCKETS = (16, 32, 64, 128, 256, 512)


def bucket_width(n: int, cap: int = 512) -> int:
    """The smallest bucket >= n, at most ``cap`` (never below n): XLA sees a handful of widths."""
    b = next((b for b in BUCKETS if b >= n), n)
    return max(n, min(b, cap))


def xla_sync() -> None:
    """Cut and run the pending XLA graph (once per optimiser step)."""
    import torch_xla

    torch_xla.sync()


def xla_compiles() -> int:
    """Graphs XLA has compiled so far in this process (a count that keeps growing means shape churn)."""
    import torch_xla.debug.metrics as met

    data = met.metric_data("CompileTime")
    return int(data[0]) if data else 0
