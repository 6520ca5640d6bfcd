"""SmoothQuant (Xiao et al. 2023) on a PyTorch model, for the benchmarks' torchao int8 backend: the
same per-channel factors as ``distill.onnx.prepare_int8`` uses for the ONNX int8 export."""

from __future__ import annotations

import numpy as np
import torch

from distill.onnx import smooth_scales


class SmoothedLinear(torch.nn.Module):
    """``linear(x / s)`` with ``linear``'s weight already multiplied by s per input channel: the same
    function, with smaller activation outliers for a dynamic int8 quantiser of ``linear``."""

    def __init__(self, linear: torch.nn.Linear, s: np.ndarray):
        super().__init__()
        scale = torch.from_numpy(s).to(linear.weight.dtype)
        with torch.no_grad():
            linear.weight.mul_(scale)  # [out, in] * [in]
        self.linear = linear
        self.register_buffer("inv_scale", 1 / scale, persistent=False)

    def forward(self, x):
        return self.linear(x * self.inv_scale)


def smooth_linears(model: torch.nn.Module, batches, alpha: float = 0.5) -> int:
    """SmoothQuant for a PyTorch model, in place: every ``nn.Linear`` that saw inputs while ``model``
    ran on ``batches`` (dicts of its keyword inputs) becomes a ``SmoothedLinear``. Returns how many."""
    amax: dict[torch.nn.Module, torch.Tensor] = {}

    def hook(mod, args, _out):
        a = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0)
        amax[mod] = torch.maximum(amax[mod], a) if mod in amax else a

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.inference_mode():
            for batch in batches:
                model(**batch)
    finally:
        for h in handles:
            h.remove()
    n = 0

    def swap(parent):
        nonlocal n
        for name, child in parent.named_children():
            # a Linear with hooks keeps its input as it is (HFTeacher's hook reads the head's input)
            if isinstance(child, torch.nn.Linear) and child in amax and not child._forward_pre_hooks:
                w_max = child.weight.detach().abs().amax(0).float().numpy()
                setattr(parent, name, SmoothedLinear(child, smooth_scales(amax[child].float().numpy(), w_max, alpha)))
                n += 1
            else:
                swap(child)

    swap(model)
    return n
