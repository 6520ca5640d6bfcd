"""Batching and the CPU inference path of the materials dump."""

import numpy as np
import pytest
import torch

from distill.inference import PrepackedLinear, length_sorted_batches, prepack_linears


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
def test_prepack_linears_swaps_every_linear(tiny_bert):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    ref = AutoModelForSequenceClassification.from_pretrained(tiny_bert).eval()
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert prepack_linears(model) == n_linear >= 12  # 2 layers x 6, pooler, classifier
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    ids = torch.randint(1000, 2000, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits,
                                   ref(input_ids=ids, attention_mask=mask).logits, rtol=1e-5, atol=1e-5)
