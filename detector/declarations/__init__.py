"""Declaration-level false-declaration risk scoring: features (features.py), models and reasons
(models.py), precision/recall at an inspection budget (metrics.py), KCS evaluation (evaluate_kcs.py)."""

from detector.declarations.features import FeatureOptions, build_features
from detector.declarations.metrics import at_budget, budget_table, precision_at, recall_at
from detector.declarations.models import ModelOptions, rank_lines, score_months

__all__ = ["FeatureOptions", "ModelOptions", "at_budget", "budget_table", "build_features", "precision_at",
           "rank_lines", "recall_at", "score_months"]
