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

from teachers.hf import HFTeacher, load_teacher, main as migrate, make_hf_loadable, set_pooling

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
    cls_best = Path(sst2_run["run_dir"]) / "best"  # [CLS] pooling: BERT's own pooler, nothing to rewrite
    assert json.loads((cls_best / "config.json").read_text())["model_type"] == "bert"
    np.testing.assert_allclose(np.array(plain_transformers(cls_best, trust=False)["logits"]), distill_logits(cls_best), atol=1e-5)
