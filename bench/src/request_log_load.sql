-- Synthetic usage rows for the request-log benchmark (`modelgate-bench request-log`): :rows
-- requests over the 30 days before :end_ms, from 50 teams, 2,000 keys, 500 users, 20
-- applications, 20 model aliases and 6 providers; 95 % succeed, 2 % are rate limited, 1.5 %
-- provider errors, 1 % bad requests, 0.5 % timeouts; 1 % fell back, 40 % streamed; latency and
-- cost with long tails. Ids are shaped like UUIDv7s (the start time's 48 bits first, hyphenated
-- as in a real id), so they sort by time and fall into the ledger's weekly partitions. Seeded,
-- so every load is the same.
SELECT setseed(0.42);
INSERT INTO usage_events (
  id, seq, schema_version, request_id, started_at_ms, first_byte_at_ms, ended_at_ms, node_id,
  region, key_id, team_id, user_id, application, environment, endpoint, requested_model,
  provider_id, served_model, deployment_id, attempts, status, error_class, error_message,
  latency_us, ttfb_us, input_tokens, output_tokens, cost_micros, price_version, streamed,
  estimated, fallback_used, traffic_class, cost_flag, ingested_at)
SELECT
  substr(lpad(to_hex(t), 12, '0'), 1, 8) || '-' || substr(lpad(to_hex(t), 12, '0'), 9, 4)
    || '-7000-8000-' || lpad(to_hex(g), 12, '0'),
  g, 2,
  substr(lpad(to_hex(t), 12, '0'), 1, 8) || '-' || substr(lpad(to_hex(t), 12, '0'), 9, 4)
    || '-7000-9000-' || lpad(to_hex(g), 12, '0'),
  t, t + lat / 4000, t + lat / 1000,
  'node-' || (g % 8), 'eu',
  'key-' || k, 'team-' || (k % 50), 'user-' || (k % 500), 'app-' || (k % 20),
  CASE WHEN k % 10 < 7 THEN 'prod' WHEN k % 10 < 9 THEN 'staging' ELSE 'dev' END,
  CASE WHEN g % 5 = 0 THEN 'messages' ELSE 'chat.completions' END,
  'model-' || m, CASE WHEN err = 'rate_limited' THEN '' ELSE 'prov-' || (m % 6) END,
  'served-' || m, 'prov-' || (m % 6) || '/served-' || m,
  CASE WHEN err = 'rate_limited' THEN '[]'
       ELSE '[{"deployment_id":"prov-' || (m % 6) || '/served-' || m || '","provider_id":"prov-'
            || (m % 6) || '","model":"served-' || m || '","status":' || st
            || ',"latency_us":' || lat || '}]' END,
  st, err, CASE WHEN err IS NULL THEN '' ELSE err || ' (synthetic)' END,
  lat, lat / 4, 200 + (g % 3000), CASE WHEN err IS NULL THEN 50 + (g % 900) ELSE 0 END,
  CASE WHEN err IS NULL THEN (r2 * r2 * r2 * 20000)::bigint ELSE 0 END,
  1, g % 5 < 2, false, fb, 'interactive', '', now()
FROM (
  SELECT g, t, k, m, r2, fb, lat,
    CASE WHEN e < 0.02 THEN 429 WHEN e < 0.035 THEN 502 WHEN e < 0.045 THEN 400
         WHEN e < 0.05 THEN 504 ELSE 200 END AS st,
    CASE WHEN e < 0.02 THEN 'rate_limited' WHEN e < 0.035 THEN 'provider_error'
         WHEN e < 0.045 THEN 'bad_request' WHEN e < 0.05 THEN 'timeout' END AS err
  FROM (
    SELECT g,
      :end_ms - 2592000000 + (g * 2592000000 / :rows) AS t,
      (random() * 1999)::int AS k,
      -- A few aliases take most of the traffic.
      (power(random(), 2) * 19)::int AS m,
      random() AS e,
      random() AS r2,
      random() < 0.01 AS fb,
      (20000 + power(random(), 4) * 30000000)::bigint AS lat
    FROM generate_series(1, :rows) AS g
  ) AS raw
) AS shaped;
