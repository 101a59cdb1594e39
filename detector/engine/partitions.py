"""Independent partitions of HS codes: no detector ever reads two partitions at once.

A partition is a connected group of codes: the codes of one watched commodity (commodity series
sum them), a code and its HS2022 successor (older revisions' flows are carried onto it), and the
two codes of a code-shift pair (one falls while the other rises). These links are reference
data, so the partitions are known before any flow is read; every other code stands alone.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from detector.scope import Scope


def partition_codes(scope: Scope, codes: pl.Series, extra_pairs: tuple[str, ...] = ()) -> pl.DataFrame:
    """(hs6, partition) for every HS6 code of the flows (`codes`) and of the scope; a partition is
    named by its smallest code, so that names do not depend on which codes are present."""
    scope_codes = scope.table("scope_codes")
    shift = scope.table("code_shift_pairs").select("from_code", "to_code")
    if extra_pairs:
        shift = pl.concat([shift, pl.DataFrame([p.split(":", 1) for p in extra_pairs], orient="row",
                                               schema=["from_code", "to_code"])])
    bridge = scope.table("hs_bridge").select("from_code", "to_code")
    commodity = scope_codes.filter(pl.col("commodity").is_not_null())
    # the codes of one commodity linked in a chain (code i to the next code of its commodity)
    same_commodity = commodity.sort("commodity", "hs_code").select(
        pl.col("hs_code").alias("from_code"), pl.col("hs_code").shift(-1).over("commodity").alias("to_code")
    ).drop_nulls()
    links = pl.concat([shift, bridge, same_commodity]).filter(pl.col("from_code") != pl.col("to_code"))
    names = (pl.concat([codes.alias("hs6"), scope_codes["hs_code"].alias("hs6"), links["from_code"].alias("hs6"),
                        links["to_code"].alias("hs6")]).unique().sort())
    number = {code: n for n, code in enumerate(names.to_list())}
    a = links["from_code"].replace_strict(number, return_dtype=pl.Int64).to_numpy()
    b = links["to_code"].replace_strict(number, return_dtype=pl.Int64).to_numpy()
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(names), len(names)))
    _, component = connected_components(graph, directed=False)
    frame = pl.DataFrame({"hs6": names, "component": component})
    return frame.with_columns(pl.col("hs6").min().over("component").alias("partition")).select("hs6", "partition")


def assign_buckets(sizes: pl.DataFrame, n_buckets: int) -> pl.DataFrame:
    """(partition, bucket): partitions dealt to `n_buckets` tasks, largest first, each to the task
    with the fewest rows so far, so that tasks take about the same time. `sizes`: partition, rows."""
    ordered = sizes.sort(["rows", "partition"], descending=[True, False])
    load = np.zeros(max(n_buckets, 1), dtype=np.int64)
    buckets = np.empty(ordered.height, dtype=np.int64)
    for i, rows in enumerate(ordered["rows"].to_numpy()):  # one step per partition (thousands), not per row
        buckets[i] = int(np.argmin(load))
        load[buckets[i]] += rows
    return ordered.select("partition").with_columns(pl.Series("bucket", buckets))
