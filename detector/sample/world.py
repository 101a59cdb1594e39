"""The synthetic trade world: corridors, monthly flows, both sides' reports, Comtrade CSV layout.

Shape of the world (all parameters in scenario.toml): each commodity has producers with shares and
buyers weighted by economic size; most exporter-importer pairs never trade (presence drawn with a
probability that falls with both sides' size), corridor sizes are lognormal (heavy tailed), monthly
volumes carry a trend, seasonality, noise and, on small corridors, zero months. Unit values follow
each commodity's price path with corridor-level noise. China's exports react to the export
controls. Exporters report FOB, importers CIF (3-10% above, by distance), sometimes a month late;
some reporters skip months or have not yet published the newest months.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

COMTRADE_COLUMNS = [
    "typeCode", "freqCode", "refPeriodId", "refYear", "refMonth", "period", "reporterCode",
    "reporterISO", "reporterDesc", "flowCode", "flowDesc", "partnerCode", "partnerISO", "partnerDesc",
    "partner2Code", "partner2ISO", "partner2Desc", "classificationCode", "classificationSearchCode",
    "isOriginalClassification", "cmdCode", "cmdDesc", "aggrLevel", "isLeaf", "customsCode",
    "customsDesc", "mosCode", "motCode", "motDesc", "qtyUnitCode", "qtyUnitAbbr", "qty",
    "isQtyEstimated", "altQtyUnitCode", "altQtyUnitAbbr", "altQty", "isAltQtyEstimated", "netWgt",
    "isNetWgtEstimated", "grossWgt", "isGrossWgtEstimated", "cifvalue", "fobvalue", "primaryValue",
    "legacyEstimationFlag", "isReported", "isAggregate",
]

FLAKY_MISS_RATE = 0.3        # share of months a flaky reporter does not publish
IMPORT_LAG_RATE = 0.08       # share of shipments the importer records one month later
UNPUBLISHED_SHARE = 0.45     # share of reporters whose newest 1-3 months are not yet out


def load_scenario() -> dict:
    text = resources.files("detector.sample").joinpath("scenario.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_countries(iso3s: list[str]) -> pl.DataFrame:
    """Comtrade codes and names of the world's countries, from the package reference CSV."""
    path = resources.files("detector.reference").joinpath("countries.csv")
    with resources.as_file(path) as p:
        ref = pl.read_csv(p, schema_overrides={"iso3": pl.String, "iso2": pl.String, "name": pl.String})
    out = pl.DataFrame({"iso3": iso3s}).join(ref.select("iso3", "comtrade_code", "name"), on="iso3", how="left")
    missing = out.filter(pl.col("comtrade_code").is_null())["iso3"].to_list()
    if missing:
        raise ValueError(f"countries.csv lacks {missing}")
    return out


def month_labels(start: str, end: str) -> list[str]:
    y0, m0 = map(int, start.split("-"))
    y1, m1 = map(int, end.split("-"))
    n = (y1 - y0) * 12 + (m1 - m0) + 1
    if n < 24:
        raise ValueError("the sample world needs at least 24 months")
    return [f"{y0 + (m0 - 1 + i) // 12:04d}-{(m0 - 1 + i) % 12 + 1:02d}" for i in range(n)]


@dataclass
class World:
    """Everything case planting needs to know about the world."""

    months: list[str]
    countries: pl.DataFrame          # iso3, comtrade_code, name, lat, lon, size, hub, flaky
    commodities: dict[str, dict]     # code -> scenario entry
    control_all: dict[str, np.ndarray]   # group -> multiplier per month on CHN exports
    control_usa: dict[str, np.ndarray]   # group -> extra multiplier on CHN exports to the USA
    control_start: dict[str, int]    # group -> month index the control binds
    price: dict[str, np.ndarray]     # code -> USD/kg per month
    code_shift_pairs: list[tuple[str, str]]

    @property
    def n(self) -> int:
        return len(self.months)

    def t(self, label: str) -> int:
        y, m = map(int, label.split("-"))
        y0, m0 = map(int, self.months[0].split("-"))
        return (y - y0) * 12 + (m - m0)

    def hubs(self) -> list[str]:
        return self.countries.filter(pl.col("hub"))["iso3"].to_list()


