"""Labelled cases and decoys planted in the sample world, drawn at random per seed.

Cases (label "case") are what a detector must find: transshipment triangles after the December
2024 US ban, origin misdeclaration (a mirror gap), undervaluation, a shift to a neighbouring
uncontrolled code, and a new corridor. Decoys (label "decoy") look alarming but are innocent: a
global price jump, strong seasonality, a hub's own production, a reporting gap, a one-month
spike, a steady trend and a post-control rebound. Countries, codes, months and magnitudes are
drawn per seed within plausible ranges, so nobody can tune a detector to one planted case.

The module is longer than most (about 480 lines) on purpose: it is a catalogue of five kinds of case and seven
kinds of decoy, small planting functions that share one plan and one set of drawing helpers, and
reading the cases next to the decoys they are meant to be told apart from is the point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

TRANSSHIP_CODES = ["282580", "811010", "811090", "811292", "811299", "710421"]
MISDECLARE_CODES = ["282580", "811010", "811292", "850511", "810194", "284180", "380110", "280530"]
UNIT_VALUE_CODES = ["282580", "811010", "811292", "811299", "850511", "810194", "280530", "284180", "710421"]
NEW_CORRIDOR_CODES = ["282580", "811010", "261710", "811292", "250410", "380110", "850511", "284690", "810194",
                      "284180", "810610", "280450"]
PRICE_JUMP_CODES = ["280450", "261100", "284690", "250410", "380110", "284180", "090111", "720851"]
SEASONAL_CODES = ["250410", "380110", "284690", "850511", "282560", "261710", "810194"]
OWN_PRODUCTION_CODES = ["282580", "811010", "811292", "811299"]
REBOUND = {"811292": "gallium_germanium", "811299": "gallium_germanium", "250410": "graphite", "380110": "graphite"}
REBOUND_BUYERS = ["DEU", "JPN", "KOR", "NLD", "FRA", "BEL"]
GAP_REPORTERS = ["DEU", "FRA", "GBR", "ITA", "ESP", "POL", "CHE", "NOR", "NLD", "BRA", "ZAF", "AUS", "CHL",
                 "TUR", "IND", "JPN", "KOR", "CAN"]
BIG = {"CHN", "USA"}

Op = Callable[[pl.DataFrame], pl.DataFrame]


@dataclass
class Plan:
    records: list[dict] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    ensure: list[dict] = field(default_factory=list)   # hs, exporter, importer, base, mode
    gaps: dict[str, list[int]] = field(default_factory=dict)
    protected: set[str] = field(default_factory=set)   # countries kept free of reporting noise
    reserved: set[tuple[str, str]] = field(default_factory=set)  # (hs, country) already used

    def free(self, hs: str, *countries: str) -> bool:
        return all((hs, c) not in self.reserved for c in countries if c not in BIG)

    def reserve(self, hs_codes, *countries):
        for h in hs_codes:
            for c in countries:
                if c and c not in BIG:
                    self.reserved.add((h, c))
        self.protected.update(c for c in countries if c)


# ---------------------------------------------------------------------------------------------
# operations on the expanded flows (corridor x month)

def _patch(flows: pl.DataFrame, hs: str, exporter: str, importer: str, ts, col: str,
           mul=None, add=None) -> pl.DataFrame:
    """Multiply and/or add to `col` on one corridor's months (vectorised join)."""
    ts = np.asarray(ts, dtype=np.int32)
    p = pl.DataFrame({
        "hs": [hs] * len(ts), "exporter": [exporter] * len(ts), "importer": [importer] * len(ts),
        "t": ts, "_mul": np.ones(len(ts)) if mul is None else np.broadcast_to(mul, ts.shape).astype(float),
        "_add": np.zeros(len(ts)) if add is None else np.broadcast_to(add, ts.shape).astype(float),
    })
    keys = ["hs", "exporter", "importer", "t"]
    return (
        flows.join(p, on=keys, how="left", maintain_order="left")
        .with_columns((pl.col(col) * pl.col("_mul").fill_null(1.0) + pl.col("_add").fill_null(0.0)).alias(col))
        .drop("_mul", "_add")
    )


def _mean_qty(flows: pl.DataFrame, hs: str, exporter: str, importer: str, t0: int, t1: int) -> float:
    v = flows.filter((pl.col("hs") == hs) & (pl.col("exporter") == exporter) & (pl.col("importer") == importer)
                     & pl.col("t").is_between(t0, t1 - 1))["qty"].mean()
    return float(v or 0.0)


