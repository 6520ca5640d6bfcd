"""ONNX export round trip: the exported graph reproduces eager logits for teachers and students."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from distill.export import ExportConfig, ort_session, run  # noqa: E402
from distill.inference import encode, pad_batch  # noqa: E402
from distill.predict import load_predictor  # noqa: E402
from distill.student import StudentConfig  # noqa: E402
from distill.student import run as student  # noqa: E402


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
    return res


TEXTS = ["a wonderful film indeed", "awful", "hated it so much , really truly a waste of time and money"]


def test_teacher_export_roundtrip(sst2_run):
    res = _roundtrip(Path(sst2_run["run_dir"]), TEXTS)
    assert res["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize("arch", ["cnn", "bilstm", "transformer"])
def test_student_export_roundtrip(arch, mrpc_run, tmp_path):
    out = student(StudentConfig(arch=arch, materials=mrpc_run["run_dir"], output_dir=str(tmp_path / arch), epochs=1,
                                batch_size=16, save_steps=0, device="cpu"))
    res = _roundtrip(Path(out["run_dir"]), TEXTS, ["something else", "awful", "a wonderful film"])
    if arch == "transformer":
        assert res["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    else:
        assert res["inputs"] == ["input_ids", "attention_mask", "input_ids_b", "attention_mask_b"]
