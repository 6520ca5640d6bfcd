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

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.cli import print_result, run_cli
from distill.errors import DistillInputError
from distill.rundir import read_json, write_json

log = logging.getLogger(__name__)


@dataclass
class ExportConfig:
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_LogitsOnly(model.eval(), names), tuple(sample[n] for n in names), str(tmp), dynamo=True,
                              input_names=names, output_names=["logits"], dynamic_shapes=(shapes,), opset_version=opset,
                              external_data=False, verbose=False)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return names


# What model.int8.onnx holds; export.json records it, and the benchmarks re-export an older file.
INT8_SCHEME = "ort-dynamic-int8/per-channel-weights/smoothquant/first-token-apart/v2"


def _weight_matmuls(model) -> dict[str, list]:
    """MatMul nodes with a 2-D constant weight, grouped by their activation input (Q, K and V share one)."""
    inits = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list] = {}
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2:
            groups.setdefault(n.input[0], []).append(n)
    return groups


def activation_absmax(path: Path, batches) -> dict[str, np.ndarray]:
    """Per-channel max |x| of every weight MatMul's input over ``batches`` (feeds for ``path``'s
    session), skipping the first position of [batch, seq, channels] inputs (quantised apart)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    names = list(_weight_matmuls(model))
    graph_outputs = {o.name for o in model.graph.output}
    for x in names:
        if x not in graph_outputs:
            model.graph.output.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, None))
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in sess.get_inputs()]
    amax: dict[str, np.ndarray] = {}
    for feeds in batches:
        for x, a in zip(names, sess.run(names, {k: feeds[k] for k in inputs})):
            a = np.abs(a[:, 1:] if a.ndim == 3 else a).reshape(-1, a.shape[-1])
            if len(a):
                amax[x] = np.maximum(amax[x], a.max(0)) if x in amax else a.max(0)
    return amax


def smooth_scales(act_absmax: np.ndarray, weight_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-input-channel factors s_k = max|x_k|^alpha / max|W_k|^(1-alpha) (Xiao et al.
    2023, eq. 4): x @ W = (x / s) @ (s W) moves activation outliers into the weights."""
    return (np.maximum(act_absmax, 1e-5) ** alpha / np.maximum(weight_absmax, 1e-5) ** (1 - alpha)).astype(np.float32)


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


def prepare_int8(model, amax: dict[str, np.ndarray] | None = None, alpha: float = 0.5) -> dict:
    """Rewrite an fp32 graph in place (exactly, in fp32) so ONNX Runtime's dynamic int8 keeps its accuracy.

    ORT's dynamic quantisation gives each activation tensor one scale. In a BERT that is ruled by
    outliers: the [CLS] row's activations reach ~8x the other tokens' (28 vs 3.6 in MiniLM's layer 0),
    and a few channels ~14x the median channel, so ordinary tokens keep 3-4 bits (SST-2 MiniLM:
    -0.92 pt). Two exact rewrites before quantising, per MatMul with a constant weight W [K, N]:
      * SmoothQuant (Xiao et al. 2023): x @ W = (x / s) @ (s[:, None] * W) with
        s_k = max|x_k|^alpha / max|W_k,:|^(1 - alpha) from calibration ``amax`` (one s per input,
        shared by the MatMuls reading it), moving channel outliers into the per-channel weights;
      * the first position of a [batch, seq, K] input (BERT's [CLS]) goes through its own MatMul, so
        it gets its own scale: Concat(x[:, :1] @ W, x[:, 1:] @ W, axis=1).
    Returns counts of what was rewritten."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    rank = {v.name: len(v.type.tensor_type.shape.dim)
            for v in [*shape_inference.infer_shapes(model).graph.value_info, *model.graph.input, *model.graph.output]}
    inits = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    groups = _weight_matmuls(model)
    for name, value in (("first_0", 0), ("first_1", 1), ("first_end", np.iinfo(np.int64).max)):
        model.graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    rewritten, smoothed, split = {}, 0, 0
    for j, (x, nodes) in enumerate(groups.items()):
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float32) for n in nodes]
        xin, new = x, []
        # smooth only where every weight belongs to this input alone (a tied weight would change elsewhere)
        if alpha > 0 and amax is not None and x in amax and all(uses[n.input[1]] == 1 for n in nodes):
            w_max = np.max([np.abs(w).max(1) for w in weights], axis=0)  # [K]
            s = smooth_scales(amax[x], w_max, alpha)
            for n, w in zip(nodes, weights):
                inits[n.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], n.input[1]))
            model.graph.initializer.append(numpy_helper.from_array(1 / s, f"smooth{j}_inv"))
            xin = f"{x}__smoothed"
            new.append(helper.make_node("Mul", [x, f"smooth{j}_inv"], [xin], name=f"smooth{j}"))
            smoothed += 1
        if rank.get(x) == 3:
            first, rest = f"{x}__first", f"{x}__rest"
            new += [helper.make_node("Slice", [xin, "first_0", "first_1", "first_1"], [first], name=f"first{j}"),
                    helper.make_node("Slice", [xin, "first_1", "first_end", "first_1"], [rest], name=f"rest{j}")]
            for n in nodes:
                y = n.output[0]
                new += [helper.make_node("MatMul", [first, n.input[1]], [f"{y}__first"], name=f"{n.name}_first"),
                        helper.make_node("MatMul", [rest, n.input[1]], [f"{y}__rest"], name=f"{n.name}_rest"),
                        helper.make_node("Concat", [f"{y}__first", f"{y}__rest"], [y], axis=1, name=f"{n.name}_concat")]
            split += len(nodes)
        else:
            for n in nodes:
                n.input[0] = xin
                new.append(n)
        rewritten[id(nodes[0])] = new
        for n in nodes[1:]:
            rewritten[id(n)] = []
    order = []
    for n in model.graph.node:  # each group's new nodes where its first MatMul stood (inputs are computed by then)
        order.extend(rewritten.get(id(n), [n]))
    del model.graph.node[:]
    model.graph.node.extend(order)
    onnx.checker.check_model(model)
    return {"smoothed_inputs": smoothed, "first_token_apart": split, "matmuls": sum(map(len, groups.values()))}


def quantize_int8(src: Path, dst: Path, calib_batches=None, alpha: float = 0.5) -> dict:
    """``dst`` = ORT dynamic int8 of ``src``: ``prepare_int8``, then ``quantize_dynamic`` with int8
    weights per output channel for the weight MatMuls (activation x activation MatMuls in attention
    stay fp32) and activations quantised per tensor at run time (ORT fuses DynamicQuantizeMatMul)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    amax = activation_absmax(src, calib_batches) if calib_batches is not None and alpha > 0 else None
    model = onnx.load(str(src))
    info = prepare_int8(model, amax, alpha if amax is not None else 0.0)
    prepared = dst.with_name(f".{dst.name}.prepared.tmp")
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        onnx.save(model, str(prepared))
        quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "LSTM"], extra_options={"MatMulConstBOnly": True})
        tmp.replace(dst)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return {**info, "alpha": alpha if amax is not None else 0.0, "scheme": INT8_SCHEME}