# ---------------------------------------------------------------------------------------------
# helpers over the corridor table

def _base(cor: pl.DataFrame, hs: str, e: str, i: str) -> float | None:
    v = cor.filter((pl.col("hs") == hs) & (pl.col("exporter") == e) & (pl.col("importer") == i))["base"]
    return float(v[0]) if len(v) else None


def _quantile(cor: pl.DataFrame, hs: str, q: float) -> float:
    return float(cor.filter(pl.col("hs") == hs)["base"].quantile(q))


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(0, len(items)))]


def _draw_corridor(rng, cor: pl.DataFrame, hs: str, where: pl.Expr) -> dict | None:
    """A random corridor of code `hs` meeting `where`, or None when there is none."""
    cand = cor.filter((pl.col("hs") == hs) & where)
    if not cand.height:
        return None
    return cand.row(int(rng.integers(0, cand.height)), named=True)


def _shuffled(rng, items):
    items = list(items)
    return [items[k] for k in rng.permutation(len(items))]


def _record(w, plan: Plan, kind: str, label: str, origin, via, destination, hs_codes, t0: int, t1: int, desc: str):
    plan.records.append({
        "id": f"{label}-{len(plan.records) + 1:02d}-{kind}", "label": label, "kind": kind,
        "origin": origin, "via": via, "destination": destination, "hs_codes": list(hs_codes),
        "start": w.months[t0], "end": w.months[min(t1, w.n - 1)], "description": desc,
    })
    plan.reserve(hs_codes, origin, via, destination)


def _group(w, hs: str) -> str:
    return w.commodities[hs].get("group", "")


def _last_case_start(w) -> int:
    return w.n - 10   # cases end at least four months before the newest month


# ---------------------------------------------------------------------------------------------
# cases

def _transshipment(w, cor, plan: Plan, rng, count: int):
    hubs = [h for h in _shuffled(rng, w.hubs()) if h not in {"HKG", "SGP"}]
    ban = w.control_start["us_ban"]
    made = 0
    for hub in hubs:
        if made == count:
            break
        hs = _pick(rng, TRANSSHIP_CODES)
        if not plan.free(hs, hub):
            continue
        direct = _base(cor, hs, "CHN", "USA") or _quantile(cor, hs, 0.9)
        start = ban + int(rng.integers(0, 4))
        dur = int(rng.integers(4, 9))
        lag = int(rng.integers(0, 3))
        mult = float(rng.uniform(3, 15))
        plan.ensure += [
            {"hs": f"{hs}", "exporter": "CHN", "importer": "USA", "base": direct, "mode": "ifabsent"},
            {"hs": hs, "exporter": hub, "importer": "USA", "base": direct * rng.uniform(0.03, 0.08), "mode": "set"},
            {"hs": hs, "exporter": "CHN", "importer": hub, "base": direct * rng.uniform(0.03, 0.1), "mode": "min"},
        ]
        leg2 = np.arange(start + lag, start + lag + dur)
        noise = rng.lognormal(0, 0.2, dur)
        ratio = rng.uniform(1.0, 1.2)

        def op(flows, hs=hs, hub=hub, leg2=leg2, noise=noise, ratio=ratio, mult=mult, lag=lag, start=start):
            base = _mean_qty(flows, hs, hub, "USA", start - 12, start)
            extra = (mult - 1) * base * noise
            flows = _patch(flows, hs, hub, "USA", leg2, "qty", add=extra)
            return _patch(flows, hs, "CHN", hub, leg2 - lag, "qty", add=extra * ratio)

        plan.ops.append(op)
        name = w.commodities[hs]["desc"]
        _record(w, plan, "transshipment", "case", "CHN", hub, "USA", [hs], start, start + lag + dur - 1,
                f"After China's December 2024 ban, {name} ({hs}) from China is routed via {hub} to the USA: "
                f"CHN->{hub} rises, {hub}->USA rises about {mult:.0f}x its own baseline {lag} month(s) later, "
                f"while CHN->USA direct falls to near zero.")
        made += 1


