"""Batching and the CPU inference path of the materials dump."""

import numpy as np
import pytest
import torch

from distill.inference import length_sorted_batches
from teachers.dump import PrepackedLinear, prepack_linears


def test_token_budget_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 40, size=500)
    batches = length_sorted_batches(lengths, batch_size=64, max_tokens=512)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))  # every example once
    assert np.all(np.diff(lengths[flat]) <= 0)  # longest first, across batches too
    for b in batches[:-1]:  # greedy: as many as the budget and the size cap allow (the last takes the rest)
        assert len(b) == min(64, 512 // lengths[b[0]]) and len(b) * lengths[b].max() <= 512
    assert 1 <= len(batches[-1]) <= min(64, 512 // lengths[batches[-1][0]])
    assert max(len(b) for b in batches) == 64  # short examples fill up to the sentence cap
    # one example longer than the budget still gets a batch of its own; no budget = fixed sizes
    assert [len(b) for b in length_sorted_batches(np.array([300, 2, 2]), 8, max_tokens=256)] == [1, 2]
    assert [len(b) for b in length_sorted_batches(lengths, 64)] == [64] * 7 + [52]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.parametrize("bias", [True, False])
def test_prepacked_linear_matches_linear(bias):
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 80, bias=bias)
    packed = PrepackedLinear(lin)
    with torch.inference_mode():
        for shape in [(3, 48), (2, 7, 48), (1, 1, 48), (33, 5, 48)]:
            x = torch.randn(*shape)
            got, ref = packed(x), lin(x)
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_prepacked_linear_fused_gelu_is_exact():
    """The GELU post-op computes what F.gelu computes after the unfused prepacked linear, bit for bit;
    only the exact (erf) GELU is fused, so a tanh-GELU or Python-GELU model keeps its activation."""
    from transformers.activations import ACT2FN

    from teachers.dump import _is_exact_gelu

    assert _is_exact_gelu(ACT2FN["gelu"]) and _is_exact_gelu(torch.nn.GELU())
    assert not any(_is_exact_gelu(a) for a in (ACT2FN["gelu_python"], ACT2FN["gelu_pytorch_tanh"], ACT2FN["gelu_new"],
                                               torch.nn.GELU("tanh"), torch.nn.ReLU(), None))
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 256)
    plain, fused = PrepackedLinear(lin), PrepackedLinear(lin, gelu=True)
    with torch.inference_mode():
        for shape in [(5, 64), (3, 11, 64), (40, 13, 64)]:
            x = 3 * torch.randn(*shape)  # reaching the tails, where erf saturates
            assert torch.equal(fused(x), torch.nn.functional.gelu(plain(x)))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_prepack_linears_swaps_every_linear(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    ref = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert prepack_linears(model) == n_linear >= 12  # 2 layers x 6, pooler, classifier
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    # each layer's GELU (hidden_act "gelu": F.gelu, erf) rides on its FFN input linear
    for layer in model.bert.encoder.layer:
        assert layer.intermediate.dense.gelu
        assert isinstance(layer.intermediate.intermediate_act_fn, torch.nn.Identity)
    assert not any(m.gelu for n, m in model.named_modules()
               if isinstance(m, PrepackedLinear) and not n.endswith("intermediate.dense"))
    ids = torch.randint(1000, 2000, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits,
                                   ref(input_ids=ids, attention_mask=mask).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_worker_threads_match_one_stream(tiny_bert, pooling):
    """predict_arrays(workers=2): each thread runs whole batches on a weight-sharing replica; the rows
    come back in example order, equal to a one-stream run, with every example's progress reported
    once and torch's thread count restored. The mean pooler's per-call mask (kept on the module by a
    hook) must stay per replica, or a batch would pool with another batch's mask."""
    from distill.inference import Encoded, predict_arrays, replicate
    from teachers.hf import HFTeacher, _head, load_teacher

    model, _ = load_teacher(str(tiny_bert), pooling=pooling)
    if torch.backends.mkldnn.is_available():
        prepack_linears(model)  # prepacked (opaque) weights are shared, not copied
    teacher = HFTeacher(model).eval()
    twin = replicate(teacher)
    assert twin is not teacher and twin.model is not teacher.model
    assert {p.data_ptr() for p in twin.parameters()} == {p.data_ptr() for p in teacher.parameters()}
    assert all(a is b for a, b in zip(twin.buffers(), teacher.buffers()))
    # the hooks that stash per-call state are the replica's own: bound to it, on its modules
    assert [h.__self__ for h in _head(twin.model)._forward_pre_hooks.values()] == [twin]
    assert twin.model.base_model.pooler is not teacher.model.base_model.pooler
    rng = np.random.default_rng(0)
    enc = Encoded([[101, *rng.integers(1000, 2000, size=n).tolist(), 102] for n in rng.integers(1, 30, size=200)], None)
    threads = torch.get_num_threads()
    ref = predict_arrays(teacher, enc, pad_id=0, batch_size=16, max_tokens=128, workers=1)
    seen = []
    got = predict_arrays(teacher, enc, pad_id=0, batch_size=16, max_tokens=128, workers=2, on_progress=seen.append)
    assert torch.get_num_threads() == threads
    assert sum(seen) == 200 and len(seen) == len(length_sorted_batches(enc.lengths, 16, 128))
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, atol=1e-5)
    single = predict_arrays(teacher, Encoded(enc.input_ids[:1], None), pad_id=0, workers=2)  # one batch: no threads
    np.testing.assert_allclose(single[0], ref[0][:1], atol=1e-5)


def test_worker_error_reaches_the_caller(tiny_bert):
    """A worker's exception stops the others and is raised in the calling thread; threads restored."""
    from distill.inference import Encoded, predict_arrays

    calls = []

    class Boom(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            calls.append(input_ids.shape)
            raise ValueError("bad batch")

    threads = torch.get_num_threads()
    enc = Encoded([[101, 5, 102]] * 64, None)
    with pytest.raises(ValueError, match="bad batch"):
        predict_arrays(Boom(), enc, pad_id=0, batch_size=4, workers=2)
    assert torch.get_num_threads() == threads
    assert len(calls) <= 2  # each worker stopped at its first failure, not after all 16 batches
