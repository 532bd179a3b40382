"""Evaluation metrics in numpy: ranking quality of fraud scores and of top-k recommendations.

No torch and no scikit-learn; ties in scores are handled exactly (average ranks for ROC-AUC, grouped
thresholds for the curves), so a constant score gets ROC-AUC 0.5.
"""

from __future__ import annotations

import numpy as np


def _check_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("labels must contain both classes to compute a ranking metric")
    return y, s


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    y, s = _check_binary(labels, scores)
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average rank within each group of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each group
    ranks[order] = np.repeat(avg, ends - starts)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every distinct score threshold, from (0,0) to (1,1)."""
    y, s = _check_binary(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    last_of_group = np.concatenate([np.flatnonzero(np.diff(s_sorted)), [len(s) - 1]])
    tp = np.cumsum(y_sorted)[last_of_group]
    fp = (last_of_group + 1) - tp
    tpr = np.concatenate([[0.0], tp / y.sum()])
    fpr = np.concatenate([[0.0], fp / (len(y) - y.sum())])
    return fpr, tpr


def pr_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (step-wise, ties grouped)."""
    y, s = _check_binary(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    last_of_group = np.concatenate([np.flatnonzero(np.diff(s_sorted)), [len(s) - 1]])
    tp = np.cumsum(y_sorted)[last_of_group].astype(np.float64)
    predicted = (last_of_group + 1).astype(np.float64)
    precision = tp / predicted
    recall = tp / y.sum()
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float((recall_steps * precision).sum())


def _ranks_of_targets(top_items: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """1-based rank of each target within its top-k row, or 0 when absent."""
    top = np.asarray(top_items)[:, :k]
    t = np.asarray(targets).reshape(-1, 1)
    if top.shape[0] != t.shape[0]:
        raise ValueError(f"top_items has {top.shape[0]} rows but there are {t.shape[0]} targets")
    hits = top == t
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def hr_at_k(top_items: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Hit rate@k: the share of rows whose target item is among the first `k` recommended items."""
    ranks = _ranks_of_targets(top_items, targets, k)
    return float((ranks > 0).mean()) if len(ranks) else 0.0


def mrr_at_k(top_items: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    """Mean reciprocal rank@k (0 for a target outside the top `k`)."""
    ranks = _ranks_of_targets(top_items, targets, k)
    return float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else 0.0


def popularity_top_k(train_items: np.ndarray, catalog_size: int, k: int = 10) -> np.ndarray:
    """The `k` most frequent items of `train_items` (ties broken by the lower id): the popularity baseline."""
    counts = np.bincount(np.asarray(train_items, dtype=np.int64), minlength=catalog_size)[:catalog_size]
    return np.argsort(-counts, kind="mergesort")[:k]


def popularity_baseline(
    train_items: np.ndarray,
    targets: np.ndarray,
    seen: list[set[int]] | None,
    catalog_size: int,
    k: int = 10,
) -> np.ndarray:
    """Top-k rows of the popularity baseline; with `seen`, items already seen in a row's session are skipped
    (the same rule the session model applies), so the comparison is fair."""
    ranked = popularity_top_k(train_items, catalog_size, k=min(catalog_size, k + 200))
    rows = np.empty((len(targets), k), dtype=np.int64)
    for i in range(len(targets)):
        if seen is None or not seen[i]:
            rows[i] = ranked[:k]
        else:
            rows[i] = [item for item in ranked if int(item) not in seen[i]][:k]
    return rows