def _origin_misdeclaration(w, cor, plan: Plan, rng):
    for _ in range(50):
        hs = _pick(rng, MISDECLARE_CODES)
        hub = _pick(rng, w.hubs())
        dest = "USA" if rng.random() < 0.6 else _pick(rng, ["DEU", "JPN", "KOR", "FRA", "GBR"])
        if hub == dest or not plan.free(hs, hub, dest):
            continue
        g = _group(w, hs)
        t_ctrl = w.control_start["us_ban"] if (dest == "USA" and g in {"antimony", "gallium_germanium"}) \
            else w.control_start[g]
        start = min(t_ctrl + int(rng.integers(1, 7)), _last_case_start(w))
        dur = int(rng.integers(3, 7))
        mult = float(rng.uniform(3, 10))
        base = _base(cor, hs, hub, dest)
        plan.ensure.append({"hs": hs, "exporter": hub, "importer": dest,
                            "base": base if base else _quantile(cor, hs, 0.5) * rng.uniform(0.5, 1.5),
                            "mode": "set"})
        ts = np.arange(start, start + dur)
        noise = rng.lognormal(0, 0.2, dur)

        def op(flows, hs=hs, hub=hub, dest=dest, ts=ts, noise=noise, mult=mult, start=start):
            base = _mean_qty(flows, hs, hub, dest, start - 12, start)
            return _patch(flows, hs, hub, dest, ts, "m_extra", add=(mult - 1) * base * noise)

        plan.ops.append(op)
        _record(w, plan, "origin_misdeclaration", "case", "CHN", hub, dest, [hs], start, start + dur - 1,
                f"Chinese-origin {w.commodities[hs]['desc']} ({hs}) declared as {hub} origin: {dest} reports "
                f"imports from {hub} about {mult:.0f}x what {hub} reports exporting to {dest}.")
        return


def _unit_value(w, cor, plan: Plan, rng):
    for _ in range(50):
        hs = _pick(rng, UNIT_VALUE_CODES)
        q = _quantile(cor, hs, 0.6)
        row = _draw_corridor(rng, cor, hs, (pl.col("base") >= q) & (pl.col("exporter") != "CHN")
                             & (pl.col("importer") != "CHN"))
        if row is None:
            continue
        e, i = row["exporter"], row["importer"]
        if not plan.free(hs, e, i):
            continue
        start = min(w.control_start[_group(w, hs)] + int(rng.integers(1, 9)), _last_case_start(w))
        dur = int(rng.integers(3, 7))
        factor = float(rng.uniform(0.15, 0.4))
        plan.ensure.append({"hs": hs, "exporter": e, "importer": i, "base": row["base"], "mode": "steady"})
        ts = np.arange(start, start + dur)
        plan.ops.append(lambda flows, hs=hs, e=e, i=i, ts=ts, f=factor: _patch(flows, hs, e, i, ts, "uv", mul=f))
        _record(w, plan, "unit_value", "case", e, None, i, [hs], start, start + dur - 1,
                f"{e}->{i} {w.commodities[hs]['desc']} ({hs}) declared at about {factor:.0%} of the market "
                f"unit value for {dur} months (undervaluation).")
        return


def _code_shift(w, cor, plan: Plan, rng):
    for _ in range(50):
        hs, nb = _pick(rng, w.code_shift_pairs)
        q = _quantile(cor, hs, 0.5)
        row = _draw_corridor(rng, cor, hs, (pl.col("exporter") == "CHN") & (pl.col("base") >= q)
                             & ~pl.col("importer").is_in(["USA"]))
        if row is None:
            continue
        i = row["importer"]
        if not plan.free(hs, i) or not plan.free(nb, i):
            continue
        g = _group(w, hs)
        start = min(w.control_start[g] + int(rng.integers(4, 10)), _last_case_start(w))
        dur = int(rng.integers(4, 9))
        frac = float(rng.uniform(0.5, 0.9))
        nb_base = _base(cor, nb, "CHN", i)
        # the neighbour corridor is small next to what the controlled one still ships after the control
        cap = row["base"] * w.control_all[g][start] * rng.uniform(0.2, 0.6)
        plan.ensure += [
            {"hs": hs, "exporter": "CHN", "importer": i, "base": row["base"], "mode": "steady"},
            {"hs": nb, "exporter": "CHN", "importer": i, "base": min(nb_base or cap, cap), "mode": "set"},
        ]
        ts = np.arange(start, start + dur)

        def op(flows, hs=hs, nb=nb, i=i, ts=ts, frac=frac):
            sel = flows.filter((pl.col("hs") == hs) & (pl.col("exporter") == "CHN") & (pl.col("importer") == i)
                               & pl.col("t").is_in(ts.tolist())).sort("t")["qty"].to_numpy()
            flows = _patch(flows, hs, "CHN", i, ts, "qty", mul=1 - frac)
            return _patch(flows, nb, "CHN", i, ts, "qty", add=sel * frac)

        plan.ops.append(op)
        _record(w, plan, "code_shift", "case", "CHN", None, i, [hs, nb], start, start + dur - 1,
                f"CHN->{i}: {frac:.0%} of the {hs} tonnage is declared under the uncontrolled neighbour {nb} "
                f"for {dur} months: {hs} falls while {nb} rises by a comparable weight.")
        return


