"""``python -m distill.launch``: run ``distill.teach`` or ``distill.student`` on every core of a TPU,
one process per core, through torch-xla's own launcher (``torch_xla.launch``, the PJRT successor of
``xmp.spawn``). For several GPUs or machines use ``torchrun`` instead (README).

    PJRT_DEVICE=TPU python -m distill.launch distill.teach --task sst2 --device xla --precision bf16 ...
    PJRT_DEVICE=TPU python -m distill.launch distill.student --arch cnn --device xla ...

Every process trains on its share of each global batch (``--batch-size`` per core); rank 0 alone
writes the run directory. ``--scale-lr`` multiplies the learning rate by the number of cores.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

MODULES = ("distill.teach", "distill.student")


def _worker(index: int, module: str, argv: list[str]) -> None:
    code = importlib.import_module(module).main(argv)
    if code:
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--one-process", action="store_true",
                   help="one process on one core (for debugging); default: one process per local TPU core")
    p.add_argument("module", choices=MODULES, help="the command to run on every core")
    p.add_argument("args", nargs=argparse.REMAINDER, help="its flags (add --device xla)")
    ns = p.parse_args(argv)
    try:
        import torch_xla
    except ImportError:
        from distill.devices import XLA_HELP

        print(f"python -m distill.launch needs torch_xla; {XLA_HELP}", file=sys.stderr)
        return 2
    os.environ["DISTILL_XLA_LAUNCH"] = "1"  # distill.devices.world() asks the PJRT runtime for rank and size
    torch_xla.launch(_worker, args=(ns.module, ns.args), debug_single_process=ns.one_process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
