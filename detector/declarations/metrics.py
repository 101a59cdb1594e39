"""Precision and recall at a fixed inspection budget, as the KCS / DATE papers define them.

Inspect the top n % of lines by score (round(N * n / 100) lines, at least one); precision = frauds
among them / lines inspected; recall = frauds among them / all frauds in the set.
"""

from __future__ import annotations

import math

import numpy as np

BUDGETS = (1, 5, 10)


def _inspected(n_lines: int, percent: float) -> int:
    return max(1, int(math.floor(n_lines * percent / 100 + 0.5)))


def at_budget(scores, labels, percent: float, rank=None) -> tuple[float, float]:
    """(precision, recall) when inspecting the top `percent` % of lines.

    Order: by `rank` (1 first) when given, else by score descending, ties in input order.
    """
    labels = np.asarray(labels, dtype=float)
    if len(labels) == 0:
        return float("nan"), float("nan")
    order = np.argsort(np.asarray(rank), kind="stable") if rank is not None else np.argsort(
        -np.asarray(scores, dtype=float), kind="stable")
    k = _inspected(len(labels), percent)
    hits = labels[order[:k]].sum()
    total = labels.sum()
    return float(hits / k), float(hits / total) if total else float("nan")


def precision_at(scores, labels, percent: float, rank=None) -> float:
    return at_budget(scores, labels, percent, rank)[0]


def recall_at(scores, labels, percent: float, rank=None) -> float:
    return at_budget(scores, labels, percent, rank)[1]


def budget_table(scores, labels, rank=None, budgets=BUDGETS) -> dict[str, float]:
    """{'precision@1%': .., 'recall@1%': .., ...} for each budget."""
    out = {}
    for n in budgets:
        p, r = at_budget(scores, labels, n, rank)
        out[f"precision@{n}%"], out[f"recall@{n}%"] = p, r
    return out


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    labels = np.asarray(labels, dtype=float)
    if len(labels) == 0 or labels.min() == labels.max():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, np.asarray(scores, dtype=float)))
