"""Small helpers the detector modules share (explanation formatting, evidence, reporter and partner)."""

from __future__ import annotations

import polars as pl


def commodity() -> pl.Expr:
    """The watched commodity's name for explanations; 'goods' for a code outside the watchlist."""
    return pl.col("commodity").fill_null("goods")


def usd(expr: pl.Expr) -> pl.Expr:
    """USD 4.1M / 350k / 900 as text, for explanations."""
    return (pl.when(expr.abs() >= 1e9).then(pl.format("USD {}B", (expr / 1e9).round(1)))
            .when(expr.abs() >= 1e6).then(pl.format("USD {}M", (expr / 1e6).round(1)))
            .when(expr.abs() >= 1e3).then(pl.format("USD {}k", (expr / 1e3).round(0).cast(pl.Int64)))
            .otherwise(pl.format("USD {}", expr.round(0).cast(pl.Int64))))


def weight(kg: pl.Expr) -> pl.Expr:
    """1,250.5 t / 820 kg as text, for explanations."""
    return (pl.when(kg.abs() >= 1e3).then(pl.format("{} t", (kg / 1e3).round(1)))
            .otherwise(pl.format("{} kg", kg.round(0).cast(pl.Int64))))


def times(expr: pl.Expr) -> pl.Expr:
    return pl.format("{}x", expr.round(1))


def pct(expr: pl.Expr) -> pl.Expr:
    return pl.format("{}%", (expr * 100).round(0).cast(pl.Int64))


def month(expr: pl.Expr) -> pl.Expr:
    return expr.dt.strftime("%Y-%m")


def name_of(expr: pl.Expr, names: dict[str, str]) -> pl.Expr:
    return expr.replace_strict(names, default=expr, return_dtype=pl.String)


def evidence_json(*cols: str) -> pl.Expr:
    """Evidence JSON from named columns (numbers rounded to 4 significant places by the encoder)."""
    return pl.struct([pl.col(c) for c in cols]).struct.json_encode()


def reporter_partner(exporter: str = "exporter", importer: str = "importer") -> list[pl.Expr]:
    """`reporter` and `partner` of the book the series was read from (`side`: the importer's M or
    the exporter's X), so an analyst can find the figure in that country's statistics."""
    from_m = pl.col("side") == "M"
    return [pl.when(from_m).then(pl.col(importer)).otherwise(pl.col(exporter)).alias("reporter"),
            pl.when(from_m).then(pl.col(exporter)).otherwise(pl.col(importer)).alias("partner")]
