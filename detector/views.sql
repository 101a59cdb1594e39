-- Views over `flows` shared by the warehouse and by a run's partitions. A partition holds a part of
-- the flows and the run's source choice (made over all codes) as tables named flows and
-- source_choice, and creates flows_hs6 and flows_preferred only. Executed after schema.sql.

-- Flows at HS6: national 8/10-digit lines summed to their 6-digit heading. Where a source gives both a
-- code and its subdivisions (a Census HS6 total next to its HS10 lines), only the least detailed level
-- is summed, so nothing counts twice. Weight is summed only when every line has one.
CREATE OR REPLACE VIEW flows_hs6 AS
WITH national AS (   -- 8/10-digit lines whose 6-digit code the same source does not give for the same flow
    SELECT n.*, substr(n.hs_code, 1, 6) AS hs6
    FROM flows n
    WHERE length(n.hs_code) > 6
      AND NOT EXISTS (SELECT 1 FROM flows s
                      WHERE s.hs_code = substr(n.hs_code, 1, 6) AND s.source = n.source AND s.period = n.period
                        AND s.freq = n.freq AND s.reporter = n.reporter AND s.partner = n.partner
                        AND s.partner2 IS NOT DISTINCT FROM n.partner2 AND s.flow = n.flow)
),
levelled AS (
    SELECT *, min(length(hs_code)) OVER (PARTITION BY source, period, freq, reporter, partner, partner2, flow,
                                                      hs6) AS top_level
    FROM national
)
-- 6-digit rows are one per key already: they pass as they are
SELECT source, period, freq, reporter, partner, partner2, flow, hs_code, hs_revision, value_usd, net_weight_kg,
       CAST(1 AS BIGINT) AS lines
FROM flows
WHERE length(hs_code) = 6
UNION ALL
SELECT source, period, freq, reporter, partner, partner2, flow, hs6 AS hs_code,
       min(hs_revision) AS hs_revision,
       sum(value_usd) AS value_usd,
       CASE WHEN count(net_weight_kg) = count(*) THEN sum(net_weight_kg) END AS net_weight_kg,
       count(*) AS lines
FROM levelled
WHERE length(hs_code) = top_level
GROUP BY source, period, freq, reporter, partner, partner2, flow, hs6;

-- One source per reporter, flow, month (and frequency): the best-ranked source with any row for it,
-- so that two sources never add up for the same (reporter, partner, flow, hs6, period).
CREATE OR REPLACE VIEW source_choice AS
WITH ranked AS (
    SELECT c.*, row_number() OVER (
               PARTITION BY c.reporter, c.flow, c.period, c.freq
               ORDER BY coalesce(p.rank, d.rank, 1000), c.source) AS pick
    FROM flow_coverage c
    LEFT JOIN source_precedence p ON p.source = c.source
    LEFT JOIN source_precedence d ON d.source = '*'
)
SELECT source, reporter, flow, period, freq FROM ranked WHERE pick = 1;

-- The flows the baselines read: HS6, from the chosen source of each reporter, flow and month.
CREATE OR REPLACE VIEW flows_preferred AS
SELECT h.*
FROM flows_hs6 h
JOIN source_choice USING (source, reporter, flow, period, freq);
