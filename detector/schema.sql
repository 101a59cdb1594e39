-- Warehouse schema, version 5 (SCHEMA_VERSION in warehouse.py, where the migrations live). The public
-- tables (flows, declarations, rejects, loads, watchlist, controls, countries, alerts, runs) keep their
-- names and columns across versions: users, scripts and BI tools read them directly.
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
    description VARCHAR, note VARCHAR,
    basket BOOLEAN   -- the code mixes products of very different prices (its unit value follows the mix)
);
-- Controlled code -> the uncontrolled code goods are misdeclared under (code_shift detector).
CREATE TABLE IF NOT EXISTS code_shift_pairs (from_code VARCHAR NOT NULL, to_code VARCHAR NOT NULL, note VARCHAR);
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
    lead_id     VARCHAR,   -- alerts telling one story (corridor, consecutive months) share a lead
    lead_rank   INTEGER,   -- rank of the lead in its run (1 = most suspicious)
    lead_score  DOUBLE     -- 1 - prod(1 - best score of each evidence family in the lead)
);

-- Lifecycle of the leads of a monthly run (detector monthly): for month `period`, each lead flagged
-- that month is 'new' (its corridor was not flagged the month before) or 'continuing', and each lead
-- of the month before that is not flagged any more is 'closed'. Written with the run's alerts.
CREATE TABLE IF NOT EXISTS lead_status (
    period      DATE    NOT NULL,  -- the month of the monthly run
    lead_id     VARCHAR NOT NULL,  -- alerts.lead_id (of `period`, or of the month before for 'closed')
    status      VARCHAR NOT NULL,  -- new | continuing | closed
    first_seen  DATE    NOT NULL,  -- first month of the corridor's unbroken run of flagged months
    last_seen   DATE    NOT NULL,  -- last flagged month (`period`, or the month before for 'closed')
    commodity   VARCHAR,           -- watchlist commodity, else the HS6 code
    shipper     VARCHAR,           -- the country goods were shipped from (via, else origin, else partner)
    destination VARCHAR,
    lead_score  DOUBLE,
    severity    VARCHAR,
    run_id      VARCHAR NOT NULL,
    PRIMARY KEY (period, lead_id)
);

-- Which source wins when several cover the same reporter, flow and month (declared with each source in
-- detector/ingest/sources.py, refreshed on every load; lower rank wins, '*' = any source not declared).
CREATE TABLE IF NOT EXISTS source_precedence (source VARCHAR PRIMARY KEY, rank INTEGER NOT NULL);

-- Which sources cover which reporter, flow and month: what the source choice (views.sql) picks from.
CREATE OR REPLACE VIEW flow_coverage AS SELECT DISTINCT source, reporter, flow, period, freq FROM flows;

-- Per-line risk of the declarations, written by the declaration_risk detector with its alerts.
CREATE TABLE IF NOT EXISTS declaration_scores (
    source VARCHAR NOT NULL, declaration_id VARCHAR NOT NULL, period DATE NOT NULL, score DOUBLE NOT NULL,
    rank BIGINT NOT NULL, reasons VARCHAR, run_id VARCHAR NOT NULL
);

-- Analysts' verdicts on leads (detector review), append-only: a verdict is never updated or deleted,
-- a later one on the same lead supersedes it. A verdict names its lead by id and by corridor and
-- episode as they stood (commodity, shipper, destination, first_seen..last_seen), so that it still
-- finds its lead after a rerun or a revision. Never touched by runs.
CREATE TABLE IF NOT EXISTS verdicts (
    verdict_id  VARCHAR NOT NULL,   -- unique per recorded verdict
    lead_id     VARCHAR NOT NULL,   -- alerts.lead_id when the verdict was given
    verdict     VARCHAR NOT NULL,   -- confirmed | dismissed | watch
    note        VARCHAR NOT NULL,   -- why
    reviewed_by VARCHAR NOT NULL,   -- who
    reviewed_at TIMESTAMP NOT NULL, -- when (UTC)
    until       DATE,               -- dismissed or watch: lasts to the end of this month (NULL: no end)
    run_id      VARCHAR,            -- the run whose alerts showed the lead
    lead_score  DOUBLE,             -- the lead's score at the time
    commodity   VARCHAR,            -- the lead's corridor: watchlist commodity, else the HS6 code
    shipper     VARCHAR,
    destination VARCHAR,
    first_seen  DATE,               -- the episode as it stood
    last_seen   DATE,
    detectors   VARCHAR,            -- comma-separated detectors that had fired on it
    families    VARCHAR             -- comma-separated evidence families among them
);
