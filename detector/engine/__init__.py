"""Where the detectors run: in this process over the whole warehouse (the default), or over
independent partitions of HS codes on local worker processes or on Apache Spark. Every way runs
the same detector code on the same `Baselines` and gives the same alerts.
"""
