"""Google's BERT release folders: a tiny checkpoint written by real TensorFlow (tests/fixtures/google_bert,
with the script that made it) reads without TensorFlow, converts, and gives the encoder outputs and
logits of the same weights put into transformers by hand; wrong or missing variables are named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.errors import DistillInputError
from teachers.google import convert, convert_state, is_google_folder
from teachers.tf_checkpoint import read_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "google_bert"
FOLDER = FIXTURE / "uncased_L-2_H-32_A-2"


def reference() -> dict[str, np.ndarray]:
    """The values NumPy drew before TensorFlow saved them (make_fixture.py)."""
    with np.load(FIXTURE / "weights.npz") as z:
        return {k: z[k] for k in z.files}


def by_hand(ref: dict[str, np.ndarray]):
    """The same weights in BertForSequenceClassification, every name written out here."""
    from transformers import BertConfig, BertForSequenceClassification

    conf = json.loads((FOLDER / "bert_config.json").read_text())
    model = BertForSequenceClassification(BertConfig(**conf, num_labels=3)).eval()
    t = lambda k: torch.from_numpy(ref[k])  # noqa: E731
    state = {"bert.embeddings.word_embeddings.weight": t("bert/embeddings/word_embeddings"),
             "bert.embeddings.position_embeddings.weight": t("bert/embeddings/position_embeddings"),
             "bert.embeddings.token_type_embeddings.weight": t("bert/embeddings/token_type_embeddings"),
             "bert.embeddings.LayerNorm.weight": t("bert/embeddings/LayerNorm/gamma"),
             "bert.embeddings.LayerNorm.bias": t("bert/embeddings/LayerNorm/beta"),
             "bert.pooler.dense.weight": t("bert/pooler/dense/kernel").T, "bert.pooler.dense.bias": t("bert/pooler/dense/bias"),
             "classifier.weight": t("output_weights"), "classifier.bias": t("output_bias")}
    for i in range(conf["num_hidden_layers"]):
        tf, pt = f"bert/encoder/layer_{i}/", f"bert.encoder.layer.{i}."
        for a, b in (("attention/self/query", "attention.self.query"), ("attention/self/key", "attention.self.key"),
                     ("attention/self/value", "attention.self.value"), ("attention/output/dense", "attention.output.dense"),
                     ("intermediate/dense", "intermediate.dense"), ("output/dense", "output.dense")):
            state[pt + b + ".weight"], state[pt + b + ".bias"] = t(tf + a + "/kernel").T, t(tf + a + "/bias")
        for a, b in (("attention/output/LayerNorm", "attention.output.LayerNorm"), ("output/LayerNorm", "output.LayerNorm")):
            state[pt + b + ".weight"], state[pt + b + ".bias"] = t(tf + a + "/gamma"), t(tf + a + "/beta")
    model.load_state_dict(state)
    return model


def test_the_reader_gives_tensorflows_values_without_tensorflow():
    got, ref = read_checkpoint(FOLDER / "bert_model.ckpt"), reference()
    for k, v in ref.items():
        np.testing.assert_array_equal(got[k], v)
        assert np.array_equal(got[k + "/adam_m"], np.zeros_like(v))
    assert got["global_step"].dtype == np.int64 and int(got["global_step"]) == 1234
    assert {k for k in got if k.startswith("cls/")} == {"cls/predictions/output_bias", "cls/seq_relationship/output_weights",
                                                         "cls/predictions/transform/dense/kernel"}
    assert len(got) == 3 * len(ref) + 3 + 1  # weights, two Adam slots each, three cls/ heads, global_step


def test_conversion_matches_the_weights_loaded_by_hand(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = convert(FOLDER, tmp_path / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 3 and model.config.distill_source["classifier_from_checkpoint"]
    assert tok.tokenize("The Movie") == ["the", "movie"]  # uncased, from the folder name and its vocab
    batch = tok(["a wonderful film", "the plot was not good , a waste of time"], padding=True, return_tensors="pt")
    hand = by_hand(reference())
    with torch.no_grad():
        ours, theirs = model(**batch, output_hidden_states=True), hand(**batch, output_hidden_states=True)
    assert max((a - b).abs().max().item() for a, b in zip(ours.hidden_states, theirs.hidden_states)) <= 1e-5
    assert (ours.logits - theirs.logits).abs().max().item() <= 1e-5


def test_unknown_missing_and_mislabelled_checkpoints_are_named(tmp_path, monkeypatch):
    ref = read_checkpoint(FOLDER / "bert_model.ckpt")
    with pytest.raises(DistillInputError, match="does not know: bert/encoder/layer_0/attention/self/rotary/kernel"):
        convert_state({**ref, "bert/encoder/layer_0/attention/self/rotary/kernel": np.zeros(2)}, "ckpt")
    import teachers.tf_checkpoint

    dropped = {k: v for k, v in ref.items() if k != "bert/encoder/layer_1/output/dense/bias"}
    monkeypatch.setattr(teachers.tf_checkpoint, "read_checkpoint", lambda prefix: dropped)
    with pytest.raises(DistillInputError, match=r"lacks bert.encoder.layer.1.output.dense.bias"):
        convert(FOLDER, tmp_path / "missing")
    monkeypatch.undo()
    cased = tmp_path / "cased_L-2_H-32_A-2"  # Google's cased prefix on an uncased vocab
    shutil.copytree(FOLDER, cased)
    with pytest.raises(DistillInputError, match="folder name says cased but vocab.txt has no capitalised words"):
        convert(cased, tmp_path / "cased-out")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "cased-out").exists()  # nothing half-written


def test_a_google_folder_is_a_teacher(glue_dir, tmp_path, monkeypatch, capsys):
    from conftest import teach_cfg

    from distill.__main__ import main as distill
    from teachers.pipeline import run as teach

    assert is_google_folder(FOLDER)
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    res = teach(teach_cfg(teacher=str(FOLDER), data_dir=str(glue_dir), output_dir=str(tmp_path / "run"), epochs=1,
                          splits=("dev",), max_length=32))
    assert set(res["metrics"]["dev"]) == {"accuracy"}
    assert len(list((tmp_path / "cache" / "google").iterdir())) == 1  # converted once, into the cache
    assert distill(["convert", str(FOLDER), str(tmp_path / "explicit")]) == 0
    assert (tmp_path / "explicit" / "model.safetensors").is_file() and "tokenizer.json" in capsys.readouterr().out
    assert distill(["convert", str(FOLDER), str(tmp_path / "explicit")]) == 2  # never over an existing folder
