"""Batch definitions (the monthly run) that call the detector library."""