def _interp(anchors: list, world_months: list[str], default: float, log: bool) -> np.ndarray:
    """Piecewise-linear path through [month, value] anchors; flat outside them."""
    y0, m0 = map(int, world_months[0].split("-"))
    xs = np.array([(int(a[:4]) - y0) * 12 + int(a[5:7]) - m0 for a, _ in anchors], dtype=float)
    ys = np.array([v for _, v in anchors], dtype=float)
    grid = np.arange(len(world_months), dtype=float)
    if not len(xs):
        return np.full(len(world_months), default)
    if log:
        return np.exp(np.interp(grid, xs, np.log(ys)))
    out = np.interp(grid, xs, ys)
    return np.where(grid < xs[0], default, out) if default is not None else out


def build_world(start: str, end: str) -> World:
    scen = load_scenario()
    months = month_labels(start, end)
    rows = [{"iso3": k, "lat": v["lat"], "lon": v["lon"], "size": v["size"], "hub": bool(v.get("hub", False)),
             "flaky": bool(v.get("flaky", False))} for k, v in scen["countries"].items()]
    meta = pl.DataFrame(rows)
    countries = load_countries(meta["iso3"].to_list()).join(meta, on="iso3")
    control_all = {g: _interp(c.get("all", []), months, 1.0, log=False) for g, c in scen["controls"].items()}
    control_usa = {g: _interp(c.get("usa", []), months, 1.0, log=False) for g, c in scen["controls"].items()}
    w = World(months, countries, {c["code"]: c for c in scen["commodity"]}, control_all, control_usa, {},
              {c["code"]: _interp(c["price"], months, 1.0, log=True) for c in scen["commodity"]},
              [tuple(p) for p in scen["code_shift_pairs"]["pairs"]])
    w.control_start = {g: w.t(m) for g, m in scen["control_start"].items()}
    return w


def build_corridors(w: World, rng: np.random.Generator) -> pl.DataFrame:
    """One row per (hs, exporter, importer) that trades at all, with its size and dynamics."""
    iso = w.countries["iso3"].to_numpy()
    size = w.countries["size"].to_numpy()
    hub = w.countries["hub"].to_numpy()
    frames = []
    for code, c in w.commodities.items():
        prod = {k: v for k, v in c["producers"].items() if v > 0}
        # hubs re-export a little of everything
        share = np.array([prod.get(k, 0.012 * s / 2 if h else 0.0) for k, s, h in zip(iso, size, hub, strict=False)])
        buy = size.astype(float).copy()
        for k, v in c.get("buyers", {}).items():
            buy[iso == k] = v
        ex_i, im_j = np.nonzero(share[:, None] * buy[None, :] > 0)
        keep = ex_i != im_j
        ex_i, im_j = ex_i[keep], im_j[keep]
        s, b = share[ex_i] / share.max(), buy[im_j] / buy.max()
        p = np.clip(0.95 * s**0.3 * b**0.45, 0.02, 0.95)
        present = rng.random(len(p)) < p
        ex_i, im_j, s, b = ex_i[present], im_j[present], s[present], b[present]
        # exporter totals follow its share: normalise each exporter's buyers
        denom = np.bincount(ex_i, weights=buy[im_j], minlength=len(iso))[ex_i]
        base = c["volume"] * share[ex_i] / share.sum() * buy[im_j] / denom * rng.lognormal(0, 0.9, len(ex_i))
        frames.append(pl.DataFrame({
            "hs": code, "exporter": iso[ex_i], "importer": iso[im_j], "base": base,
        }))
    cor = pl.concat(frames)
    m = cor.height
    pct = cor.select((pl.col("base").rank("ordinal").over("hs") / pl.len().over("hs")).alias("p"))["p"].to_numpy()
    small = 1.0 - pct
    seasonal = np.array([w.commodities[h].get("seasonal", 0.08) for h in cor["hs"].to_list()])
    phase0 = {h: rng.integers(0, 12) for h in w.commodities}
    growth0 = {h: rng.normal(0.02, 0.04) for h in w.commodities}
    return cor.with_columns(
        amp=pl.Series(seasonal * rng.uniform(0.5, 1.5, m)),
        phase=pl.Series([phase0[h] for h in cor["hs"].to_list()]) + pl.Series(rng.integers(-1, 2, m)),
        growth=pl.Series([growth0[h] for h in cor["hs"].to_list()]) + pl.Series(rng.normal(0, 0.05, m)),
        sigma=pl.Series(0.15 + 0.3 * small),
        zero_p=pl.Series(np.clip((small - 0.55) / 0.45, 0, 1) * 0.5),
        price_factor=pl.Series(rng.lognormal(0, 0.12, m)),
    )


