"""``python -m distill.export RUN``: write ``RUN/model.onnx`` (dynamic batch and sequence axes) for a
teacher or student run, check it against eager PyTorch on the run's dev texts, and optionally write
``RUN/model.int8.onnx`` (ONNX Runtime dynamic int8, prepared so BERT's outliers survive it: see
``prepare_int8``).

    python -m distill.export runs/sst2-mean
    python -m distill.export runs/s3/cnn-kd/seed-42 --int8

The graph takes exactly the tensors ``distill.inference.pad_batch`` makes for the run (input_ids,
attention_mask, token_type_ids for BERT-style inputs; input_ids_b/attention_mask_b for siamese
pairs) and returns ``logits`` [batch, labels]. ``RUN/export.json`` records the check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.cli import config_from, dataclass_parser, field_docs, print_result, run_cli
from distill.errors import DistillInputError
from distill.inference import encode, length_sorted_batches, pad_batch
from distill.onnx import calibration_batches, export_onnx, ort_session, quantize_int8
from distill.rundir import resolve_run, write_json

log = logging.getLogger(__name__)


@field_docs
@dataclass
class ExportConfig:
    __positional__ = ("run_dir",)

    run_dir: str  # a teacher or student run directory
    output: str = ""  # ONNX file to write (default RUN/model.onnx)
    opset: int = 18  # ONNX opset
    int8: bool = False  # also write RUN/model.int8.onnx (onnxruntime dynamic int8)
    smooth_alpha: float = 0.5  # --int8: SmoothQuant migration strength (0 = no smoothing; 0.5 is the paper's default)
    calib_examples: int = 512  # --int8: training texts whose activation ranges calibrate the smoothing
    check_examples: int = 256  # dev examples the export is checked on
    atol: float = 1e-3  # largest allowed |onnx - eager| logit difference

    def __post_init__(self):
        if not 0.0 <= self.smooth_alpha <= 1.0:
            raise DistillInputError(f"--smooth-alpha must lie in [0, 1] (got {self.smooth_alpha}); 0.5 is SmoothQuant's default")
        if self.calib_examples < 1:
            raise DistillInputError(f"--calib-examples must be at least 1 (got {self.calib_examples})")


def run(cfg: ExportConfig) -> dict:
    """Export, check against eager on dev texts, optionally quantise; returns the check summary."""
    from distill.materials import eval_materials
    from students.predictor import load_predictor

    run_dir = Path(cfg.run_dir)
    out = _checked_output(cfg, run_dir)
    task, model, tokenizer, max_length, siamese = load_predictor(run_dir, "cpu")
    model.eval()
    ex = eval_materials(run_dir).to_examples()
    ex = ex.select(min(cfg.check_examples, len(ex)))
    enc = encode(tokenizer, ex, max_length, siamese=siamese)
    pad = tokenizer.pad_token_id
    t0 = time.perf_counter()
    names = export_onnx(model, export_sample(enc, pad), out, cfg.opset)
    export_s = time.perf_counter() - t0
    # (numpy feeds, eager logits) per batch, computed once for the fp32 check and the int8 one
    checks = []
    with torch.inference_mode():
        for idx in length_sorted_batches(enc.lengths, 32):
            batch = pad_batch(enc, idx, pad)
            checks.append(({k: v.numpy() for k, v in batch.items()}, model(**batch).logits.float().numpy()))
    worst, agree, n = compare(out, checks)
    summary = {"onnx": str(out), "inputs": names, "opset": cfg.opset, "export_seconds": round(export_s, 2),
               "checked_examples": n, "max_abs_logit_diff": worst, "argmax_agreement": agree / max(n, 1),
               "size_bytes": out.stat().st_size}
    if worst > cfg.atol:
        out.unlink(missing_ok=True)
        raise DistillInputError(f"the ONNX export of {run_dir} differs from eager by {worst:.2e} > --atol {cfg.atol}; "
                                f"nothing written (report this with the run's config.json)")
    if cfg.int8:
        q = out.with_name(out.stem + ".int8.onnx")
        calib, calib_split = calibration_batches(run_dir, tokenizer, max_length, siamese, cfg.calib_examples)
        info = quantize_int8(out, q, [{k: v.numpy() for k, v in b.items()} for b in calib], cfg.smooth_alpha)
        _, q_agree, _ = compare(q, checks)
        summary["int8"] = {"onnx": str(q), "size_bytes": q.stat().st_size, **info, "calibration_split": calib_split,
                           "calibration_examples": sum(len(b["input_ids"]) for b in calib),
                           "argmax_agreement": q_agree / max(n, 1)}
    if not cfg.output:
        write_json(run_dir / "export.json", summary)
    log.info("exported %s: max |onnx - eager| = %.2e on %d dev examples", out, worst, n)
    return summary


def _checked_output(cfg: ExportConfig, run_dir: Path) -> Path:
    """The ONNX file to write, once the extra is installed and the run and --output make sense."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise DistillInputError("ONNX export needs the [onnx] extra: pip install '.[onnx]' (onnx, onnxscript, onnxruntime)") from None
    if resolve_run(run_dir) != run_dir:  # model.onnx belongs next to the weights it came from
        raise DistillInputError(f"{run_dir} holds several seeds; export one of them (e.g. {resolve_run(run_dir)})")
    out = Path(cfg.output) if cfg.output else run_dir / "model.onnx"
    if out.is_dir() or not out.parent.is_dir():
        raise DistillInputError(f"--output {out} must name a file in an existing folder (it is "
                                f"{'a folder' if out.is_dir() else 'in a folder that does not exist'}); e.g. --output {run_dir}/model.onnx")
    return out


def export_sample(enc, pad: int) -> dict[str, torch.Tensor]:
    """The example batch the exporter traces: up to 4 rows; for siamese pairs the second sentence is
    padded to a length of its own, so the exporter cannot tie the two sequence axes."""
    sample = pad_batch(enc, list(range(min(4, len(enc)))), pad)
    if "input_ids_b" in sample:
        extra = 1 + int(sample["input_ids_b"].shape[1] + 1 == sample["input_ids"].shape[1])
        sample["input_ids_b"] = torch.nn.functional.pad(sample["input_ids_b"], (0, extra), value=pad)
        sample["attention_mask_b"] = torch.nn.functional.pad(sample["attention_mask_b"], (0, extra), value=0)
    return sample


def compare(onnx_path: Path, checks: list[tuple[dict, np.ndarray]]) -> tuple[float, int, int]:
    """(max |onnx - eager| logit, top-label agreements, rows) of an ONNX file over (feeds, eager logits)."""
    sess = ort_session(onnx_path)
    worst, agree, n = 0.0, 0, 0
    for feeds, ref in checks:
        got = sess.run(["logits"], feeds)[0]
        worst = max(worst, float(np.abs(ref - got).max()))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        n += len(ref)
    return worst, agree, n


def main(argv: list[str] | None = None) -> int:
    p = dataclass_parser(ExportConfig, "python -m distill.export", __doc__)

    def body():
        print_result(run(config_from(ExportConfig, p.parse_args(argv))))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
