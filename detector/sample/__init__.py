"""The synthetic sample world: a Comtrade-shaped monthly trade table with labelled cases and decoys."""

from detector.sample.world import COMTRADE_COLUMNS, generate_world, plan_cases

__all__ = ["COMTRADE_COLUMNS", "generate_world", "plan_cases"]