def expand_flows(w: World, cor: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Corridor x month: true shipped kg and FOB unit value (USD/kg), before any planted case."""
    n, m = w.n, cor.height
    t = np.tile(np.arange(n), m)
    rep = lambda col: np.repeat(cor[col].to_numpy(), n)  # noqa: E731
    hs, ex, im = rep("hs"), rep("exporter"), rep("importer")
    moy = np.array([int(x[5:7]) for x in w.months])[t]
    seas = 1.0 + rep("amp") * np.cos(2 * np.pi * (moy - rep("phase")) / 12)
    trend = np.exp(rep("growth") * (t - n / 2) / 12)
    noise = np.exp(rng.normal(0, 1, n * m) * rep("sigma"))
    lumpy = rng.random(n * m) >= rep("zero_p")
    ctrl = np.ones(n * m)
    groups = np.array([w.commodities[h].get("group", "") for h in cor["hs"].to_list()])
    g_rep = np.repeat(groups, n)
    for g in w.control_all:
        sel = (g_rep == g) & (ex == "CHN")
        ctrl[sel] *= w.control_all[g][t[sel]]
        sel_us = sel & (im == "USA")
        ctrl[sel_us] *= w.control_usa[g][t[sel_us]]
    qty = rep("base") * seas * trend * noise * lumpy * ctrl
    price = np.zeros(n * m)
    for code, path in w.price.items():
        sel = hs == code
        price[sel] = path[t[sel]]
    uv = price * rep("price_factor") * rng.lognormal(0, 0.06, n * m)
    return pl.DataFrame({"hs": hs, "exporter": ex, "importer": im, "t": t.astype(np.int32),
                         "qty": qty, "uv": uv, "m_extra": np.zeros(n * m)})


def _distance_km(w: World) -> pl.DataFrame:
    c = w.countries.select("iso3", "lat", "lon")
    pairs = c.join(c, how="cross", suffix="_2")
    lat1, lon1 = np.radians(pairs["lat"].to_numpy()), np.radians(pairs["lon"].to_numpy())
    lat2, lon2 = np.radians(pairs["lat_2"].to_numpy()), np.radians(pairs["lon_2"].to_numpy())
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return pl.DataFrame({"exporter": pairs["iso3"], "importer": pairs["iso3_2"],
                         "km": 6371 * 2 * np.arcsin(np.sqrt(a))})


def availability(w: World, rng: np.random.Generator, gaps: dict[str, list[int]], protected: set[str]) -> pl.DataFrame:
    """(reporter, t) pairs that were published."""
    iso = w.countries["iso3"].to_list()
    flaky = set(w.countries.filter(pl.col("flaky"))["iso3"].to_list())
    n = w.n
    rows_r, rows_t = [], []
    lag = {c: (int(rng.integers(1, 4)) if rng.random() < UNPUBLISHED_SHARE else 0) for c in iso}
    miss = rng.random((len(iso), n))
    for k, c in enumerate(iso):
        ok = np.ones(n, dtype=bool)
        if c in flaky and c not in protected:
            ok &= miss[k] >= FLAKY_MISS_RATE
        if lag[c]:
            ok[n - lag[c]:] = False
        for t in gaps.get(c, []):
            ok[t] = False
        ts = np.nonzero(ok)[0]
        rows_r += [c] * len(ts)
        rows_t += ts.tolist()
    return pl.DataFrame({"reporter": rows_r, "t": pl.Series(rows_t, dtype=pl.Int32)})


def reports(w: World, flows: pl.DataFrame, rng: np.random.Generator, avail: pl.DataFrame) -> pl.DataFrame:
    """Both sides' partner rows plus World rows, as (reporter, partner, flow, hs, t, kg, usd)."""
    n = flows.height
    dist = _distance_km(w)
    f = flows.join(dist, on=["exporter", "importer"], how="left").with_columns(
        margin=0.03 + 0.07 * (pl.col("km") / 15000).clip(0, 1),
        qx=pl.Series(rng.lognormal(0, 0.02, n)),
        qm=pl.Series(rng.lognormal(0, 0.03, n)),
        vm=pl.Series(rng.lognormal(0, 0.015, n)),
        late=pl.Series(rng.random(n) < IMPORT_LAG_RATE),
    )
    x = f.select(reporter="exporter", partner="importer", flow=pl.lit("X"), hs="hs", t="t",
                 kg=pl.col("qty") * pl.col("qx"), usd=pl.col("qty") * pl.col("uv") * pl.col("qx"))
    m = f.select(
        reporter="importer", partner="exporter", flow=pl.lit("M"), hs="hs",
        t=pl.col("t") + pl.col("late").cast(pl.Int32),
        kg=pl.col("qty") * pl.col("qm") + pl.col("m_extra"),
        usd=(pl.col("qty") * pl.col("qm") + pl.col("m_extra")) * pl.col("uv") * (1 + pl.col("margin")) * pl.col("vm"),
    ).filter(pl.col("t") < w.n)
    keys = ["reporter", "partner", "flow", "hs", "t"]
    rows = (
        pl.concat([x, m]).group_by(keys).agg(pl.col("kg").sum(), pl.col("usd").sum())
        .with_columns(pl.col("kg").round(0).cast(pl.Int64), pl.col("usd").round(0).cast(pl.Int64))
        .filter((pl.col("kg") >= 1) & (pl.col("usd") >= 1))
        .join(avail, on=["reporter", "t"], how="semi")
    )
    world = rows.group_by(["reporter", "flow", "hs", "t"]).agg(pl.col("kg").sum(), pl.col("usd").sum()).with_columns(
        partner=pl.lit("W00"))
    return pl.concat([rows, world.select(rows.columns)]).sort(["t", "reporter", "flow", "hs", "partner"])


def to_comtrade(w: World, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows in the 47-column Comtrade getFinalData layout, in its column order."""
    ctry = w.countries.select(iso3="iso3", code="comtrade_code", name="name")
    world = pl.DataFrame({"iso3": ["W00"], "code": [0], "name": ["World"]}, schema_overrides={"code": pl.Int64})
    ctry = pl.concat([ctry.with_columns(pl.col("code").cast(pl.Int64)), world])
    months = pl.DataFrame({"t": pl.Series(range(w.n), dtype=pl.Int32), "label": w.months}).with_columns(
        year=pl.col("label").str.slice(0, 4).cast(pl.Int32), month=pl.col("label").str.slice(5, 2).cast(pl.Int32))
    cmd = pl.DataFrame({
        "hs": list(w.commodities),
        "hs2017": [c.get("hs2017", c["code"]) for c in w.commodities.values()],
        "desc": [c["desc"] for c in w.commodities.values()],
    })
    df = (
        rows.join(months, on="t")
        .join(cmd, on="hs")
        .join(ctry.rename({"iso3": "reporter", "code": "rcode", "name": "rname"}), on="reporter")
        .join(ctry.rename({"iso3": "partner", "code": "pcode", "name": "pname"}), on="partner")
    )
    old = pl.col("year") < 2022
    is_m = pl.col("flow") == "M"
    lit_s = lambda v: pl.lit(v, dtype=pl.String)  # noqa: E731
    out = df.select(
        typeCode=lit_s("C"), freqCode=lit_s("M"),
        refPeriodId=(pl.col("year") * 10000 + pl.col("month") * 100 + 1),
        refYear="year", refMonth="month",
        period=(pl.col("year") * 100 + pl.col("month")),
        reporterCode="rcode", reporterISO="reporter", reporterDesc="rname",
        flowCode="flow", flowDesc=pl.when(is_m).then(lit_s("Import")).otherwise(lit_s("Export")),
        partnerCode="pcode", partnerISO="partner", partnerDesc="pname",
        partner2Code=pl.lit(0), partner2ISO=lit_s("W00"), partner2Desc=lit_s("World"),
        classificationCode=pl.when(old).then(lit_s("H5")).otherwise(lit_s("H6")),
        classificationSearchCode=lit_s("HS"), isOriginalClassification=lit_s("True"),
        cmdCode=pl.when(old).then(pl.col("hs2017")).otherwise(pl.col("hs")), cmdDesc="desc",
        aggrLevel=pl.lit(6), isLeaf=lit_s("True"), customsCode=lit_s("C00"), customsDesc=lit_s("TOTAL CPC"),
        mosCode=lit_s("0"), motCode=pl.lit(0), motDesc=lit_s("TOTAL MOT"),
        qtyUnitCode=pl.lit(8), qtyUnitAbbr=lit_s("kg"), qty="kg", isQtyEstimated=lit_s("False"),
        altQtyUnitCode=pl.lit(8), altQtyUnitAbbr=lit_s("kg"), altQty="kg", isAltQtyEstimated=lit_s("False"),
        netWgt="kg", isNetWgtEstimated=lit_s("False"), grossWgt=pl.lit(None, dtype=pl.Int64),
        isGrossWgtEstimated=lit_s("False"),
        cifvalue=pl.when(is_m).then(pl.col("usd")), fobvalue=pl.when(~is_m).then(pl.col("usd")),
        primaryValue="usd", legacyEstimationFlag=pl.lit(0), isReported=lit_s("True"),
        isAggregate=pl.when(pl.col("partner") == "W00").then(lit_s("True")).otherwise(lit_s("False")),
    )
    return out.sort(["refPeriodId", "reporterCode", "flowCode", "cmdCode", "partnerCode"])


def _draw(seed: int, start: str, end: str):
    from detector.sample import cases as case_mod

    w = build_world(start, end)
    r_cor, r_case, r_flow, r_rep, r_avail = np.random.default_rng(seed).spawn(5)
    cor = build_corridors(w, r_cor)
    return w, cor, case_mod.plan(w, cor, r_case), (r_case, r_flow, r_rep, r_avail)


def plan_cases(seed: int = 7, start: str = "2021-01", end: str = "2025-12") -> list[dict]:
    """The cases and decoys generate_world plants for this seed, without writing the world."""
    return _draw(seed, start, end)[2].records


# The planted cases follow the real control timeline (the December 2024 US ban above all): a range
# must hold enough history before the controls and enough months after the ban (checked ranges).
COVERING_RANGES = [("2022-01", "2025-04"), ("2023-01", "2025-12")]


def _check_range(start: str, end: str) -> None:
    from detector.errors import DetectorError

    for label in (start, end):
        parts = label.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 1 <= int(parts[1]) <= 12:
            raise DetectorError(f"sample world: '{label}' is not a month like 2025-03")
    if not any(start <= lo and end >= hi for lo, hi in COVERING_RANGES):
        ranges = " or ".join(f"{lo}..{hi}" for lo, hi in COVERING_RANGES)
        raise DetectorError(f"sample world: {start}..{end} is too short for the planted cases; "
                            f"cover at least {ranges}")


def generate_world(out_dir, seed: int = 7, start: str = "2021-01", end: str = "2025-12") -> dict:
    """Write comtrade_monthly.csv and cases.json for one seed; the same seed gives the same bytes."""
    from detector.sample import cases as case_mod

    _check_range(start, end)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w, cor, plan, (r_case, r_flow, r_rep, r_avail) = _draw(seed, start, end)
    cor = case_mod.ensure_corridors(cor, plan)
    flows = expand_flows(w, cor, r_flow)
    flows = case_mod.apply(w, flows, plan, r_case)
    avail = availability(w, r_avail, plan.gaps, plan.protected)
    rows = reports(w, flows, r_rep, avail)
    table = to_comtrade(w, rows)
    csv_path = out / "comtrade_monthly.csv"
    table.write_csv(csv_path)
    cases_path = out / "cases.json"
    cases_path.write_text(json.dumps(plan.records, indent=2) + "\n", encoding="utf-8")
    return {
        "paths": {"comtrade": str(csv_path), "cases": str(cases_path)},
        "rows": table.height,
        "reporters": table["reporterISO"].n_unique(),
        "commodities": len(w.commodities),
        "corridors": cor.height,
        "months": w.n,
        "cases": sum(r["label"] == "case" for r in plan.records),
        "decoys": sum(r["label"] == "decoy" for r in plan.records),
        "seed": seed,
    }
