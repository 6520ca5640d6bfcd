"""``python -m distill.export RUN``: write ``RUN/model.onnx`` (dynamic batch and sequence axes) for a
teacher or student run, check it against eager PyTorch on the run's dev texts, and optionally write
``RUN/model.int8.onnx`` (ONNX Runtime dynamic int8 quantisation).

    python -m distill.export runs/sst2-mean
    python -m distill.export runs/s3/cnn-kd/seed-42 --int8

The graph takes exactly the tensors ``distill.inference.pad_batch`` makes for the run (input_ids,
attention_mask, token_type_ids for BERT-style inputs; input_ids_b/attention_mask_b for siamese
pairs) and returns ``logits`` [batch, labels]. ``RUN/export.json`` records the check.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.cli import run_cli
from distill.errors import DistillInputError
from distill.rundir import write_json

log = logging.getLogger(__name__)


@dataclass
class ExportConfig:
    run_dir: str  # a teacher or student run directory
    output: str = ""  # ONNX file to write (default RUN/model.onnx)
    opset: int = 18  # ONNX opset
    int8: bool = False  # also write RUN/model.int8.onnx (onnxruntime dynamic int8)
    check_examples: int = 256  # dev examples the export is checked on
    atol: float = 1e-3  # largest allowed |onnx - eager| logit difference


class _LogitsOnly(torch.nn.Module):
    """ModelOutput -> logits, with the inputs as named positional arguments (ONNX input names)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors):
        return self.model(**dict(zip(self.names, tensors))).logits


def ort_session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(model: torch.nn.Module, sample: dict[str, torch.Tensor], path: Path, opset: int = 18) -> list[str]:
    """Export ``model`` (a ModelOutput model) to ``path`` with dynamic batch/sequence axes; returns the input names."""
    names = list(sample)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=512)
    seq_b = torch.export.Dim("seq_b", min=1, max=512)
    shapes = tuple({0: batch, 1: seq_b if n.endswith("_b") else seq} for n in names)  # forward(*tensors): one varargs entry
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(model.eval(), names), tuple(sample[n] for n in names), str(tmp), dynamo=True,
                          input_names=names, output_names=["logits"], dynamic_shapes=(shapes,), opset_version=opset,
                          external_data=False, verbose=False)
    tmp.replace(path)
    return names


def quantize_int8(src: Path, dst: Path) -> None:
    """ONNX Runtime dynamic quantisation: int8 weights (per output channel) for MatMul/Gemm (and LSTM),
    activations quantised on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dst.with_name(f".{dst.name}.tmp")
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    tmp.replace(dst)


def run(cfg: ExportConfig) -> dict:
    """Export, check against eager on dev texts, optionally quantise; returns the check summary."""
    from distill.inference import encode, length_sorted_batches, pad_batch
    from distill.predict import eval_materials, load_predictor, resolve_run

    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise DistillInputError("ONNX export needs the [onnx] extra: pip install '.[onnx]' (onnx, onnxscript, onnxruntime)") from None
    run_dir = Path(cfg.run_dir)
    if resolve_run(run_dir) != run_dir:  # model.onnx belongs next to the weights it came from
        raise DistillInputError(f"{run_dir} holds several seeds; export one of them (e.g. {resolve_run(run_dir)})")
    task, model, tokenizer, max_length, siamese = load_predictor(run_dir, "cpu")
    model.eval()
    out = Path(cfg.output) if cfg.output else run_dir / "model.onnx"
    ex = eval_materials(run_dir).to_examples()
    ex = ex.select(min(cfg.check_examples, len(ex)))
    enc = encode(tokenizer, ex, max_length, siamese=siamese)
    pad = tokenizer.pad_token_id
    sample = pad_batch(enc, list(range(min(4, len(enc)))), pad)
    if "input_ids_b" in sample:  # distinct sample lengths, so the exporter cannot tie the two sequence axes
        extra = 1 + int(sample["input_ids_b"].shape[1] + 1 == sample["input_ids"].shape[1])
        sample["input_ids_b"] = torch.nn.functional.pad(sample["input_ids_b"], (0, extra), value=pad)
        sample["attention_mask_b"] = torch.nn.functional.pad(sample["attention_mask_b"], (0, extra), value=0)
    t0 = time.perf_counter()
    names = export_onnx(model, sample, out, cfg.opset)
    export_s = time.perf_counter() - t0
    sess = ort_session(out)
    worst, agree, n = 0.0, 0, 0
    with torch.inference_mode():
        for idx in length_sorted_batches(enc.lengths, 32):
            batch = pad_batch(enc, idx, pad)
            ref = model(**batch).logits.float().numpy()
            got = sess.run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
            worst = max(worst, float(np.abs(ref - got).max()))
            agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
            n += len(idx)
    summary = {"onnx": str(out), "inputs": names, "opset": cfg.opset, "export_seconds": round(export_s, 2),
               "checked_examples": n, "max_abs_logit_diff": worst, "argmax_agreement": agree / max(n, 1),
               "size_bytes": out.stat().st_size}
    if worst > cfg.atol:
        out.unlink(missing_ok=True)
        raise DistillInputError(f"the ONNX export of {run_dir} differs from eager by {worst:.2e} > --atol {cfg.atol}; "
                                f"nothing written (report this with the run's config.json)")
    if cfg.int8:
        q = out.with_name(out.stem + ".int8.onnx")
        quantize_int8(out, q)
        summary["int8"] = {"onnx": str(q), "size_bytes": q.stat().st_size}
    if not cfg.output:
        write_json(run_dir / "export.json", summary)
    log.info("exported %s: max |onnx - eager| = %.2e on %d dev examples", out, worst, n)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m distill.export", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a teacher or student run directory")
    p.add_argument("--output", default="", help="ONNX file (default RUN/model.onnx)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (dynamic int8)")
    p.add_argument("--check-examples", type=int, default=256)
    p.add_argument("--atol", type=float, default=1e-3)

    def body():
        a = p.parse_args(argv)
        res = run(ExportConfig(a.run_dir, a.output, a.opset, a.int8, a.check_examples, a.atol))
        from distill.progress import console

        console.print_json(data=res)

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