def _new_corridor(w, cor, plan: Plan, rng):
    iso = [c for c in w.countries.filter(~pl.col("flaky"))["iso3"].to_list()]
    for _ in range(200):
        hs = _pick(rng, NEW_CORRIDOR_CODES)
        e = "CHN" if rng.random() < 0.5 else _pick(rng, w.hubs())
        i = _pick(rng, iso)
        if e == i or _base(cor, hs, e, i) is not None or not plan.free(hs, e, i):
            continue
        g = _group(w, hs)
        lo = max(w.control_start.get(g, 0) + 1, 30)
        if lo > _last_case_start(w):
            continue
        start = int(rng.integers(lo, _last_case_start(w) + 1))
        dur = int(rng.integers(5, 11))
        size = _quantile(cor, hs, float(rng.uniform(0.7, 0.9)))
        plan.ensure.append({"hs": hs, "exporter": e, "importer": i, "base": size, "mode": "set"})
        ts = np.arange(w.n)
        on = ((ts >= start) & (ts < start + dur)).astype(float)
        level = size * rng.lognormal(0, 0.25, w.n) * on
        plan.ops.append(lambda flows, hs=hs, e=e, i=i, ts=ts, level=level:
                        _patch(flows, hs, e, i, ts, "qty", mul=0.0, add=level))
        _record(w, plan, "new_corridor", "case", e, None, i, [hs], start, start + dur - 1,
                f"{e}->{i} {w.commodities[hs]['desc']} ({hs}): a route with no trade before appears at a "
                f"material size and runs for {dur} months.")
        return


# ---------------------------------------------------------------------------------------------
# decoys

def _global_price_jump(w, cor, plan: Plan, rng):
    used = {h for r in plan.records for h in r["hs_codes"]}
    codes = [c for c in PRICE_JUMP_CODES if c not in used] or PRICE_JUMP_CODES
    hs = _pick(rng, codes)
    t0 = int(rng.integers(18, w.n - 8))
    factor = float(rng.uniform(1.8, 2.8))
    sub = cor.filter(pl.col("hs") == hs)
    top_e = sub.group_by("exporter").agg(pl.col("base").sum()).sort(["base", "exporter"], descending=True)["exporter"][0]
    top_i = sub.filter(pl.col("exporter") == top_e).sort(["base", "importer"], descending=True)["importer"][0]

    def op(flows, hs=hs, t0=t0, factor=factor):
        hit = (pl.col("hs") == hs) & (pl.col("t") >= t0)
        return flows.with_columns(pl.when(hit).then(pl.col("uv") * factor).otherwise(pl.col("uv")).alias("uv"))

    plan.ops.append(op)
    _record(w, plan, "global_price_jump", "decoy", top_e, None, top_i, [hs], t0, t0 + 2,
            f"The world price of {w.commodities[hs]['desc']} ({hs}) jumps {factor:.1f}x in every corridor at "
            f"once: values rise, tonnage does not.")


def _seasonality(w, cor, plan: Plan, rng):
    for _ in range(100):
        hs = _pick(rng, SEASONAL_CODES)
        q = _quantile(cor, hs, 0.75)
        row = _draw_corridor(rng, cor, hs, (pl.col("base") >= q) & (pl.col("exporter") != "CHN")
                             & (pl.col("importer") != "USA"))
        if row is None:
            continue
        e, i = row["exporter"], row["importer"]
        if not plan.free(hs, e, i):
            continue
        peak = int(rng.integers(1, 13))
        height = float(rng.uniform(4, 6))
        moy = np.array([int(m[5:7]) for m in w.months])
        prof = np.where((moy == peak) | (moy == peak % 12 + 1), height, 0.8)
        plan.ensure.append({"hs": hs, "exporter": e, "importer": i, "base": row["base"], "mode": "steady"})
        ts = np.arange(w.n)
        plan.ops.append(lambda flows, hs=hs, e=e, i=i, ts=ts, prof=prof: _patch(flows, hs, e, i, ts, "qty", mul=prof))
        _record(w, plan, "seasonality", "decoy", e, None, i, [hs], w.t(f"{w.months[0][:4]}-01") + 24, w.n - 1,
                f"{e}->{i} {hs} peaks every year in months {peak} and {peak % 12 + 1} at about {height:.0f}x "
                f"the other months: big but regular.")
        return


