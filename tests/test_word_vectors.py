"""--embedding-init context: token states averaged over the train split (students.word_vectors)."""

import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from distill.inference import Encoded
from students import word_vectors as wv
from students.base import project_embeddings
from students.train import StudentConfig, run

PAD, CLS, SEP = 0, 1, 2


class ContextEncoder(torch.nn.Module):
    """A stand-in encoder whose state for a token depends on its sentence: table[id] + mean of the sentence's rows."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, input_ids, attention_mask):
        rows = self.table[input_ids] * attention_mask[..., None]  # [B, T, H]
        context = rows.sum(1, keepdim=True) / attention_mask.sum(1)[:, None, None]  # [B, 1, H]
        return SimpleNamespace(last_hidden_state=rows + context)


def test_token_state_sums_average_every_occurrence_but_specials_and_padding():
    torch.manual_seed(0)
    table = torch.randn(10, 4)
    a = [[CLS, 5, 6, 5, SEP], [CLS, 7, SEP], [CLS, 6, 8, 9, 9, SEP]]
    b = [[CLS, 5, SEP], [CLS, 9, 7, SEP], [CLS, SEP]]
    sums, counts = wv.token_state_sums(ContextEncoder(table), Encoded(a, None, b), pad_id=PAD, vocab_size=10,
                                       skip_ids={PAD, CLS, SEP})
    # the same averages by brute force, one sentence at a time, no padding
    want_sums, want_counts = np.zeros((10, 4)), np.zeros(10, dtype=int)
    for sent in a + b:
        rows = table[sent].numpy()
        for pos, tok in enumerate(sent):
            if tok not in (CLS, SEP):
                want_sums[tok] += rows[pos] + rows.mean(0)
                want_counts[tok] += 1
    np.testing.assert_array_equal(counts.numpy(), want_counts)
    assert want_counts.tolist() == [0, 0, 0, 0, 0, 3, 2, 2, 1, 3]
    np.testing.assert_allclose(sums.numpy(), want_sums, atol=1e-6)


def test_unseen_rows_come_from_a_ridge_fit_on_the_well_seen_rows():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(200, 6)))
    w = torch.from_numpy(rng.normal(size=(6, 5)))
    means = x @ w + 0.5  # exactly linear in the input table, with an intercept
    counts = torch.full((200,), 5)
    counts[:20] = 0  # unseen: predicted
    counts[20:30] = 1  # seen too rarely to fit, but kept as averaged
    means[:20] = float("nan")  # what an unseen row's average is (0 / 0) must not matter
    means[20:30] = 7.0  # not on the line: a fit that used them would be pulled off
    table, r2 = wv.fill_unseen(means, counts, x)
    np.testing.assert_allclose(table[:20].numpy(), (x[:20] @ w + 0.5).numpy(), atol=0.05)
    assert torch.equal(table[20:], means[20:])
    assert r2 > 0.999


def test_context_table_is_rescaled_to_the_input_table_with_a_zero_padding_row():
    torch.manual_seed(0)
    vocab = 40
    table = torch.randn(vocab, 8) * 3
    sents = [[CLS, *torch.randint(3, vocab, (6,)).tolist(), SEP] for _ in range(60)]
    out = wv.context_table(ContextEncoder(table), Encoded(sents, None), table, pad_id=PAD, skip_ids={PAD, CLS, SEP})
    assert out.shape == (vocab, 8) and out.dtype == torch.float32
    assert torch.all(out[PAD] == 0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1).mean(), table.norm(dim=1).mean())


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_truncated_encoder_gives_that_layers_states(family, tokenizer_dir):
    from transformers import BertConfig, BertForSequenceClassification, MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    small = dict(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
    make = (lambda: BertForSequenceClassification(BertConfig(**small))) if family == "bert" \
        else (lambda: MPNetForSequenceClassification(MPNetConfig(**small)))
    full = make().eval()
    ids = torch.randint(5, 120, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        want = full.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
    cut = make()
    cut.load_state_dict(full.state_dict())
    enc = wv.truncated_encoder(cut, 2)
    assert len(enc.encoder.layer) == 2
    with torch.no_grad():
        got = enc(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="outside the teacher's 1..2"):
        wv.truncated_encoder(cut, 3)


def test_context_layer_is_a_third_of_the_depth():
    assert [wv.context_layer(n) for n in (1, 2, 6, 12, 24)] == [1, 1, 2, 4, 8]


def _cfg(mat, out, **kw):
    options = {"embed_dim": 16, "embedding_init": "context", **kw.pop("options", {})}
    return StudentConfig(materials=str(mat), output_dir=str(out), arch="bilstm", epochs=1, batch_size=16, save_steps=0,
                         device="cpu", options=options, **kw)


def test_student_with_context_vectors_computes_once_then_reuses(sst2_run, tmp_path, monkeypatch, caplog):
    teacher = tmp_path / "teacher"
    shutil.copytree(sst2_run["run_dir"], teacher)  # the shared run stays as it was
    seen = {}
    original = wv.context_table

    def spy(*args, **kwargs):
        seen["table"] = original(*args, **kwargs)
        return seen["table"]

    monkeypatch.setattr(wv, "context_table", spy)
    first = run(_cfg(teacher, tmp_path / "a"))
    assert 0 <= first["metrics"]["dev"]["accuracy"] <= 1
    cache = wv.cache_path(teacher, 1)  # the tiny teacher has 2 layers: layer 1
    assert cache.is_file() and not list(cache.parent.glob(".*.tmp"))
    from safetensors import safe_open

    with safe_open(str(cache), "pt") as fh:
        meta = fh.metadata()
        torch.testing.assert_close(fh.get_tensor("table"), seen["table"])
    from distill.materials import weights_sha256

    assert meta["teacher_sha256"] == weights_sha256(teacher / "best") and meta["layer"] == "1"

    # the student starts from the table, PCA-projected to its 16 dims (as the input table would be)
    from students.train import open_teacher_runs, prepare, resolved_for

    opened = open_teacher_runs([str(teacher)], None)
    cfg = resolved_for(_cfg(teacher, tmp_path / "b"), opened)
    setup = prepare(cfg, opened)
    torch.testing.assert_close(setup.new_model(cfg).embedding.weight.data, project_embeddings(seen["table"], 16))

    # a second run (other seed) reads the cache: no forward pass
    def fail(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(wv, "context_table", fail)
    run(_cfg(teacher, tmp_path / "c", seed=7))

    # another --max-length or a damaged file: computed afresh, not trusted
    monkeypatch.setattr(wv, "context_table", spy)
    seen.clear()
    run(_cfg(teacher, tmp_path / "d", max_length=16))
    assert "table" in seen
    cache.write_bytes(b"not a safetensors file")
    seen.clear()
    with caplog.at_level(logging.WARNING):
        run(_cfg(teacher, tmp_path / "e"))
    assert "table" in seen and "unreadable" in caplog.text


def test_context_is_a_choice_of_the_word_vector_students_only(sst2_run, tmp_path, capsys):
    from distill.student import main

    assert main(["--materials", sst2_run["run_dir"], "--arch", "transformer", "--embedding-init", "context",
                 "--output-dir", str(tmp_path / "t")]) == 2
    assert "--embedding-init is not an option of --arch transformer" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
