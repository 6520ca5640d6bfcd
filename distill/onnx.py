"""ONNX export and int8 quantisation as a library: ``export_onnx`` (dynamic batch and sequence axes),
``ort_session``, and ONNX Runtime dynamic int8 prepared so BERT's activation outliers survive it
(``prepare_int8``, ``quantize_int8``; SmoothQuant factors by ``smooth_scales``). ``distill.export`` is
the command; the benchmarks' onnx backends use the same functions.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from distill.errors import DistillInputError
from distill.rundir import read_json

log = logging.getLogger(__name__)


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


def seven_bit_weights() -> bool:
    """Whether int8 weights keep 7 bits on this CPU: where it lacks VNNI/AMX-INT8 (see ``quantize_int8``)."""
    from distill.devices import cpu_int8_dot

    return not cpu_int8_dot()


def quantize_int8(src: Path, dst: Path, calib_batches=None, alpha: float = 0.5, reduce_range: bool | None = None) -> dict:
    """``dst`` = ORT dynamic int8 of ``src``: ``prepare_int8``, then ``quantize_dynamic`` with int8
    weights per output channel for the weight MatMuls (activation x activation MatMuls in attention
    stay fp32) and activations quantised per tensor at run time (ORT fuses DynamicQuantizeMatMul).

    ``reduce_range`` (default: where this CPU lacks VNNI/AMX-INT8) keeps the weights to 7 bits. ORT's
    u8 x s8 kernels on plain AVX2/AVX-512 sum adjacent products into int16 (vpmaddubsw), which
    saturates at 255 * 127 * 2 > 32767; 7-bit weights keep every pair in range (ORT's quantization
    docs, "U8S8 saturation"). Measured on an AVX2-only AMD EPYC: tests/test_export's outlier matmul
    0.291 relative error without it, 0.034 with it. export.json records the choice: a file quantised with
    8-bit weights on a VNNI machine can saturate on one without."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = seven_bit_weights() if reduce_range is None else reduce_range
    amax = activation_absmax(src, calib_batches) if calib_batches is not None and alpha > 0 else None
    model = onnx.load(str(src))
    info = prepare_int8(model, amax, alpha if amax is not None else 0.0)
    prepared = dst.with_name(f".{dst.name}.prepared.tmp")
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        onnx.save(model, str(prepared))
        quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                         op_types_to_quantize=["MatMul", "LSTM"], extra_options={"MatMulConstBOnly": True})
        tmp.replace(dst)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return {**info, "alpha": alpha if amax is not None else 0.0, "reduce_range": reduce_range, "scheme": INT8_SCHEME}


def calibration_batches(run_dir: Path, tokenizer, max_length: int, siamese: bool, n: int = 512) -> tuple[list[dict], str]:
    """Padded batches (length-sorted, 64 a batch) of the first ``n`` training texts the run's teacher
    labelled — the eval split where no train split was dumped — and that split's name. int8
    calibration (ONNX and torchao alike) never needs gold labels."""
    from distill import materials
    from distill.inference import encode, length_sorted_batches, pad_batch
    from distill.materials import eval_materials

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