def _own_production_hub(w, cor, plan: Plan, rng):
    for hub in _shuffled(rng, w.hubs()):
        hs = _pick(rng, OWN_PRODUCTION_CODES)
        if not plan.free(hs, hub):
            continue
        start = w.control_start["us_ban"] + int(rng.integers(0, 4))
        mult = float(rng.uniform(3, 6))
        base = _base(cor, hs, hub, "USA") or _quantile(cor, hs, 0.5) * rng.uniform(0.5, 1.0)
        plan.ensure.append({"hs": hs, "exporter": hub, "importer": "USA", "base": base, "mode": "set"})
        ts = np.arange(start, w.n)
        ramp = 1 + (mult - 1) * np.clip((ts - start + 1) / 4, 0, 1)
        plan.ops.append(lambda flows, hs=hs, hub=hub, ts=ts, ramp=ramp: _patch(flows, hs, hub, "USA", ts, "qty", mul=ramp))
        _record(w, plan, "own_production_hub", "decoy", "CHN", hub, "USA", [hs], start, w.n - 1,
                f"{hub}'s own production of {hs} ramps up: its exports to the USA grow about {mult:.0f}x over "
                f"four months while its imports from China do not rise.")
        return


def _reporting_gap(w, cor, plan: Plan, rng):
    for r in _shuffled(rng, GAP_REPORTERS):
        if r in plan.protected:
            continue
        start = int(rng.integers(24, w.n - 10))
        dur = int(rng.integers(3, 7))
        plan.gaps[r] = list(range(start, start + dur))
        codes = sorted(set(cor.filter(((pl.col("exporter") == r) | (pl.col("importer") == r))
                                      & pl.col("hs").is_in([c for c, v in w.commodities.items()
                                                            if v["role"] == "watch"]))["hs"].to_list()))
        _record(w, plan, "reporting_gap", "decoy", r, None, r, codes, start, start + dur - 1,
                f"{r} publishes nothing for {dur} months and then resumes: its series drop to zero and come back.")
        return


def _one_month_spike(w, cor, plan: Plan, rng):
    watch = [c for c, v in w.commodities.items() if v["role"] == "watch"]
    for _ in range(100):
        hs = _pick(rng, watch)
        row = _draw_corridor(rng, cor, hs, (pl.col("base") >= _quantile(cor, hs, 0.5))
                             & (pl.col("exporter") != "CHN"))
        if row is None:
            continue
        e, i = row["exporter"], row["importer"]
        if not plan.free(hs, e, i):
            continue
        t0 = int(rng.integers(30, w.n - 5))
        factor = float(rng.uniform(6, 10))
        plan.ensure.append({"hs": hs, "exporter": e, "importer": i, "base": row["base"], "mode": "steady"})
        plan.ops.append(lambda flows, hs=hs, e=e, i=i, t0=t0, f=factor: _patch(flows, hs, e, i, [t0], "qty", mul=f))
        _record(w, plan, "one_month_spike", "decoy", e, None, i, [hs], t0, t0,
                f"{e}->{i} {hs}: one shipment month about {factor:.0f}x the usual, then back to normal.")
        return


def _steady_trend(w, cor, plan: Plan, rng):
    watch = [c for c, v in w.commodities.items() if v["role"] == "watch"]
    for _ in range(100):
        hs = _pick(rng, watch)
        middle = pl.col("base").is_between(_quantile(cor, hs, 0.4), _quantile(cor, hs, 0.8))
        row = _draw_corridor(rng, cor, hs, middle & (pl.col("exporter") != "CHN"))
        if row is None:
            continue
        e, i = row["exporter"], row["importer"]
        if not plan.free(hs, e, i):
            continue
        g = float(rng.uniform(0.03, 0.05))
        ts = np.arange(w.n)
        plan.ensure.append({"hs": hs, "exporter": e, "importer": i, "base": row["base"], "mode": "steady"})
        plan.ops.append(lambda flows, hs=hs, e=e, i=i, ts=ts, g=g:
                        _patch(flows, hs, e, i, ts, "qty", mul=(1 + g) ** (ts - w.n / 2)))
        _record(w, plan, "steady_trend", "decoy", e, None, i, [hs], 0, w.n - 1,
                f"{e}->{i} {hs} grows steadily by about {g:.0%} a month for years.")
        return


