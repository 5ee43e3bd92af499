#!/usr/bin/env bash
# ModelGate metering benchmark: the usage spool's drain rate after a control-plane outage.
#   1. builds modelgate + modelgate-bench (release); creates a fresh Postgres database,
#   2. starts the mock upstream, `modelgate control-plane` (Postgres) and `modelgate data-plane`,
#   3. provisions a team, key, provider, price and route (admin API),
#   4. stops the control plane and sends $RATE requests/s for $OUTAGE through the data plane,
#   5. restarts the control plane and times the spool's drain to zero (data plane /metrics),
#   6. checks rows stored = requests answered, and prints the figures.
# Then it runs the two micro-benchmarks: ingest throughput and spool append cost.
#
# Usage: bench/drain.sh        Knobs: OUTAGE [300s]  RATE [500]  PG_URL [postgres://postgres@127.0.0.1:5432/test]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$TARGET_DIR/release/modelgate-bench"
GATEWAY="$TARGET_DIR/release/modelgate"
OUTAGE="${OUTAGE:-300s}"; RATE="${RATE:-500}"
PG_URL="${PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
MOCK="127.0.0.1:18180"; ADMIN="127.0.0.1:18191"; GRPC="127.0.0.1:18192"; DP="127.0.0.1:18193"; DP_METRICS="127.0.0.1:18194"
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

log() { echo "[drain.sh $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelgate-drain.XXXXXX")"
PIDS=()
DB="mg_drain_$(date +%s)"
cleanup() {
  local rc=$?
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  [ "$rc" = 0 ] && rm -rf "$WORK" || log "logs kept in $WORK"
}
trap cleanup EXIT

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building (release)"
  cargo build --release -q -p modelgate -p modelgate-bench
fi
psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null || die "cannot create a database on $PG_URL"
DB_URL="${PG_URL%/*}/$DB"
MASTER_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

"$BENCH" mock-upstream --listen "$MOCK" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)

