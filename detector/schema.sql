-- Warehouse schema, version 1. Public contract: see SPEC.md (flows, declarations, rejects, loads,
-- watchlist, controls, countries, alerts, runs). Migrations live in warehouse.py.
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS flows (
    source        VARCHAR NOT NULL,
    period        DATE    NOT NULL,
    freq          VARCHAR NOT NULL,
    reporter      VARCHAR NOT NULL,
    partner       VARCHAR NOT NULL,
    partner2      VARCHAR,
    flow          VARCHAR NOT NULL,
    hs_code       VARCHAR NOT NULL,
    hs_revision   VARCHAR,
    value_usd     DOUBLE,
    net_weight_kg DOUBLE,
    quantity      DOUBLE,
    quantity_unit VARCHAR,
    load_id       VARCHAR NOT NULL
);

-- Which reporter published which flow for which month (from every row of a file, aggregates
-- included), so that "no row" can be told apart from "did not report".
CREATE TABLE IF NOT EXISTS reporting (
    source   VARCHAR NOT NULL,
    reporter VARCHAR NOT NULL,
    flow     VARCHAR NOT NULL,
    period   DATE    NOT NULL,
    freq     VARCHAR NOT NULL,
    load_id  VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS declarations (
    source           VARCHAR NOT NULL,
    declaration_id   VARCHAR NOT NULL,
    date             DATE    NOT NULL,
    period           DATE    NOT NULL,
    declarant_id     VARCHAR,
    importer_id      VARCHAR,
    exporter_id      VARCHAR,
    origin           VARCHAR,
    consignment      VARCHAR,
    hs_code          VARCHAR NOT NULL,
    description      VARCHAR,
    value_usd        DOUBLE,
    net_weight_kg    DOUBLE,
    quantity         DOUBLE,
    port             VARCHAR,
    mode             VARCHAR,
    extra            VARCHAR,   -- JSON of source-specific fields (tax rate, regime, ...)
    label            INTEGER,   -- inspection result where known (1 = fraud), else NULL
    load_id          VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS rejects (
    load_id  VARCHAR NOT NULL,
    file     VARCHAR NOT NULL,
    line     BIGINT,
    raw      VARCHAR,
    reason   VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS loads (
    load_id       VARCHAR PRIMARY KEY,
    source        VARCHAR NOT NULL,
    file          VARCHAR NOT NULL,
    content_hash  VARCHAR NOT NULL,
    rows_read     BIGINT  NOT NULL,
    rows_loaded   BIGINT  NOT NULL,
    rows_replaced BIGINT  NOT NULL,
    rows_rejected BIGINT  NOT NULL,
    loaded_at     TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS countries (
    iso3 VARCHAR PRIMARY KEY, iso2 VARCHAR, m49 INTEGER, comtrade_code INTEGER, name VARCHAR,
    census_code INTEGER
);
-- Comtrade partner codes that are not countries (World, areas nes, free zones, ...).
CREATE TABLE IF NOT EXISTS comtrade_areas (comtrade_code INTEGER PRIMARY KEY, name VARCHAR, kind VARCHAR);
CREATE TABLE IF NOT EXISTS watchlist (
    hs_prefix VARCHAR NOT NULL, commodity VARCHAR NOT NULL, controlling_country VARCHAR,
    description VARCHAR, note VARCHAR
);
CREATE TABLE IF NOT EXISTS controls (
    date DATE NOT NULL, country VARCHAR NOT NULL, instrument VARCHAR, commodities VARCHAR,
    targets VARCHAR, kind VARCHAR NOT NULL, until DATE, note VARCHAR
);

CREATE TABLE IF NOT EXISTS runs (
    run_id      VARCHAR PRIMARY KEY,
    started     TIMESTAMP NOT NULL,
    finished    TIMESTAMP,
    window_from DATE,
    window_to   DATE,
    settings    VARCHAR,
    detectors   VARCHAR,   -- JSON {name: version}
    row_counts  VARCHAR,   -- JSON {name: alerts written}
    status      VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS alerts (
    alert_id    VARCHAR PRIMARY KEY,
    run_id      VARCHAR NOT NULL,
    detector    VARCHAR NOT NULL,
    period      DATE    NOT NULL,
    hs_code     VARCHAR NOT NULL,
    commodity   VARCHAR,
    origin      VARCHAR,
    via         VARCHAR,
    destination VARCHAR,
    reporter    VARCHAR,
    partner     VARCHAR,
    score       DOUBLE  NOT NULL,
    severity    VARCHAR NOT NULL,
    observed    DOUBLE,
    expected    DOUBLE,
    evidence    VARCHAR,
    explanation VARCHAR NOT NULL,
    lead_id     VARCHAR,   -- alerts on the same corridor-month share a lead
    lead_rank   INTEGER    -- rank of the lead in its period's list (1 = most suspicious)
);
