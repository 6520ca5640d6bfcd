"""ONNX export round trip: the exported graph reproduces eager logits for teachers and students."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from distill.export import ExportConfig, run  # noqa: E402
from distill.onnx import ort_session  # noqa: E402
from distill.inference import encode, pad_batch  # noqa: E402
from students.predictor import load_predictor  # noqa: E402
from students.train import StudentConfig  # noqa: E402
from students.train import run as student  # noqa: E402


def _roundtrip(run_dir: Path, texts_a, texts_b=None):
    import torch

    from distill.data import Examples

    res = run(ExportConfig(str(run_dir), int8=True))
    assert Path(res["onnx"]).is_file() and Path(res["int8"]["onnx"]).is_file()
    assert res["max_abs_logit_diff"] < 1e-4 and res["argmax_agreement"] == 1.0
    assert json.loads((run_dir / "export.json").read_text())["checked_examples"] == res["checked_examples"]
    # new shapes (batch and length never seen at export time) still match eager
    task, model, tok, max_len, siamese = load_predictor(run_dir)
    ex = Examples([f"x-{i}" for i in range(len(texts_a))], texts_a, texts_b, None, "t")
    batch = pad_batch(encode(tok, ex, max_len, siamese=siamese), list(range(len(ex))), tok.pad_token_id)
    with torch.inference_mode():
        ref = model(**batch).logits.numpy()
    got = ort_session(res["onnx"]).run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    q = ort_session(res["int8"]["onnx"]).run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
    assert q.shape == ref.shape and np.isfinite(q).all()
    from distill.onnx import INT8_SCHEME

    assert res["int8"]["scheme"] == INT8_SCHEME and res["int8"]["calibration_examples"] > 0
    # the int8 agreement recomputed from the two models on the checked dev rows, and a real floor
    from distill.inference import length_sorted_batches
    from distill.materials import eval_materials

    enc = encode(tok, eval_materials(run_dir).to_examples().select(res["checked_examples"]), max_len, siamese=siamese)
    q_sess, hits = ort_session(res["int8"]["onnx"]), 0
    for idx in length_sorted_batches(enc.lengths, 32):
        b = pad_batch(enc, idx, tok.pad_token_id)
        with torch.inference_mode():
            e = model(**b).logits.numpy()
        hits += int((q_sess.run(["logits"], {k: v.numpy() for k, v in b.items()})[0].argmax(-1) == e.argmax(-1)).sum())
    assert res["int8"]["argmax_agreement"] == pytest.approx(hits / res["checked_examples"])
    assert res["int8"]["argmax_agreement"] >= 0.9, res["int8"]
    return res


TEXTS = ["a wonderful film indeed", "awful", "hated it so much , really truly a waste of time and money"]


def test_teacher_export_roundtrip(sst2_run):
    res = _roundtrip(Path(sst2_run["run_dir"]), TEXTS)
    assert res["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    # 2 layers: Q/K/V, attention output, FFN in and FFN out read 4 inputs per layer, all smoothed;
    # all 12 weight MatMuls see [batch, seq, hidden] inputs, so all quantise the first token apart
    assert res["int8"]["smoothed_inputs"] == 8 and res["int8"]["first_token_apart"] == res["int8"]["matmuls"] == 12
    assert res["int8"]["calibration_split"] == "train"


@pytest.mark.parametrize("arch", ["cnn", "bilstm", "transformer"])
def test_student_export_roundtrip(arch, mrpc_run, tmp_path):
    out = student(StudentConfig(arch=arch, materials=mrpc_run["run_dir"], output_dir=str(tmp_path / arch), epochs=1,
                                batch_size=16, save_steps=0, device="cpu"))
    res = _roundtrip(Path(out["run_dir"]), TEXTS, ["something else", "awful", "a wonderful film"])
    if arch == "transformer":
        assert res["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    else:
        assert res["inputs"] == ["input_ids", "attention_mask", "input_ids_b", "attention_mask_b"]


def _matmul_model(weight: np.ndarray):
    """x [batch, seq, K] @ weight [K, N] as an ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", weight.shape[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", weight.shape[1]])],
                          [numpy_helper.from_array(weight.astype(np.float32), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def test_prepare_int8_is_exact_and_rescues_outliers(tmp_path):
    """Smoothing and the first-token split change nothing in fp32; quantised, they keep the ordinary
    tokens accurate when the first token and one channel are outliers (BERT's [CLS] and outlier dims)."""
    import onnx

    from distill.onnx import prepare_int8, quantize_int8

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 32)) / 8
    x = rng.normal(size=(4, 12, 64)).astype(np.float32)
    x[:, 0] *= 40  # a [CLS]-like first token
    x[:, :, 5] *= 15  # an outlier channel
    src = tmp_path / "mm.onnx"
    onnx.save(_matmul_model(w), str(src))
    ref = x @ w.astype(np.float32)

    m = _matmul_model(w)
    info = prepare_int8(m, {"x": np.abs(x[:, 1:]).max((0, 1))}, alpha=0.5)
    assert info == {"smoothed_inputs": 1, "first_token_apart": 1, "matmuls": 1}
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("MatMul") == 2 and "Concat" in ops and "Mul" in ops
    onnx.save(m, str(tmp_path / "prepared.onnx"))
    got = ort_session(tmp_path / "prepared.onnx").run(["y"], {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)  # exact rewrite

    def rest_error(q):  # relative error on the ordinary tokens
        y = ort_session(q).run(["y"], {"x": x})[0]
        return float(np.abs(y[:, 1:] - ref[:, 1:]).max() / np.abs(ref[:, 1:]).max())

    # 7-bit weights: no u8 x s8 saturation on any x86 CPU, so the errors below are the same everywhere
    plain = quantize_int8(src, tmp_path / "plain.onnx", None, alpha=0.0, reduce_range=True)  # first-token split only
    smooth = quantize_int8(src, tmp_path / "smooth.onnx", [{"x": x}], alpha=0.5, reduce_range=True)
    assert plain["alpha"] == 0.0 and smooth["alpha"] == 0.5 and smooth["smoothed_inputs"] == 1
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(tmp_path / "ort.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    e_ort, e_plain, e_smooth = rest_error(tmp_path / "ort.onnx"), rest_error(tmp_path / "plain.onnx"), rest_error(tmp_path / "smooth.onnx")
    assert e_plain < e_ort / 5  # the first token no longer sets everyone's scale
    assert e_smooth < e_plain / 2  # the outlier channel no longer does either
    assert e_smooth < 0.02


@pytest.mark.parametrize(("flags", "seven_bit"), [("fpu avx2 fma", True), ("avx2 avx512f avx512_vnni", False),
                                                  ("avx2 avx_vnni", False), ("amx_int8 amx_tile", False)])
def test_int8_weights_are_7_bit_where_the_cpu_lacks_vnni(tmp_path, monkeypatch, flags, seven_bit):
    import onnx

    from distill import devices
    from distill.onnx import quantize_int8

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\nbugs\t\t: none\n")
    assert devices.cpu_flags(str(cpuinfo)) == set(flags.split())
    monkeypatch.setattr(devices, "cpu_flags", lambda: set(flags.split()))
    onnx.save(_matmul_model(np.eye(64, 32)), str(tmp_path / "mm.onnx"))
    assert quantize_int8(tmp_path / "mm.onnx", tmp_path / "q.onnx", alpha=0.0)["reduce_range"] is seven_bit


def test_export_int8_settings_are_checked(sst2_run):
    from distill.errors import DistillInputError

    with pytest.raises(DistillInputError, match="--smooth-alpha"):
        ExportConfig(sst2_run["run_dir"], int8=True, smooth_alpha=1.5)
    with pytest.raises(DistillInputError, match="--calib-examples"):
        ExportConfig(sst2_run["run_dir"], int8=True, calib_examples=0)


def test_smooth_linears_is_exact_and_keeps_the_head_input(tiny_bert):
    """SmoothQuant for the torchao int8 backend: the same logits and pooled vector in fp32, every
    encoder Linear smoothed, the head (hooked by HFTeacher) left as it is."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from benchmarks.smoothquant import SmoothedLinear, smooth_linears
    from teachers import HFTeacher

    torch.manual_seed(0)
    ref = HFTeacher(AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval())
    model = HFTeacher(AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval())
    batches = [{"input_ids": torch.randint(1000, 2000, (4, 9)), "attention_mask": torch.ones(4, 9, dtype=torch.long)}
               for _ in range(2)]
    n = smooth_linears(model, batches, alpha=0.5)
    assert n == 13  # 2 layers x 6 + the pooler; the classifier carries HFTeacher's hook
    assert isinstance(model.model.classifier, torch.nn.Linear)
    assert sum(isinstance(m, SmoothedLinear) for m in model.modules()) == 13
    scales = [m.inv_scale for m in model.modules() if isinstance(m, SmoothedLinear)]
    assert all(not torch.allclose(s, torch.ones_like(s)) for s in scales)  # it did move something
    with torch.inference_mode():
        for b in batches:
            a, r = model(**b), ref(**b)
            torch.testing.assert_close(a.logits, r.logits, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(a.pooled, r.pooled, rtol=1e-4, atol=1e-5)
