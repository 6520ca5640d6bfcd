"""Transfer-set augmentation (Tang et al. 2019): each rule's rate on a fixed seed, no original and
no repeat in the output, embedding neighbours, and the CLI on a tiny task."""

import random
from collections import Counter

import numpy as np
import pytest

from distill.augment import AugmentConfig, augment, embedding_neighbours, perturb, run
from distill.data import read_text_file
from distill.errors import DistillInputError


def test_word_rules_rates_on_a_fixed_seed():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(20_000)]
    nb = {w: [w + "_nb"] for w in words}
    out = perturb(words, rng, mask="[MASK]", neighbours=nb, p_mask=0.1, p_replace=0.1, p_ngram=0.0, max_ngram=5)
    assert len(out) == len(words)
    masked = sum(o == "[MASK]" for o in out) / len(words)
    replaced = sum(o.endswith("_nb") for o in out) / len(words)
    assert masked == pytest.approx(0.1, abs=0.006) and replaced == pytest.approx(0.1, abs=0.006)
    # a word without neighbours is never replaced (and only masked at p_mask)
    out = perturb(["x"] * 20_000, random.Random(1), mask="M", neighbours={}, p_mask=0.1, p_replace=0.1, p_ngram=0.0, max_ngram=5)
    assert set(out) == {"x", "M"} and out.count("M") / 20_000 == pytest.approx(0.1, abs=0.006)


def test_ngram_rule_rate_and_lengths():
    rng = random.Random(2)
    sent = [f"t{i}" for i in range(12)]
    lengths = Counter()
    n = 20_000
    for _ in range(n):
        out = perturb(sent, rng, mask="M", neighbours={}, p_mask=0.0, p_replace=0.0, p_ngram=0.25, max_ngram=5)
        lengths[len(out)] += 1
        assert " ".join(out) in " ".join(sent)  # a contiguous n-gram of the sentence
    assert 1 - lengths[12] / n == pytest.approx(0.25, abs=0.01)
    for k in range(1, 6):  # n uniform in 1..5: a fifth of the cut draws each
        assert lengths[k] / n == pytest.approx(0.05, abs=0.006)


def test_augment_drops_originals_and_repeats_and_is_seeded():
    texts = [("a good film",), ("a bad film",), ("good",)]
    cfg = AugmentConfig(output="x", factor=30, seed=3)
    nb = {"good": ["great", "fine"], "bad": ["poor"], "film": ["movie"]}
    out = augment(texts, cfg, mask="[MASK]", neighbours=nb)
    assert len(out) == len(set(out)) and not set(out) & set(texts)
    assert out == augment(texts, cfg, mask="[MASK]", neighbours=nb)  # same seed, same file
    assert out != augment(texts, AugmentConfig(output="x", factor=30, seed=4), mask="[MASK]", neighbours=nb)
    pairs = augment([("a good film", "a bad film")], cfg, mask="[MASK]", neighbours=nb)
    assert all(len(p) == 2 and p[0] and p[1] for p in pairs)


def test_embedding_neighbours_nearest_first(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    v = tok.get_vocab()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(v), 16)).astype(np.float32)
    emb[v["movie"]] = emb[v["film"]] + 0.01  # film's nearest whole word
    emb[v["cinema"]] = emb[v["film"]] + 0.5
    nb = embedding_neighbours({"film", "zzzunknown"}, tok, emb, k=3)
    assert nb["film"][0] == "movie" and "film" not in nb["film"] and len(nb["film"]) == 3
    assert "zzzunknown" not in nb


def test_cli_writes_a_tsv_the_teacher_dump_reads(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "aug.tsv"
    res = run(AugmentConfig(task="sst2", data_dir=str(glue_dir), output=str(out), factor=5, teacher=str(tiny_bert)))
    assert res["examples"] == 160 and 0 < res["written"] <= 800
    ex = read_text_file(out, split="transfer", text_columns=("sentence",))
    assert len(ex) == res["written"]
    originals = {s for s in read_text_file(glue_dir / "SST-2" / "train.tsv", split="t").text_a}
    assert not originals & set(ex.text_a)
    mrpc = run(AugmentConfig(task="mrpc", data_dir=str(glue_dir), output=str(tmp_path / "m.tsv"), factor=2,
                             teacher=str(tiny_bert), max_train_samples=20))
    assert read_text_file(tmp_path / "m.tsv", split="t", pair=True, text_columns=("#1 String", "#2 String")).text_b
    assert mrpc["examples"] == 20
    # grow the set: x8 excluding the x5 file writes exactly the x8 rows that file lacks
    more = run(AugmentConfig(task="sst2", data_dir=str(glue_dir), output=str(tmp_path / "more.tsv"), factor=8,
                             teacher=str(tiny_bert), exclude=str(out)))
    whole = run(AugmentConfig(task="sst2", data_dir=str(glue_dir), output=str(tmp_path / "x8.tsv"), factor=8, teacher=str(tiny_bert)))
    rows = {p: (p).read_text().splitlines()[1:] for p in (out, tmp_path / "more.tsv", tmp_path / "x8.tsv")}
    assert more["excluded"] == res["written"] and more["written"] == whole["written"] - res["written"] > 0
    assert sorted(rows[out] + rows[tmp_path / "more.tsv"]) == sorted(rows[tmp_path / "x8.tsv"])
    with pytest.raises(DistillInputError, match="--exclude"):
        run(AugmentConfig(task="sst2", data_dir=str(glue_dir), output=str(tmp_path / "y.tsv"), exclude=str(tmp_path / "none.tsv")))
    with pytest.raises(DistillInputError, match="header"):
        run(AugmentConfig(task="sst2", data_dir=str(glue_dir), output=str(tmp_path / "y.tsv"), teacher=str(tiny_bert),
                          exclude=str(tmp_path / "m.tsv")))
    with pytest.raises(DistillInputError, match="--p-mask"):
        run(AugmentConfig(output=str(out), p_mask=0.7, p_replace=0.5))
