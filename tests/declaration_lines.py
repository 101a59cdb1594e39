"""Per-line declaration scores for tests, from baselines built afresh from the warehouse as it is now."""

from detector.detectors import declaration_risk
from detector.runner import open_baselines


def line_scores(wh, window, settings):
    with open_baselines(wh, window, partitioned=False) as values:
        return declaration_risk.score_declarations(values, window, settings)
