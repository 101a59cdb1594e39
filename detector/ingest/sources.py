"""The trade sources, each declared once: its name, how a file of it is recognised from its header,
how it loads, its loader's options, and which source wins where two cover the same figures.

The `detector ingest` commands, the monthly inbox (which source a file is, and loading it), the
`source_precedence` table and `detector.load` all read `SOURCES`: a new source is its loader
module and one entry here. This module imports no loader until a file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from detector.errors import DetectorError

# Where sources overlap (view flows_preferred), the lower rank wins: national monthly statistics
# first, then UN Comtrade, then BACI (annual, reconciled); any source not declared here (a national
# extract loaded through a mapping, named by its mapping) ranks OTHER_PRECEDENCE. Ties go to the
# alphabetically first source.
OTHER_PRECEDENCE = 15


@dataclass(frozen=True)
class Option:
    """A loader's optional input file, given on the command line as `flag`."""

    flag: str
    keyword: str  # the loader's argument
    help: str
    required: bool = False


@dataclass(frozen=True)
class Source:
    name: str
    title: str  # as a user knows it
    description: str  # one line: the `detector ingest NAME` help
    loader: str  # "module:function", called as function(wh, paths, **options)
    # Lower-case column names, any one set of which marks a file of this source (none: a file is
    # only loaded when the user names the source).
    headers: tuple[frozenset[str], ...] = ()
    # Files read beside a data file (not loaded by themselves), by header, with what they are.
    companions: tuple[tuple[frozenset[str], str], ...] = ()
    options: tuple[Option, ...] = ()
    precedence: int | None = None

    def recognises(self, columns: set[str]) -> bool:
        return any(names <= columns for names in self.headers)

    def load(self, wh, paths, **options) -> list:
        """Load the files (each whole or not at all; see detector.ingest.batch); one LoadSummary per file."""
        unknown = set(options) - {o.keyword for o in self.options}
        if unknown:
            raise DetectorError(f"source {self.name}: no option {', '.join(sorted(unknown))}; "
                                f"it takes {', '.join(o.keyword for o in self.options) or 'none'}")
        module, function = self.loader.split(":")
        return getattr(import_module(module), function)(wh, [*paths], **options)


SOURCES: tuple[Source, ...] = (
    Source("comtrade", "UN Comtrade", "Load UN Comtrade CSV files (plain or .gz).",
           "detector.ingest.comtrade:load_comtrade",
           headers=(frozenset({"cmdcode", "flowcode"}),), precedence=20),
    Source("baci", "CEPII BACI", "Load CEPII BACI annual files (t,i,j,k,v,q).",
           "detector.ingest.baci:load_baci",
           headers=(frozenset({"t", "i", "j", "k", "v"}),),
           companions=((frozenset({"country_code", "country_iso3"}),
                        "BACI country codes (read with the BACI file beside it)"),),
           options=(Option("--country-codes", "country_codes",
                           "BACI country_codes_V*.csv (default: the one next to the data file, else built in)."),),
           precedence=30),
    Source("census", "US Census", "Load US Census international-trade API responses (JSON or CSV, imports or "
           "exports).", "detector.ingest.census:load_census",
           headers=(frozenset({"i_commodity", "cty_code"}), frozenset({"e_commodity", "cty_code"})),
           precedence=10),
    Source("comext", "Eurostat Comext", "Load Eurostat Comext monthly bulk files (values converted from EUR to USD).",
           "detector.ingest.comext:load_comext",
           headers=(frozenset({"product_nc", "period", "flow"}),),
           options=(Option("--rates", "rates",
                           "Monthly EUR/USD rates CSV (month,usd_per_eur) overriding the shipped table."),),
           precedence=10),
    Source("flows", "a mapped trade table", "Load any trade-flow table (CSV or Parquet) through a column mapping.",
           "detector.ingest.mapped:load_mapped",
           options=(Option("--mapping", "mapping_path",
                           "TOML mapping of the table's columns, codes and units onto flows.", required=True),)),
)


def get(name: str) -> Source:
    """The source of this name; an unknown name is refused with the names there are."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise DetectorError(f"unknown source '{name}': choose {', '.join(s.name for s in SOURCES)}")


def recognise(columns: list[str]) -> tuple[str, str]:
    """What a file with these column names is: (source name, ""), ("companion", what it is) for a
    file read beside a data file, or ("unknown", why) naming the formats there are."""
    names = {c.strip().lower() for c in columns}
    for source in SOURCES:
        if source.recognises(names):
            return source.name, ""
    for source in SOURCES:
        for header, what in source.companions:
            if header <= names:
                return "companion", what
    shown = ", ".join(columns[:6]) + (", ..." if len(columns) > 6 else "")
    return "unknown", f"columns not recognised ({shown or 'no header'}); known formats: {inbox_titles()}"


def inbox_titles() -> str:
    """The sources a file is recognised as, by title: 'UN Comtrade, CEPII BACI, ...'."""
    return ", ".join(s.title for s in SOURCES if s.headers)


def precedence() -> list[tuple[str, int]]:
    """(source, rank) rows of the `source_precedence` table; '*' ranks every other source."""
    return [(s.name, s.precedence) for s in SOURCES if s.precedence is not None] + [("*", OTHER_PRECEDENCE)]
