"""Carving a dev split out of train for tasks that ship none (the Jigsaw competitions): a seeded,
stratified fraction or one fold of K (``Holdout``), keeping linked rows in one group
(``connected_groups``), so a run's splits are fixed by its flags alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distill.errors import DistillInputError


@dataclass(frozen=True)
class Holdout:
    """How a task without a dev file of its own carves one out of train: a seeded fraction, or
    fold ``fold`` of ``folds`` (k-fold), stratified by "any positive label" so rare positives
    land on both sides."""

    valid_fraction: float = 0.1  # share of train rows that become dev
    folds: int = 0  # k-fold instead of a fraction: dev = fold ``fold`` of ``folds`` (0 = off)
    fold: int = 0  # which fold is dev (0-based)
    seed: int = 42  # fixed, so every teacher/student of a study sees the same split

    def validate(self) -> None:
        if self.folds:
            if self.folds < 2 or not 0 <= self.fold < self.folds:
                raise DistillInputError(f"--folds {self.folds} --fold {self.fold}: need folds >= 2 and 0 <= fold < folds")
        elif not 0 < self.valid_fraction < 1:
            raise DistillInputError(f"--valid-fraction {self.valid_fraction} must be in (0, 1)")

    def dev_mask(self, n: int, strata: np.ndarray | None = None) -> np.ndarray:
        """[n] bool, True for dev rows: a pure function of (n, strata, this holdout)."""
        rng = np.random.default_rng(self.seed)
        strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
        mask = np.zeros(n, dtype=bool)
        for s in np.unique(strata):
            rows = np.flatnonzero(strata == s)
            rows = rows[rng.permutation(len(rows))]
            if self.folds:
                mask[rows[np.arange(len(rows)) % self.folds == self.fold]] = True
            else:
                mask[rows[: int(round(self.valid_fraction * len(rows)))]] = True
        return mask


    def dev_groups(self, groups: np.ndarray) -> np.ndarray:
        """[n] bool dev mask that keeps each group whole: groups in a seeded random order go to dev
        until it holds ``valid_fraction`` of the rows (k-fold: each group to the fold with the
        fewest rows so far)."""
        groups = np.asarray(groups)
        names, sizes = np.unique(groups, return_counts=True)
        order = np.random.default_rng(self.seed).permutation(len(names))
        chosen = set()
        if self.folds:
            load = np.zeros(self.folds, dtype=np.int64)
            for g in order:
                k = int(load.argmin())
                load[k] += sizes[g]
                if k == self.fold:
                    chosen.add(names[g])
        else:
            target, n = self.valid_fraction * len(groups), 0
            for g in order:
                if n >= target:
                    break
                chosen.add(names[g])
                n += sizes[g]
        return np.isin(groups, list(chosen))


def connected_groups(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """Component id per node of an undirected graph (union-find): comments linked by annotator pairs.

    Kept rather than scipy's ``connected_components`` (the same groups, tests/test_equivalence.py):
    the ids, not just the groups, order the seeded holdout (``Holdout.dev_groups``), and scipy numbers
    components differently, so the swap would move existing runs' dev splits."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return np.array([find(i) for i in range(n)])