def calibration_batches(run_dir: Path, tokenizer, max_length: int, siamese: bool, n: int = 512) -> tuple[list[dict], str]:
    """Padded batches (length-sorted, 64 a batch) of the first ``n`` training texts the run's teacher
    labelled — the eval split where no train split was dumped — and that split's name. int8
    calibration (ONNX and torchao alike) never needs gold labels."""
    from distill import materials
    from distill.inference import encode, length_sorted_batches, pad_batch
    from distill.predict import eval_materials

    cfg = read_json(run_dir / "config.json")
    try:
        mat, split = materials.load(cfg.get("teacher_run") or run_dir, "train"), "train"
    except DistillInputError:
        mat = eval_materials(run_dir)
        split = mat.split
        log.warning("%s: no train materials; calibrating int8 on %s", run_dir, split)
    ex = mat.to_examples()
    enc = encode(tokenizer, ex.select(min(n, len(ex))), max_length, siamese=siamese)
    return [pad_batch(enc, idx, tokenizer.pad_token_id) for idx in length_sorted_batches(enc.lengths, 64)], split


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
    if out.is_dir() or not out.parent.is_dir():
        raise DistillInputError(f"--output {out} must name a file in an existing folder (it is "
                                f"{'a folder' if out.is_dir() else 'in a folder that does not exist'}); e.g. --output {run_dir}/model.onnx")
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
    # (numpy feeds, eager logits) per batch, computed once for the fp32 check and the int8 one
    checks = []
    with torch.inference_mode():
        for idx in length_sorted_batches(enc.lengths, 32):
            batch = pad_batch(enc, idx, pad)
            checks.append(({k: v.numpy() for k, v in batch.items()}, model(**batch).logits.float().numpy()))
    sess = ort_session(out)
    worst, agree, n = 0.0, 0, 0
    for feeds, ref in checks:
        got = sess.run(["logits"], feeds)[0]
        worst = max(worst, float(np.abs(ref - got).max()))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        n += len(ref)
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
        sess = ort_session(q)
        q_agree = sum(int((ref.argmax(-1) == sess.run(["logits"], feeds)[0].argmax(-1)).sum()) for feeds, ref in checks)
        summary["int8"] = {"onnx": str(q), "size_bytes": q.stat().st_size, **info, "calibration_split": calib_split,
                           "calibration_examples": sum(len(b["input_ids"]) for b in calib),
                           "argmax_agreement": q_agree / max(n, 1)}
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
    p.add_argument("--smooth-alpha", type=float, default=0.5,
                   help="--int8: SmoothQuant migration strength in [0, 1] (0 = off)")
    p.add_argument("--calib-examples", type=int, default=512, help="--int8: training texts that calibrate the smoothing")
    p.add_argument("--check-examples", type=int, default=256)
    p.add_argument("--atol", type=float, default=1e-3)

    def body():
        a = p.parse_args(argv)
        res = run(ExportConfig(a.run_dir, a.output, a.opset, a.int8, a.smooth_alpha, a.calib_examples, a.check_examples, a.atol))
        print_result(res)

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