# The planes talk mutual TLS: a throwaway fleet CA and certificates.
CERTS="$WORK/certs"
"$GATEWAY" certs init --dir "$CERTS" >/dev/null || die "certs init failed"
"$GATEWAY" certs issue --dir "$CERTS" --control-plane --ip "${GRPC%:*}" >/dev/null || die "certs issue failed"
"$GATEWAY" certs issue --dir "$CERTS" --node-id drain-dp >/dev/null || die "certs issue failed"
start_cp() {
  MODELGATE_MASTER_KEY="$MASTER_KEY" "$GATEWAY" control-plane --database-url "$DB_URL" \
    --admin-listen "$ADMIN" --grpc-listen "$GRPC" \
    --tls-ca "$CERTS/ca.pem" --tls-cert "$CERTS/control-plane.pem" --tls-key "$CERTS/control-plane-key.pem" \
    >>"$WORK/cp.log" 2>>"$WORK/cp-stderr.log" &
  CP_PID=$!; PIDS+=("$CP_PID")
  for _ in $(seq 1 100); do curl -sf "http://$ADMIN/healthz" >/dev/null && return 0; sleep 0.1; done
  die "the control plane did not start"
}
start_cp
TOKEN="$(sed -n 's/^MODELGATE_ADMIN_TOKEN=//p' "$WORK/cp.log" | head -n1)"
[ -n "$TOKEN" ] || die "no bootstrap admin token printed"
post() { curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  --data-binary "$2" "http://$ADMIN/admin/v1$1" || die "POST $1 failed"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
TEAM="$(post /teams '{"name":"bench"}' | field id)"
KEY="$(post /keys "{\"team_id\":\"$TEAM\",\"name\":\"drain\",\"environment\":\"prod\"}" | field key_secret)"
PROV="$(post /providers "{\"name\":\"mock\",\"kind\":\"openai-compatible\",\"base_url\":\"http://$MOCK/v1\",\"credential\":\"sk-bench\"}" | field id)"
post /models '{"model":"gpt-4o-mini","input_micros_per_mtok":150000,"output_micros_per_mtok":600000}' >/dev/null
post /routes "{\"alias\":\"gpt-4o-mini\",\"deployments\":[{\"provider_id\":\"$PROV\",\"model\":\"gpt-4o-mini\"}]}" >/dev/null

MODELGATE_LKG_KEY="$MASTER_KEY" "$GATEWAY" data-plane --listen "$DP" --metrics-listen "$DP_METRICS" --control-plane-url "https://$GRPC" --node-id drain-dp \
  --tls-ca "$CERTS/ca.pem" --tls-cert "$CERTS/drain-dp.pem" --tls-key "$CERTS/drain-dp-key.pem" \
  --data-dir "$WORK/dp" >"$WORK/dp.log" 2>"$WORK/dp-stderr.log" &
PIDS+=($!)
BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
for _ in $(seq 1 100); do
  code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$BODY" "http://$DP/v1/chat/completions" || true)"
  [ "$code" = 200 ] && break; sleep 0.1
done
[ "$code" = 200 ] || die "the data plane never served the route"
metric() { curl -sf "http://$DP_METRICS/metrics" | sed -n "s/^$1 //p"; }

log "stopping the control plane; sending $RATE requests/s for $OUTAGE"
kill "$CP_PID"; wait "$CP_PID" 2>/dev/null || true
"$BENCH" load --url "http://$DP/v1/chat/completions" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' --body "$BODY" --rate "$RATE" --concurrency 64 \
  --duration "$OUTAGE" --warmup 0s | tee "$WORK/load.txt"
BACKLOG="$(metric modelgate_usage_spool_backlog_bytes)"
log "backlog after the outage: $BACKLOG bytes; restarting the control plane"

T0="$(date +%s.%N)"
start_cp
# The shipper retries with capped backoff (<= 7.5 s): time the drain from its first progress.
while [ "$(metric modelgate_usage_spool_backlog_bytes)" = "$BACKLOG" ]; do sleep 0.02; done
TF="$(date +%s.%N)"
while [ "$(metric modelgate_usage_spool_backlog_bytes)" != 0 ]; do sleep 0.02; done
T1="$(date +%s.%N)"
ROWS="$(psql "$DB_URL" -tAc "SELECT count(*) FROM usage_events WHERE key_id <> ''")"
DUPS="$(psql "$DB_URL" -tAc "SELECT count(*) - count(DISTINCT request_id) FROM usage_events")"
ANSWERED="$(sed -n 's/.* ok=\([0-9]*\) err=\([0-9]*\).*/\1 \2/p' "$WORK/load.txt" | awk '{print $1 + $2}')"
python3 - "$T0" "$TF" "$T1" "$BACKLOG" "$ROWS" "$DUPS" "$ANSWERED" <<'PY'
import sys
t0, tf, t1 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
backlog, rows, dups, answered = (int(x) for x in sys.argv[4:8])
drain = t1 - tf
print(f"drain: {answered} requests answered during the outage, {backlog/1e6:.1f} MB spooled; "
      f"first batch acknowledged {tf - t0:.2f} s after the control plane was started, spool empty "
      f"{drain:.2f} s later: {answered/drain:.0f} events/s ({backlog/1e6/drain:.1f} MB/s); "
      f"{rows} usage rows stored in all (incl. the probe requests), {dups} duplicate request ids")
PY

log "micro-benchmarks"
"$BENCH" ingest --database-url "$PG_URL" --batch 1000 --streams 1 --events 100000
"$BENCH" ingest --database-url "$PG_URL" --batch 1000 --streams 4 --events 200000
"$BENCH" ingest --database-url "$PG_URL" --batch 100 --streams 4 --events 100000
"$BENCH" spool --fsync interval:10ms
"$BENCH" spool --fsync always --events 100000
"$BENCH" spool --fsync never
