"""Hand-written code against the library that could replace it: where they agree the library is used,
where they differ the test says how (and the code says why it keeps its own)."""

import random

import numpy as np
import pytest
import torch


def test_transformers_set_seed_draws_as_the_hand_written_seeding():
    from transformers import set_seed

    def draws():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    by_hand = draws()
    set_seed(7)
    assert draws() == by_hand


@pytest.mark.parametrize("total,ratio", [(100, 0.0), (37, 0.0), (100, 0.1), (50, 0.06)])
def test_linear_schedule_against_transformers(total, ratio):
    from transformers import get_linear_schedule_with_warmup

    from students.loop import linear_schedule

    ours = linear_schedule(total, ratio)
    warmup = int(total * ratio)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    hf = get_linear_schedule_with_warmup(opt, warmup, total).lr_lambdas[0]
    for step in range(total + 1):
        if step >= warmup:  # the decay: the same factor
            assert ours(step) == pytest.approx(hf(step))
        else:  # the warmup: ours is one step ahead, so no step trains at lr 0
            assert ours(step) == pytest.approx(hf(step + 1)) and ours(step) > 0 == hf(0)


def test_union_find_groups_equal_scipy_connected_components():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from distill.data.holdout import connected_groups

    rng = np.random.default_rng(0)
    n = 300
    edges = [tuple(map(int, rng.integers(0, n, 2))) for _ in range(220)]
    ours = connected_groups(n, edges)
    a, b = np.array(edges).T
    _, theirs = connected_components(coo_matrix((np.ones(len(edges)), (a, b)), shape=(n, n)), directed=False)
    # the same partition: each of our groups is one of scipy's and the other way round
    pairs = set(zip(ours.tolist(), theirs.tolist()))
    assert len(pairs) == len(set(ours.tolist())) == len(set(theirs.tolist()))
