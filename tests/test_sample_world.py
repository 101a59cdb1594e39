"""The synthetic world: layout, determinism, statistical shape, and each planted case visible in the data."""

from __future__ import annotations

import json

import polars as pl
import pytest

from detector.sample import COMTRADE_COLUMNS, generate_world, plan_cases


def _read(path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={"cmdCode": pl.String, "period": pl.String})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world7")
    summary = generate_world(out, seed=7)
    df = _read(out / "comtrade_monthly.csv").with_columns(
        month=pl.col("period").str.slice(0, 4) + "-" + pl.col("period").str.slice(4, 2))
    cases = json.loads((out / "cases.json").read_text())
    return out, summary, df, cases


def _series(df, reporter, partner, flow, hs, col="netWgt") -> dict[str, float]:
    s = df.filter((pl.col("reporterISO") == reporter) & (pl.col("partnerISO") == partner)
                  & (pl.col("flowCode") == flow) & (pl.col("cmdCode") == hs))
    return dict(zip(s["month"].to_list(), s[col].cast(pl.Float64).to_list(), strict=False))


def _months(start: str, end: str) -> list[str]:
    y, m = map(int, start.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= end:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _shift(month: str, k: int) -> str:
    y, m = map(int, month.split("-"))
    i = y * 12 + m - 1 + k
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def _vals(series, months):
    return [series.get(m, 0.0) for m in months]


def _median(xs):
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2


def test_layout_and_conventions(world):
    _, summary, df, cases = world
    assert df.columns[:-1] == COMTRADE_COLUMNS  # plus the test's own month column
    assert summary["reporters"] >= 30 and df["reporterISO"].n_unique() >= 30
    assert (df["cmdCode"].str.len_chars() == 6).all()
    assert "080300" in df["cmdCode"].to_list()  # leading zero kept
    m, x = df.filter(pl.col("flowCode") == "M"), df.filter(pl.col("flowCode") == "X")
    assert m["cifvalue"].null_count() == 0 and m["fobvalue"].null_count() == m.height
    assert (m["primaryValue"] == m["cifvalue"]).all()
    assert x["fobvalue"].null_count() == 0 and x["cifvalue"].null_count() == x.height
    assert (df["netWgt"] == df["qty"]).all() and (df["qtyUnitAbbr"] == "kg").all()
    assert set(df.filter(pl.col("refYear") < 2022)["classificationCode"].unique()) == {"H5"}
    assert set(df.filter(pl.col("refYear") >= 2022)["classificationCode"].unique()) == {"H6"}
    assert (df["refPeriodId"] == df["refYear"] * 10000 + df["refMonth"] * 100 + 1).all()
    assert df.filter(pl.col("reporterISO") == "USA")["reporterCode"].unique().to_list() == [842]
    assert df.filter(pl.col("partnerISO") == "W00")["partnerCode"].unique().to_list() == [0]
    assert (df["partner2Code"] == 0).all() and (df["customsCode"] == "C00").all() and (df["motCode"] == 0).all()
    # HS2022 split lines are written under their HS2017 code before 2022
    assert "710420" in df.filter(pl.col("refYear") == 2021)["cmdCode"].to_list()
    kinds = {c["kind"] for c in cases}
    assert {"transshipment", "origin_misdeclaration", "unit_value", "code_shift", "new_corridor",
            "global_price_jump", "seasonality", "own_production_hub", "reporting_gap", "one_month_spike",
            "steady_trend", "post_control_rebound"} <= kinds
    assert 2 <= sum(c["kind"] == "transshipment" for c in cases) <= 3


def test_deterministic_per_seed(world, tmp_path):
    out, _, _, cases = world
    generate_world(tmp_path / "again", seed=7)
    assert (tmp_path / "again" / "comtrade_monthly.csv").read_bytes() == (out / "comtrade_monthly.csv").read_bytes()
    assert (tmp_path / "again" / "cases.json").read_bytes() == (out / "cases.json").read_bytes()
    assert plan_cases(7) == cases
    other = plan_cases(8)
    key = lambda cs: [(c["kind"], c["via"], c["destination"], c["hs_codes"], c["start"]) for c in cs]  # noqa: E731
    assert key(other) != key(cases)


def test_sparse_heavy_tailed_corridors(world):
    _, _, df, _ = world
    x = df.filter((pl.col("flowCode") == "X") & (pl.col("partnerISO") != "W00"))
    n = df["reporterISO"].n_unique()
    pairs = x.group_by("cmdCode").agg(pl.struct("reporterISO", "partnerISO").n_unique().alias("pairs"))
    assert (pairs["pairs"] / (n * (n - 1)) < 0.35).all()
    size = x.filter(pl.col("cmdCode") == "282580").group_by("reporterISO", "partnerISO").agg(pl.col("netWgt").sum())
    assert size["netWgt"].max() > 10 * size["netWgt"].median()  # heavy tail


def test_world_rows_are_partner_sums(world):
    _, _, df, _ = world
    keys = ["reporterISO", "flowCode", "cmdCode", "period"]
    sums = df.filter(pl.col("partnerISO") != "W00").group_by(keys).agg(pl.col("netWgt").sum(), pl.col("primaryValue").sum())
    w = df.filter(pl.col("partnerISO") == "W00").select(*keys, "netWgt", "primaryValue")
    j = sums.join(w, on=keys, how="full", suffix="_w")
    assert j.height == w.height == sums.height
    assert (j["netWgt"] == j["netWgt_w"]).all() and (j["primaryValue"] == j["primaryValue_w"]).all()


def test_mirror_ratio_within_cif_fob_band(world):
    _, _, df, _ = world
    year = df.filter((pl.col("refYear") == 2022) & (pl.col("partnerISO") != "W00"))
    x = year.filter(pl.col("flowCode") == "X").group_by(e="reporterISO", i="partnerISO", hs="cmdCode").agg(
        fob=pl.col("primaryValue").sum(), kgx=pl.col("netWgt").sum(), nx=pl.len())
    m = year.filter(pl.col("flowCode") == "M").group_by(e="partnerISO", i="reporterISO", hs="cmdCode").agg(
        cif=pl.col("primaryValue").sum(), kgm=pl.col("netWgt").sum(), nm=pl.len())
    j = x.join(m, on=["e", "i", "hs"]).filter((pl.col("nx") == 12) & (pl.col("nm") >= 11))
    ratio = (j["cif"] / j["fob"])
    assert j.height > 200
    assert 1.03 <= ratio.median() <= 1.10
    assert ratio.is_between(0.85, 1.3).mean() > 0.8


def test_unreported_months_have_no_rows(world):
    _, _, df, cases = world
    gap = next(c for c in cases if c["kind"] == "reporting_gap")
    r = gap["origin"]
    months = set(df.filter(pl.col("reporterISO") == r)["month"].unique().to_list())
    assert not months & set(_months(gap["start"], gap["end"]))
    assert _shift(gap["start"], -1) in months and _shift(gap["end"], 1) in months
    # others still report those months, and the newest months are missing for some reporters
    assert df.filter(pl.col("month") == gap["start"])["reporterISO"].n_unique() > 25
    last = df["month"].max()
    assert df.filter(pl.col("month") == last)["reporterISO"].n_unique() < df["reporterISO"].n_unique()
    # a reporter that published a month but traded nothing in a code has no row for that code only
    per = df.filter(pl.col("partnerISO") == "W00").group_by("reporterISO", "month").agg(pl.col("cmdCode").n_unique())
    assert per["cmdCode"].min() < per["cmdCode"].max()


def test_control_timeline(world):
    _, _, df, _ = world
    chn = df.filter((pl.col("reporterISO") == "CHN") & (pl.col("flowCode") == "X") & (pl.col("partnerISO") == "W00"))
    ga = dict(zip(*chn.filter(pl.col("cmdCode") == "811292").select("month", "netWgt").to_dict().values(), strict=False))
    assert ga["2023-08"] < 0.1 * _median(_vals(ga, _months("2023-01", "2023-06")))
    sb = dict(zip(*chn.filter(pl.col("cmdCode") == "282580").select("month", "netWgt").to_dict().values(), strict=False))
    assert sb.get("2024-09", 0) > 1.4 * _median(_vals(sb, _months("2023-09", "2024-05")))
    assert sb.get("2024-11", 0) < 0.5 * _median(_vals(sb, _months("2023-09", "2024-05")))
    us = _series(df, "CHN", "USA", "X", "282580")
    assert sum(_vals(us, _months("2025-01", "2025-06"))) < 0.05 * sum(_vals(us, _months("2024-01", "2024-06")))


def test_transshipment_cases_visible_on_both_sides(world):
    _, _, df, cases = world
    for c in (c for c in cases if c["kind"] == "transshipment"):
        hs, hub, dest = c["hs_codes"][0], c["via"], c["destination"]
        during = _months(c["start"], c["end"])
        before = [_shift(c["start"], -k) for k in range(1, 13)]
        for side in (_series(df, dest, hub, "M", hs), _series(df, hub, dest, "X", hs)):
            assert max(_vals(side, during)) > 3 * max(_median(_vals(side, before)), 1), c["id"]
        chn_hub = _series(df, "CHN", hub, "X", hs)
        first = during[:3]  # the China leg runs from the start (the hub leg may lag 0-2 months)
        assert sum(_vals(chn_hub, first)) / 3 > 1.5 * _median(_vals(chn_hub, before)), c["id"]
        direct = _series(df, "CHN", dest, "X", hs)
        assert sum(_vals(direct, during)) < 0.1 * sum(_vals(direct, before)), c["id"]


def test_other_cases_visible(world):
    _, _, df, cases = world
    by = {c["kind"]: c for c in cases}
    c = by["origin_misdeclaration"]
    hs, hub, dest = c["hs_codes"][0], c["via"], c["destination"]
    during = _months(c["start"], c["end"])
    m, x = _series(df, dest, hub, "M", hs), _series(df, hub, dest, "X", hs)
    assert sum(_vals(m, during)) > 2.5 * sum(_vals(x, during))
    before = _months(_shift(c["start"], -12), _shift(c["start"], -1))
    assert sum(_vals(m, before)) < 1.3 * sum(_vals(x, before))

    c = by["unit_value"]
    hs, e, i = c["hs_codes"][0], c["origin"], c["destination"]
    during = _months(c["start"], c["end"])
    kg, usd = _series(df, e, i, "X", hs), _series(df, e, i, "X", hs, "primaryValue")
    uv = sum(_vals(usd, during)) / sum(_vals(kg, during))
    world_x = df.filter((pl.col("flowCode") == "X") & (pl.col("cmdCode") == hs) & pl.col("month").is_in(during)
                        & (pl.col("partnerISO") == "W00") & (pl.col("reporterISO") != e))
    market = world_x["primaryValue"].sum() / world_x["netWgt"].sum()
    assert uv < 0.5 * market

    c = by["code_shift"]
    hs, nb = c["hs_codes"]
    during = _months(c["start"], c["end"])
    before = [_shift(c["start"], -k) for k in range(1, 7)]
    ctl, nbr = _series(df, "CHN", c["destination"], "X", hs), _series(df, "CHN", c["destination"], "X", nb)
    share = lambda ms: sum(_vals(ctl, ms)) / (sum(_vals(ctl, ms)) + sum(_vals(nbr, ms)))  # noqa: E731
    assert share(during) < 0.6 * share(before)  # the controlled code falls relative to its neighbour
    rise = _median(_vals(nbr, during)) - _median(_vals(nbr, before))
    assert rise > 0.5 * _median(_vals(nbr, before))
    assert 0.5 < rise / _median(_vals(ctl, during)) < 15  # comparable tonnage (50-90% of it moved)

    c = by["new_corridor"]
    hs = c["hs_codes"][0]
    s = _series(df, c["origin"], c["destination"], "X", hs)
    assert not [m for m in s if m < c["start"]]
    during = _months(c["start"], c["end"])
    assert sum(v > 0 for v in _vals(s, during)) >= len(during) - 1
    sizes = df.filter((pl.col("flowCode") == "X") & (pl.col("cmdCode") == hs) & (pl.col("partnerISO") != "W00")
                      & pl.col("month").is_in(during))["netWgt"]
    assert _median(_vals(s, during)) > sizes.median()


def test_decoys_visible(world):
    _, _, df, cases = world
    by = {c["kind"]: c for c in cases}
    c = by["own_production_hub"]
    hs, hub = c["hs_codes"][0], c["via"]
    late = [_shift(c["start"], k) for k in (3, 4, 5)]
    before = [_shift(c["start"], -k) for k in range(1, 13)]
    out = _series(df, hub, "USA", "X", hs)
    assert _median(_vals(out, late)) > 2 * _median(_vals(out, before))
    inn = _series(df, "CHN", hub, "X", hs)
    assert sum(_vals(inn, late)) / 3 <= 1.5 * sum(_vals(inn, before)) / 12
    c = by["one_month_spike"]
    s = _series(df, c["origin"], c["destination"], "X", c["hs_codes"][0])
    around = [_shift(c["start"], k) for k in (-3, -2, -1, 1, 2, 3)]
    assert s.get(c["start"], 0) > 2.5 * _median(_vals(s, around))


def test_a_range_too_short_for_the_cases_is_a_clear_error(tmp_path):
    from detector.errors import DetectorError
    from detector.sample import generate_world

    with pytest.raises(DetectorError, match=r"2022-06\.\.2025-04 is too short .* cover at least 2022-01\.\.2025-04"):
        generate_world(tmp_path, start="2022-06", end="2025-04")
    with pytest.raises(DetectorError, match="'2025-13' is not a month"):
        generate_world(tmp_path, start="2021-01", end="2025-13")
