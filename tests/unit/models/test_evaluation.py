"""Metrics against brute-force definitions, and the evaluation report files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation import hr_at_k, mrr_at_k, popularity_baseline, pr_auc, roc_auc, roc_curve


def _brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40))
def test_roc_auc_matches_pairwise_definition_with_ties(pairs: list[tuple[int, int]]) -> None:
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float)
    if y.min() == y.max():
        with pytest.raises(ValueError, match="both classes"):
            roc_auc(y, s)
        return
    assert roc_auc(y, s) == pytest.approx(_brute_auc(y, s))
    fpr, tpr = roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(_brute_auc(y, s))


def test_pr_auc_perfect_and_random() -> None:
    y = np.array([0, 0, 1, 1])
    assert pr_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    assert pr_auc(y, np.zeros(4)) == pytest.approx(0.5)  # one tied group: precision = base rate
    assert pr_auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)


def test_hit_rate_and_mrr() -> None:
    top = np.array([[5, 6, 7], [1, 2, 3], [9, 8, 7]])
    targets = np.array([7, 4, 9])
    assert hr_at_k(top, targets, k=3) == pytest.approx(2 / 3)
    assert hr_at_k(top, targets, k=1) == pytest.approx(1 / 3)
    assert mrr_at_k(top, targets, k=3) == pytest.approx((1 / 3 + 0 + 1) / 3)


def test_popularity_baseline_skips_seen_items() -> None:
    train = np.array([3, 3, 3, 2, 2, 1, 0])
    rows = popularity_baseline(train, np.array([0, 0]), [set(), {3}], catalog_size=4, k=2)
    assert rows.tolist() == [[3, 2], [2, 0]]  # ties broken by the lower id