def _post_control_rebound(w, cor, plan: Plan, rng):
    for _ in range(50):
        hs = _pick(rng, list(REBOUND))
        buyer = _pick(rng, REBOUND_BUYERS)
        if not plan.free(hs, buyer):
            continue
        g = REBOUND[hs]
        t_ctrl = w.control_start[g]
        r = t_ctrl + int(rng.integers(10, 15))
        if r > w.n - 6:
            continue
        target = float(rng.uniform(0.9, 1.3))
        base = _base(cor, hs, "CHN", buyer) or _quantile(cor, hs, 0.7)
        plan.ensure.append({"hs": hs, "exporter": "CHN", "importer": buyer, "base": base, "mode": "steady"})
        ts = np.arange(r, w.n)
        ctrl = w.control_all[g][ts]
        ramp = np.clip((ts - r + 1) / 3, 0, 1)
        mul = (1 - ramp) + ramp * target / ctrl
        plan.ops.append(lambda flows, hs=hs, b=buyer, ts=ts, mul=mul: _patch(flows, hs, "CHN", b, ts, "qty", mul=mul))
        _record(w, plan, "post_control_rebound", "decoy", "CHN", None, buyer, [hs], r, r + 6,
                f"China's {hs} exports to {buyer} recover to about {target:.0%} of their pre-control level "
                f"a year after the control: licences granted, a normal buyer.")
        return


def plan(w, cor: pl.DataFrame, rng: np.random.Generator) -> Plan:
    """Draw every case and decoy for this seed (who, what, when, how big)."""
    p = Plan()
    p.protected.update(BIG)
    _transshipment(w, cor, p, rng, count=int(rng.integers(2, 4)))
    _origin_misdeclaration(w, cor, p, rng)
    _unit_value(w, cor, p, rng)
    _code_shift(w, cor, p, rng)
    _new_corridor(w, cor, p, rng)
    _global_price_jump(w, cor, p, rng)
    _seasonality(w, cor, p, rng)
    _own_production_hub(w, cor, p, rng)
    _one_month_spike(w, cor, p, rng)
    _steady_trend(w, cor, p, rng)
    _post_control_rebound(w, cor, p, rng)
    _reporting_gap(w, cor, p, rng)   # last: picks a reporter no other case relies on
    return p


def ensure_corridors(cor: pl.DataFrame, p: Plan) -> pl.DataFrame:
    """Add or resize the corridors the cases rely on; they trade every month (no lumpy zeros)."""
    keys = ["hs", "exporter", "importer"]
    for spec in p.ensure:
        k = (pl.col("hs") == spec["hs"]) & (pl.col("exporter") == spec["exporter"]) & (pl.col("importer") == spec["importer"])
        exists = cor.filter(k).height > 0
        if not exists:
            cor = pl.concat([cor, pl.DataFrame({
                **{c: [spec[c]] for c in keys}, "base": [float(spec["base"])], "amp": [0.05],
                "phase": [1], "growth": [0.0], "sigma": [0.2], "zero_p": [0.0], "price_factor": [1.0],
            }).cast(cor.schema)])
            continue
        mode = spec["mode"]
        new_base = {"set": pl.lit(float(spec["base"])), "min": pl.min_horizontal(pl.col("base"), pl.lit(float(spec["base"]))),
                    "ifabsent": pl.col("base"), "steady": pl.col("base")}[mode]
        cor = cor.with_columns(
            pl.when(k).then(new_base).otherwise(pl.col("base")).alias("base"),
            pl.when(k).then(0.0).otherwise(pl.col("zero_p")).alias("zero_p"),
            pl.when(k).then(pl.min_horizontal(pl.col("sigma"), pl.lit(0.25))).otherwise(pl.col("sigma")).alias("sigma"),
        )
    return cor


def apply(w, flows: pl.DataFrame, p: Plan, rng: np.random.Generator) -> pl.DataFrame:
    for op in p.ops:
        flows = op(flows)
    return flows
