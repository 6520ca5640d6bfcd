"""Golden values (worked by hand in the comments) and gradient checks for distill.losses."""

import math

import pytest
import torch

from distill import losses


def test_hard_ce_golden():
    # rows: -log softmax([2,0])[0] = log(1+e^-2) = 0.126928; -log softmax([0,1])[1] = log(1+e^-1) = 0.313262
    got = losses.hard_ce(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))
    assert got.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2, abs=1e-6)
    assert got.item() == pytest.approx(0.220095, abs=1e-6)


def test_kd_kl_golden_and_temperature_factor():
    # T=2: p_t = softmax([0, .5]) = [.377541, .622459], p_s = softmax([.5, 0]) (mirror), so
    # KL = (.622459 - .377541) * ln(.622459/.377541) = .244918 * .5 = .122459; times T^2 = .489837
    got = losses.kd_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 2.0)
    assert got.item() == pytest.approx(0.489837, abs=1e-5)
    # T=1, batch mean of .462117 (mirror of softmax([0,1])) and .327816 (teacher [3,1], student uniform)
    got = losses.kd_kl(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [3.0, 1.0]]), 1.0)
    assert got.item() == pytest.approx((0.462117 + 0.327816) / 2, abs=1e-5)
    # identical logits: zero at any temperature
    z = torch.randn(4, 3)
    assert losses.kd_kl(z, z.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_kl_gradient_is_T_times_prob_difference():
    # d/ds [T^2 KL(p_t || p_s)] = T (p_s - p_t) / B  (Hinton 2015, eq. 2, with the T^2 factor)
    torch.manual_seed(0)
    s = torch.randn(5, 3, requires_grad=True)
    t = torch.randn(5, 3)
    T = 3.0
    losses.kd_kl(s, t, T).backward()
    want = T * (torch.softmax(s.detach() / T, -1) - torch.softmax(t / T, -1)) / 5
    torch.testing.assert_close(s.grad, want, atol=1e-6, rtol=1e-5)


def test_logits_mse_and_hidden_golden():
    assert losses.logits_mse(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item() == pytest.approx(2.5)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    assert losses.hidden_match(a, b, "cosine").item() == pytest.approx(0.5)  # (1 - 0) and (1 - 1), mean
    assert losses.hidden_match(a, b, "mse").item() == pytest.approx((1 + 1 + 1 + 0) / 4)
    with pytest.raises(ValueError):
        losses.hidden_match(a, b, "l1")


def test_student_objective_golden():
    # hard on the gold row only: log(1+e^-2) = 0.126928; soft (mse vs zeros) = (4+0+0+1)/4 = 1.25;
    # hidden (cosine, the pair above) = 0.5; total = 0.5*0.126928 + 0.5*1.25 + 2*0.5 = 1.688464
    z, t = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 2)
    y, gold = torch.tensor([0, 1]), torch.tensor([True, False])
    a, b = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    out = losses.student_objective("classification", z, t, y, gold, alpha=0.5, beta=2.0, temperature=2.0, kd_loss="mse",
                                   projected=a, teacher_vec=b)
    got = {k: v.item() for k, v in out.items()}
    assert got == pytest.approx({"hard": 0.126928, "soft": 1.25, "hidden": 0.5, "layer": 0.0, "total": 1.688464}, abs=1e-6)
    # a layer-wise term adds as it is (its weights are applied by layer_objective)
    with_layer = losses.student_objective("classification", z, t, y, gold, alpha=0.5, beta=2.0, temperature=2.0, kd_loss="mse",
                                          projected=a, teacher_vec=b, layer=torch.tensor(0.25))
    assert with_layer["total"].item() == pytest.approx(1.688464 + 0.25, abs=1e-6)
    # every row gold: the mean CE (0.126928 + 0.313262) / 2; no gold row, or alpha = 1: no hard term
    assert losses.student_objective("classification", z, t, y, None, alpha=0.0, beta=0.0, temperature=1.0)["total"].item() \
        == pytest.approx(0.220095, abs=1e-6)
    none = losses.student_objective("classification", z, t, y, torch.tensor([False, False]), alpha=0.5, beta=0.0, temperature=1.0)
    assert none["hard"].item() == 0.0 and none["hidden"].item() == 0.0
    assert losses.student_objective("classification", z, t, y, None, alpha=1.0, beta=0.0, temperature=1.0)["hard"].item() == 0.0


def test_task_kind_dispatch():
    y = torch.tensor([0.5, 2.0])
    pred = torch.tensor([[1.0], [2.0]])
    assert losses.hard_loss("regression", pred, y).item() == pytest.approx(0.125)  # ((.5)^2 + 0) / 2
    assert losses.soft_loss("regression", pred, torch.tensor([[0.0], [2.0]]), temperature=2.0).item() == pytest.approx(0.5)
    s, t = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert losses.soft_loss("classification", s, t, temperature=2.0).item() == pytest.approx(0.489837, abs=1e-5)
    assert losses.soft_loss("classification", s, t, temperature=2.0, kd_loss="mse").item() == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [
    lambda s, t: losses.kd_kl(s, t, 2.5),
    lambda s, t: losses.logits_mse(s, t),
    lambda s, t: losses.hidden_match(s, t, "cosine"),
    lambda s, t: losses.hidden_match(s, t, "mse"),
    lambda s, t: losses.hard_ce(s, t.argmax(-1)),
])
def test_gradcheck(fn):
    torch.manual_seed(1)
    s = torch.randn(4, 3, dtype=torch.double, requires_grad=True)
    t = torch.randn(4, 3, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda x: fn(x, t), (s,))
