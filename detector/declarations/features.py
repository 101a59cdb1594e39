"""Declaration-line features, computed in DuckDB from what was known when the line was declared.

Time rules (no leakage):
- counts ("seen before", "rare HS for this importer") use lines with an earlier *date*;
- norms (median/MAD of log unit value per HS6 x origin, tax rate per HS6, ...) use lines of earlier
  *months*;
- fraud rates (target encodings) use *labels* of earlier months only, and none from `label_cutoff`
  on; they are smoothed towards the past base rate with weight `smoothing`.
So the features of a line of month t never depend on a label of month t or later, and one feature
table serves every monthly retraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from detector.robust import MAD_TO_SIGMA

# Target encodings: name -> key expressions over `lines`.
TARGET_KEYS: dict[str, list[str]] = {
    "importer": ["importer_id"],
    "declarant": ["declarant_id"],
    "seller": ["exporter_id"],
    "hs6": ["hs6"],
    "hs4": ["hs4"],
    "hs2": ["hs2"],
    "origin": ["origin"],
    "route": ["consignment", "origin"],
    "hs6_origin": ["hs6", "origin"],
    "importer_hs6": ["importer_id", "hs6"],
    "declarant_importer": ["declarant_id", "importer_id"],
    "port": ["port"],
    "tax_type": ["tax_type"],
}
# Counts of earlier lines (by date): name -> key expressions.
COUNT_KEYS: dict[str, list[str]] = {
    "importer": ["importer_id"],
    "declarant": ["declarant_id"],
    "seller": ["exporter_id"],
    "importer_hs6": ["importer_id", "hs6"],
    "seller_importer": ["exporter_id", "importer_id"],
}
# Source-specific fields read from `extra` when present (absent keys are NULL).
CATEGORICAL_EXTRA = ("office", "process_type", "import_type", "import_use", "payment_type", "tax_type",
                     "origin_indicator")
CATEGORICAL = ("hs2", "hs4", "origin", "consignment", "port", "mode") + tuple(
    f"x_{k}" for k in CATEGORICAL_EXTRA if k != "tax_type") + ("tax_type",)


@dataclass(frozen=True)
class FeatureOptions:
    hubs: tuple[str, ...] = ()
    smoothing: float = 10.0
    min_norm_lines: int = 5
    label_cutoff: date | None = None


def _lines_sql(where: str) -> str:
    extras = ",\n           ".join(
        f"extra->>'{k}' AS {'tax_type' if k == 'tax_type' else 'x_' + k}" for k in CATEGORICAL_EXTRA)
    return f"""
    SELECT source, declaration_id, date, period, importer_id, declarant_id, exporter_id, origin, consignment,
           hs_code, left(hs_code, 6) AS hs6, left(hs_code, 4) AS hs4, left(hs_code, 2) AS hs2,
           port, mode, value_usd, net_weight_kg, label,
           {extras},
           TRY_CAST(extra->>'tax_rate' AS DOUBLE) AS tax_rate,
           extra->>'preference_partners' AS preference_partners,
           extra->>'destination' AS destination,
           CASE WHEN value_usd > 0 AND net_weight_kg > 0 THEN ln(value_usd / net_weight_kg) END AS luv,
           CASE WHEN net_weight_kg > 0 THEN ln(net_weight_kg) END AS lmass,
           CASE WHEN value_usd > 0 THEN ln(value_usd) END AS lvalue
    FROM declarations
    WHERE {where}"""


def features_sql(opts: FeatureOptions, where: str = "TRUE") -> str:
    """The whole feature pipeline as one WITH query over `declarations` rows matching `where`."""
    cutoff = f"DATE '{opts.label_cutoff.isoformat()}'" if opts.label_cutoff else "DATE '9999-12-31'"
    m = float(opts.smoothing)
    hubs = "[" + ", ".join(f"'{h}'" for h in opts.hubs) + "]"
    ctes = [f"lines AS ({_lines_sql(where)})",
            "months AS (SELECT DISTINCT period FROM lines)",
            # past lines as of each month: the basis of every norm
            "past AS (SELECT m.period AS as_of, l.* FROM months m JOIN lines l ON l.period < m.period)",
            f"""labelled AS (SELECT * FROM lines WHERE label IS NOT NULL AND period < {cutoff})""",
            """base AS (SELECT m.period, coalesce(avg(l.label), 0.2) AS prior, count(l.label) AS n_labels
                        FROM months m LEFT JOIN labelled l ON l.period < m.period GROUP BY m.period)""",
            """uv_norm AS (SELECT as_of, hs6, origin, median(luv) AS med, count(luv) AS n
                           FROM past WHERE luv IS NOT NULL GROUP BY ALL)""",
            """uv_mad AS (SELECT p.as_of, p.hs6, p.origin, median(abs(p.luv - n.med)) AS mad
                          FROM past p JOIN uv_norm n USING (as_of, hs6, origin) GROUP BY ALL)""",
            """hs_norm AS (SELECT as_of, hs6, median(luv) AS med, median(lmass) AS med_mass,
                                  median(lvalue) AS med_value, median(tax_rate) AS med_tax, count(*) AS n
                           FROM past GROUP BY ALL)""",
            """hs_mad AS (SELECT p.as_of, p.hs6, median(abs(p.luv - n.med)) AS mad
                          FROM past p JOIN hs_norm n USING (as_of, hs6) GROUP BY ALL)""",
            """tax_share AS (SELECT as_of, hs6, tax_type, count(*) AS n FROM past GROUP BY ALL)""",
            """ind_share AS (SELECT as_of, hs6, origin, x_origin_indicator, count(*) AS n FROM past GROUP BY ALL)""",
            """controlled AS (SELECT l.source, l.declaration_id, min(w.commodity) AS commodity
                              FROM lines l JOIN watchlist w ON starts_with(l.hs_code, w.hs_prefix)
                              GROUP BY ALL)"""]
    select = ["l.*", "b.prior AS base_rate", "b.n_labels AS base_labels"]
    joins = ["JOIN base b ON b.period = l.period"]
    for name, keys in TARGET_KEYS.items():
        k = ", ".join(keys)
        on = " AND ".join(f"t.{c} IS NOT DISTINCT FROM l.{c}" for c in keys)
        ctes.append(f"""te_{name}_m AS (SELECT {k}, period, sum(label) AS s, count(*) AS n
                                      FROM labelled GROUP BY ALL)""")
        ctes.append(f"""te_{name} AS (SELECT q.{', q.'.join(keys)}, q.period, sum(m.s) AS s, sum(m.n) AS n
                                    FROM (SELECT DISTINCT {k}, period FROM lines) q
                                    JOIN te_{name}_m m ON {' AND '.join(f'm.{c} IS NOT DISTINCT FROM q.{c}' for c in keys)}
                                         AND m.period < q.period
                                    GROUP BY ALL)""")
        joins.append(f"LEFT JOIN te_{name} t_{name} ON {on.replace('t.', f't_{name}.')} "
                     f"AND t_{name}.period = l.period")
        select.append(f"(coalesce(t_{name}.s, 0) + {m} * b.prior) / (coalesce(t_{name}.n, 0) + {m}) "
                      f"AS te_{name}")
        select.append(f"coalesce(t_{name}.n, 0) AS te_{name}_n")
    windows = []
    for name, keys in COUNT_KEYS.items():
        windows.append(f"""count(*) OVER (PARTITION BY {', '.join(keys)} ORDER BY date
                           RANGE BETWEEN UNBOUNDED PRECEDING AND INTERVAL 1 DAY PRECEDING) AS cnt_{name}""")
    ctes.append(f"counted AS (SELECT source, declaration_id, {', '.join(windows)} FROM lines)")
    joins.append("JOIN counted c USING (source, declaration_id)")
    select.append(", ".join(f"c.cnt_{n}" for n in COUNT_KEYS))
    joins += [
        "LEFT JOIN uv_norm un ON un.as_of = l.period AND un.hs6 = l.hs6 AND un.origin IS NOT DISTINCT FROM l.origin",
        "LEFT JOIN uv_mad um ON um.as_of = l.period AND um.hs6 = l.hs6 AND um.origin IS NOT DISTINCT FROM l.origin",
        "LEFT JOIN hs_norm hn ON hn.as_of = l.period AND hn.hs6 = l.hs6",
        "LEFT JOIN hs_mad hm ON hm.as_of = l.period AND hm.hs6 = l.hs6",
        "LEFT JOIN tax_share ts ON ts.as_of = l.period AND ts.hs6 = l.hs6 "
        "AND ts.tax_type IS NOT DISTINCT FROM l.tax_type",
        "LEFT JOIN ind_share isr ON isr.as_of = l.period AND isr.hs6 = l.hs6 "
        "AND isr.origin IS NOT DISTINCT FROM l.origin AND isr.x_origin_indicator IS NOT DISTINCT FROM l.x_origin_indicator",
        "LEFT JOIN uv_norm uo ON uo.as_of = l.period AND uo.hs6 = l.hs6 AND uo.origin IS NOT DISTINCT FROM l.origin",
        "LEFT JOIN controlled ctl USING (source, declaration_id)",
    ]
    n_min = int(opts.min_norm_lines)
    select += [
        # unit value against HS6 x origin, falling back to HS6 when the pair has few past lines
        f"CASE WHEN un.n >= {n_min} THEN 'hs6_origin' WHEN hn.n >= {n_min} THEN 'hs6' END AS uv_norm_level",
        f"CASE WHEN un.n >= {n_min} THEN un.med WHEN hn.n >= {n_min} THEN hn.med END AS uv_norm_log",
        f"""(l.luv - CASE WHEN un.n >= {n_min} THEN un.med WHEN hn.n >= {n_min} THEN hn.med END)
            / ({MAD_TO_SIGMA} * CASE WHEN un.n >= {n_min} THEN um.mad ELSE hm.mad END + 0.1) AS uv_z""",
        f"l.luv - CASE WHEN un.n >= {n_min} THEN un.med WHEN hn.n >= {n_min} THEN hn.med END AS uv_log_ratio",
        "l.lmass - hn.med_mass AS mass_log_ratio",
        "l.lvalue - hn.med_value AS value_log_ratio",
        "CASE WHEN l.net_weight_kg > 0 THEN l.value_usd / l.net_weight_kg END AS usd_per_kg",
        "coalesce(un.n, 0) AS uv_norm_lines",
        "coalesce(hn.n, 0) AS hs6_past_lines",
        "l.tax_rate - hn.med_tax AS tax_rate_dev",
        "hn.med_tax AS tax_rate_norm",
        "CASE WHEN hn.n > 0 THEN coalesce(ts.n, 0) / hn.n END AS tax_type_share",
        "CASE WHEN uo.n > 0 THEN coalesce(isr.n, 0) / uo.n END AS origin_indicator_share",
        "CAST(l.origin IS DISTINCT FROM l.consignment AND l.origin IS NOT NULL AND l.consignment IS NOT NULL "
        "AS INTEGER) AS origin_ne_consignment",
        f"CAST(l.origin IS DISTINCT FROM l.consignment AND coalesce(list_contains({hubs}, l.consignment), FALSE) "
        "AS INTEGER) AS hub_route",
        "CAST(l.preference_partners IS NOT NULL AS INTEGER) AS preference_claimed",
        "CAST(l.preference_partners IS NOT NULL AND NOT coalesce(list_contains("
        "string_split(l.preference_partners, ','), l.origin), FALSE) AS INTEGER) AS preference_mismatch",
        "ctl.commodity AS controlled_commodity",
        "CAST(ctl.commodity IS NOT NULL AS INTEGER) AS controlled",
        "CAST(c.cnt_importer = 0 AS INTEGER) AS new_importer",
        "CAST(c.cnt_declarant = 0 AS INTEGER) AS new_declarant",
        "CAST(c.cnt_seller = 0 AND l.exporter_id IS NOT NULL AS INTEGER) AS new_seller",
        "CAST(c.cnt_importer > 0 AND c.cnt_importer_hs6 = 0 AS INTEGER) AS new_hs_for_importer",
        "CASE WHEN c.cnt_importer > 0 THEN c.cnt_importer_hs6 / c.cnt_importer END AS importer_hs6_share",
    ]
    return ("WITH " + ",\n".join(ctes) + "\nSELECT " + ",\n       ".join(select) + "\nFROM lines l\n"
            + "\n".join(joins) + "\nORDER BY l.period, l.date, l.source, l.declaration_id")


def build_features(con: duckdb.DuckDBPyConnection, opts: FeatureOptions, where: str = "TRUE") -> pl.DataFrame:
    """Feature table (one row per declaration line, sorted by period, date, id) as a Polars frame."""
    return pl.from_arrow(con.sql(features_sql(opts, where)).to_arrow_table())
