"""Teacher folders load in plain transformers: a mean-pooled teacher (BERT and MPNet) through its own
model type and shipped code (trust_remote_code=True) with distill's logits, refused without it; a
[CLS] teacher as it is; the one-line migration of an older folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from students.hf import main as migrate
from teachers.hf import HFTeacher, load_teacher, make_hf_loadable, set_pooling

TEXTS = ["a wonderful film", "dull and slow , a waste of time", "loved it"]

# runs in a fresh interpreter where distill's packages cannot be imported: only torch + transformers
_PLAIN = """
import json, sys
for name in ("distill", "teachers", "students", "benchmarks"):
    sys.modules[name] = None
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, texts, trust = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
try:
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=trust).eval()
except Exception as exc:
    print(json.dumps({"refused": type(exc).__name__ + ": " + str(exc)[:200]}))
    raise SystemExit(0)
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
with torch.no_grad():
    logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
print(json.dumps({"logits": logits.tolist(), "class": type(model).__name__}))
"""


def plain_transformers(folder: Path, trust: bool) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PLAIN, str(folder), json.dumps(TEXTS), "1" if trust else "0"],
                          capture_output=True, text=True, timeout=300, cwd="/", stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def distill_logits(folder: Path) -> np.ndarray:
    model, tok = load_teacher(str(folder))
    with torch.no_grad():
        return HFTeacher(model.eval())(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()


def _mean_folder(tmp_path: Path, family: str, tokenizer_dir: Path) -> Path:
    from transformers import (BertConfig, BertForSequenceClassification, BertTokenizerFast, MPNetConfig,
                              MPNetForSequenceClassification)

    tok = BertTokenizerFast.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    small = dict(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = (BertForSequenceClassification(BertConfig(**small)) if family == "bert"
             else MPNetForSequenceClassification(MPNetConfig(**small)))
    with torch.no_grad():  # a trained-looking head: the pooled vector matters to the logits
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    set_pooling(model, "mean")
    folder = tmp_path / family
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_mean_pooled_teacher_loads_in_plain_transformers(family, tmp_path, tokenizer_dir, capsys):
    folder = _mean_folder(tmp_path, family, tokenizer_dir)
    before = distill_logits(folder)  # the older layout: model_type bert/mpnet + distill_pooling
    assert migrate([str(folder)]) == 0 and "rewritten" in capsys.readouterr().out  # the one-line migration
    conf = json.loads((folder / "config.json").read_text())
    assert conf["model_type"] == f"distill_mean_{family}" and (folder / "distill_modeling.py").is_file()
    np.testing.assert_allclose(distill_logits(folder), before, atol=1e-6)  # distill reads it as before
    got = plain_transformers(folder, trust=True)
    assert got["class"] == f"DistillMean{'Bert' if family == 'bert' else 'MPNet'}ForSequenceClassification"
    np.testing.assert_allclose(np.array(got["logits"]), before, atol=1e-5)
    assert "refused" in plain_transformers(folder, trust=False)  # never loaded silently wrong
    assert not make_hf_loadable(folder)  # already done


def test_a_teacher_run_writes_the_loadable_folder_and_cls_teachers_load_as_they_are(sst2_run, tiny_bert, glue_dir, tmp_path):
    from conftest import teach_cfg
    from teachers.pipeline import run as teach

    res = teach(teach_cfg(teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(tmp_path / "mean"), epochs=1,
                          splits=("dev",), pooling="mean"))
    best = Path(res["run_dir"]) / "best"
    assert json.loads((best / "config.json").read_text())["model_type"] == "distill_mean_bert"
    np.testing.assert_allclose(np.array(plain_transformers(best, trust=True)["logits"]), distill_logits(best), atol=1e-5)
    # a student reads that folder's tokenizer without transformers stopping to ask about its code
    # (a fresh interpreter: nothing registered yet; the prompt would block a terminal)
    proc = subprocess.run([sys.executable, "-c", "import sys; from students.train import teacher_tokenizer; "
                           "print(type(teacher_tokenizer(sys.argv[1])).__name__)", str(best)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and proc.stdout.split() == ["BertTokenizer"], proc.stderr[-2000:]
    assert "custom code" not in proc.stdout + proc.stderr
    cls_best = Path(sst2_run["run_dir"]) / "best"  # [CLS] pooling: BERT's own pooler, nothing to rewrite
    assert json.loads((cls_best / "config.json").read_text())["model_type"] == "bert"
    np.testing.assert_allclose(np.array(plain_transformers(cls_best, trust=False)["logits"]), distill_logits(cls_best), atol=1e-5)


# a student folder in plain transformers: siamese students take each sentence of a pair alone
_PLAIN_STUDENT = """
import json, sys
for name in ("distill", "teachers", "students", "benchmarks"):
    sys.modules[name] = None
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, pairs = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
enc = lambda *t: tok(*t, padding=True, truncation=True, max_length=model.config.max_seq_length, return_tensors="pt")
a, b = [p[0] for p in pairs], [p[1] for p in pairs]
if model.config.arch == "transformer":
    inputs = enc(a, b) if b[0] else enc(a)
else:
    inputs = {k: v for k, v in enc(a).items() if k != "token_type_ids"}
    if b[0]:
        second = enc(b)
        inputs.update(input_ids_b=second["input_ids"], attention_mask_b=second["attention_mask"])
with torch.no_grad():
    logits = model(**inputs).logits
print(json.dumps({"logits": logits.tolist(), "labels": model.config.id2label, "class": type(model).__name__}))
"""


@pytest.mark.parametrize("arch", ["cnn", "bilstm", "transformer"])
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_every_student_loads_in_plain_transformers(arch, task, sst2_run, mrpc_run, tmp_path):
    from distill.api import load
    from students.train import StudentConfig, run

    teacher = sst2_run if task == "sst2" else mrpc_run
    res = run(StudentConfig(materials=teacher["run_dir"], output_dir=str(tmp_path / arch), arch=arch, epochs=1, batch_size=16,
                            save_steps=0, device="cpu", options={"cnn": {"num_filters": 8}, "bilstm": {"hidden": 8},
                                                                 "transformer": {"layers": 1}}[arch]))
    pairs = [("a wonderful film", "loved it"), ("dull and slow , a waste of time", "a waste"), ("loved it", "dull")]
    texts = pairs if task == "mrpc" else [(a, "") for a, _ in pairs]
    proc = subprocess.run([sys.executable, "-c", _PLAIN_STUDENT, str(Path(res["run_dir"]) / "model"), json.dumps(texts)],
                          capture_output=True, text=True, timeout=300, cwd="/", stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["class"].startswith("Distill") and got["class"].endswith("ForSequenceClassification")
    want = load(res["run_dir"]).predict(pairs if task == "mrpc" else [a for a, _ in pairs])
    np.testing.assert_allclose(np.array(got["logits"]), want, atol=1e-5)
    names = json.loads((Path(res["run_dir"]) / "model" / "student.json").read_text())["label_names"]
    assert [got["labels"][str(i)] for i in range(len(names))] == names  # the label order travels in config.json
    if arch == "cnn" and task == "sst2":  # a folder from before: the one-line migration writes the same config
        model = Path(res["run_dir"]) / "model"
        before = json.loads((model / "config.json").read_text())
        (model / "config.json").unlink()
        (model / "distill_modeling.py").unlink()
        assert migrate([res["run_dir"]]) == 0 and migrate([res["run_dir"]]) == 0
        assert json.loads((model / "config.json").read_text()) == before and (model / "distill_modeling.py").is_file()
