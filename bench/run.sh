#!/usr/bin/env bash
# ModelGate data-plane benchmark, one run on this machine, loopback only:
#   1. builds modelgate + modelgate-bench (release),
#   2. starts the mock OpenAI upstream (modelgate-bench mock-upstream) on $MOCK_LISTEN,
#   3. starts `modelgate up` with a fresh data dir and reads the printed MODELGATE_* variables,
#   4. registers the mock as a provider, a price and a route for gpt-4o-mini (admin API),
#   5. runs `modelgate-bench compare`: direct vs gateway, closed loop, fixed rate, streaming,
#   6. stops everything it started (by PID) on exit.
#
# Usage (from anywhere):  bench/run.sh
# Knobs (defaults in brackets):
#   DUR [10s]  WARM [2s]  CONC [32]  RATE [200; comma list, e.g. 200,2000]  RATE_CONC [64]
#   STREAM_CONC [8; 0 = no streaming phase]  REPS [1]
#   MOCK_LISTEN [127.0.0.1:18080]  GW_LISTEN [127.0.0.1:18090]  ADMIN_LISTEN [127.0.0.1:18091]
#   GRPC_LISTEN [127.0.0.1:18092]  DP_LISTEN [127.0.0.1:18093]  metrics: UP_METRICS_LISTEN
#   [127.0.0.1:18094]  DP_METRICS_LISTEN [127.0.0.1:18095]  SKIP_BUILD [0]  KEEP_WORK [0: delete the temp dir on success]
#   HOLD [0; 1 = keep mock + gateway running after the comparison until Ctrl-C]
#   SLOWLORIS [0; 1 = instead of the comparison, run `modelgate-bench slowloris`: $RATE rps of
#     normal clients for $DUR alone, then while SLOW_CONNS [1000] connections drip a request head]
#   PEERS [0; 1 = afterwards also run ../shared/bench-peers/run_all.sh against this gateway]
#   PEER_TARGETS ["direct nginx-proxy"; add "litellm portkey" for the slow peers]
#   ROUTE_POLICY [{}; the route's policy JSON, e.g. '{"cache":{"enabled":true}}']
#   DP_ARGS [""; extra flags of the measured data plane, e.g. "--cache-redis-url redis://..."]
#   OTLP [0; 1 = start `modelgate-bench otlp-sink` on OTLP_LISTEN [127.0.0.1:18096] and export the
#     data plane's trace spans to it (--otlp-endpoint)]
#   GW_HEADER [""; one extra header on every gateway request, e.g. "traceparent: 00-…-01"]
#   REDIS_PROXY [""; host:port: start `setsid socat` there forwarding to REDIS_ADDR [127.0.0.1:6379]
#     (its pid is its process group, exported as REDIS_PROXY_PGID, so a script can cut it)]
#   CACHE_COMPARE [0; 1 = the "direct" side is the gateway itself with `x-modelgate-cache:
#     bypass` (a pass-through), the "gateway" side the same requests answered from the cache]
#   AFTER [""; a command run after the comparison with BASE_URL, API_KEY, DP_METRICS_URL,
#     MOCK_LISTEN, REDIS_PROXY, REDIS_ADDR, REDIS_PROXY_PGID exported]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$TARGET_DIR/release/modelgate-bench"
GATEWAY="$TARGET_DIR/release/modelgate"

DUR="${DUR:-10s}"; WARM="${WARM:-2s}"; CONC="${CONC:-32}"; RATE="${RATE:-200}"
ROUTE_POLICY="${ROUTE_POLICY:-}"; [ -n "$ROUTE_POLICY" ] || ROUTE_POLICY='{}'
RATE_CONC="${RATE_CONC:-64}"; STREAM_CONC="${STREAM_CONC:-8}"; REPS="${REPS:-1}"
MOCK_LISTEN="${MOCK_LISTEN:-127.0.0.1:18080}"
GW_LISTEN="${GW_LISTEN:-127.0.0.1:18090}"
ADMIN_LISTEN="${ADMIN_LISTEN:-127.0.0.1:18091}"
GRPC_LISTEN="${GRPC_LISTEN:-127.0.0.1:18092}"
DP_LISTEN="${DP_LISTEN:-127.0.0.1:18093}"
UP_METRICS_LISTEN="${UP_METRICS_LISTEN:-127.0.0.1:18094}"
DP_METRICS_LISTEN="${DP_METRICS_LISTEN:-127.0.0.1:18095}"
PEER_DIR="../shared/bench-peers"   # relative to the repo root (we cd'ed there)
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"

log() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Request bodies: the peer benchmark's, so figures are comparable with its tables; else ours.
if [ -f "$PEER_DIR/conf/chat_request.json" ] && [ -f "$PEER_DIR/conf/chat_request_stream.json" ]; then
  BODY="$PEER_DIR/conf/chat_request.json"; STREAM_BODY="$PEER_DIR/conf/chat_request_stream.json"
else
  BODY="bench/chat_request.json"; STREAM_BODY="bench/chat_request_stream.json"
fi

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
WORK="$(mktemp -d "${TMPDIR:-/tmp}/modelgate-bench.XXXXXX")"
stop_pid() { # pid: TERM, up to 5 s, then KILL
  local pid="$1" _
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? pid
  trap - EXIT
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do stop_pid "$pid"; done
  if [ "$rc" != 0 ]; then
    for f in "$WORK"/*.log; do
      [ -s "$f" ] || continue
      echo "---- last lines of $f" >&2; tail -n 20 "$f" >&2
    done
    log "failed (exit $rc); logs kept in $WORK"
  elif [ "${KEEP_WORK:-0}" = 1 ]; then
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
wait_for_line() { # file regex seconds pid
  local i
  for i in $(seq 1 $(( $3 * 10 ))); do
    grep -Eq "$2" "$1" 2>/dev/null && return 0
    kill -0 "$4" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
var_from() { # file NAME -> value of the last `NAME=value` line (tolerates `export ` and quotes)
  sed -n -E "s/^[[:space:]]*(export[[:space:]]+)?$2=//p" "$1" | tail -n 1 | tr -d "\r\"'"
}

# ---------------------------------------------------------------- build
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building modelgate and modelgate-bench (release)"
  cargo build --release -p modelgate -p modelgate-bench
fi
[ -x "$BENCH" ] || die "$BENCH not found (build failed?)"
[ -x "$GATEWAY" ] || die "$GATEWAY not found (build failed?)"

for addr in "$MOCK_LISTEN" "$GW_LISTEN" "$ADMIN_LISTEN" "$GRPC_LISTEN" "$DP_LISTEN" "$UP_METRICS_LISTEN" "$DP_METRICS_LISTEN"; do
  port_busy "$addr" && die "$addr is already in use; stop what is listening there or set the *_LISTEN knobs"
done

# ---------------------------------------------------------------- redis proxy (optional)
REDIS_ADDR="${REDIS_ADDR:-127.0.0.1:6379}"
REDIS_PROXY_PGID=""
if [ -n "${REDIS_PROXY:-}" ]; then
  command -v socat >/dev/null || die "REDIS_PROXY needs socat"
  setsid socat "TCP-LISTEN:${REDIS_PROXY##*:},bind=${REDIS_PROXY%:*},fork,reuseaddr" "TCP:$REDIS_ADDR" \
    >"$WORK/redis-proxy.log" 2>&1 &
  REDIS_PROXY_PGID=$!; PIDS+=("$REDIS_PROXY_PGID")
  log "redis proxy (socat) pid $REDIS_PROXY_PGID on $REDIS_PROXY -> $REDIS_ADDR"
fi

# ---------------------------------------------------------------- mock upstream
"$BENCH" mock-upstream --listen "$MOCK_LISTEN" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!; PIDS+=("$MOCK_PID")
wait_for_line "$WORK/mock.log" '^listening on ' 10 "$MOCK_PID" || die "mock upstream did not start"
log "mock upstream pid $MOCK_PID on $MOCK_LISTEN"

# ---------------------------------------------------------------- OTLP receiver (optional)
if [ "${OTLP:-0}" = 1 ]; then
  OTLP_LISTEN="${OTLP_LISTEN:-127.0.0.1:18096}"
  "$BENCH" otlp-sink --listen "$OTLP_LISTEN" >"$WORK/otlp.log" 2>&1 &
  OTLP_PID=$!; PIDS+=("$OTLP_PID")
  wait_for_line "$WORK/otlp.log" '^listening on ' 10 "$OTLP_PID" || die "otlp sink did not start"
  DP_ARGS="${DP_ARGS:-} --otlp-endpoint http://$OTLP_LISTEN"
  log "otlp sink pid $OTLP_PID on $OTLP_LISTEN"
fi

# ---------------------------------------------------------------- gateway
"$GATEWAY" up --data-dir "$WORK/data" --listen "$GW_LISTEN" --admin-listen "$ADMIN_LISTEN" \
  --grpc-listen "$GRPC_LISTEN" --metrics-listen "$UP_METRICS_LISTEN" >"$WORK/gateway.log" 2>"$WORK/gateway-stderr.log" &
GW_PID=$!; PIDS+=("$GW_PID")
for v in MODELGATE_BASE_URL MODELGATE_API_KEY MODELGATE_ADMIN_URL MODELGATE_ADMIN_TOKEN; do
  wait_for_line "$WORK/gateway.log" "^[[:space:]]*(export[[:space:]]+)?$v=" 60 "$GW_PID" \
    || die "modelgate up did not print $v within 60 s"
done
BASE_URL="$(var_from "$WORK/gateway.log" MODELGATE_BASE_URL)"
API_KEY="$(var_from "$WORK/gateway.log" MODELGATE_API_KEY)"
ADMIN_URL="$(var_from "$WORK/gateway.log" MODELGATE_ADMIN_URL)"
ADMIN_TOKEN="$(var_from "$WORK/gateway.log" MODELGATE_ADMIN_TOKEN)"
BASE_URL="${BASE_URL%/}"; ADMIN_URL="${ADMIN_URL%/}"
GW_CHAT="$BASE_URL/chat/completions"
log "gateway pid $GW_PID: data plane $BASE_URL, admin $ADMIN_URL"

# ---------------------------------------------------------------- configuration (admin API)
admin_post() { # path json -> response body on stdout; fails on a non-2xx answer
  local out code
  out="$(curl -sS -m 10 -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    --data-binary "$2" -w $'\n%{http_code}' "$ADMIN_URL$1")" || die "POST $ADMIN_URL$1: curl failed"
  code="${out##*$'\n'}"; out="${out%$'\n'*}"
  [[ "$code" == 2?? ]] || die "POST $ADMIN_URL$1 -> HTTP $code: ${out:0:500}"
  printf '%s' "$out"
}
json_id() { # response JSON -> its "id" as a JSON literal ("uuid" or number)
  if command -v python3 >/dev/null; then
    python3 -c '
import json, sys
d = json.load(sys.stdin)
if "id" not in d and isinstance(d.get("data"), dict):
    d = d["data"]
print(json.dumps(d["id"]))' <<<"$1"
  else
    grep -oE '"id"[[:space:]]*:[[:space:]]*("[^"]*"|[0-9]+)' <<<"$1" | head -n 1 | sed -E 's/^"id"[[:space:]]*:[[:space:]]*//'
  fi
}

PROVIDER_JSON="$(admin_post /admin/v1/providers \
  "{\"name\":\"bench-mock\",\"kind\":\"openai-compatible\",\"base_url\":\"http://$MOCK_LISTEN/v1\",\"credential\":\"sk-bench\"}")"
PROVIDER_ID="$(json_id "$PROVIDER_JSON")" || die "no id in the provider response: $PROVIDER_JSON"
[ -n "$PROVIDER_ID" ] || die "no id in the provider response: $PROVIDER_JSON"
admin_post /admin/v1/models '{"model":"gpt-4o-mini","input_micros_per_mtok":150000,"output_micros_per_mtok":600000}' >/dev/null
admin_post /admin/v1/routes \
  "{\"alias\":\"gpt-4o-mini\",\"deployments\":[{\"provider_id\":$PROVIDER_ID,\"model\":\"gpt-4o-mini\"}],\"policy\":$ROUTE_POLICY}" >/dev/null
log "registered provider $PROVIDER_ID, price and route for gpt-4o-mini; waiting for the config to reach the data plane"
sleep 1

# The measured target is a data plane in its own process, attached to up's control plane, so its
# CPU and RSS are the proxy's alone (its spool writes and usage shipping included; the control
# plane's ingest into SQLite, which runs in the 'up' process, excluded).
UP_PID="$GW_PID"
# It joins over mutual TLS with a node certificate from up's own fleet CA (in up's data directory).
CERTS="$WORK/data/certs"
"$GATEWAY" certs issue --dir "$CERTS" --node-id bench-dp --label region=bench >/dev/null \
  || die "could not issue the data plane's certificate from $CERTS"
MODELGATE_LKG_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  "$GATEWAY" data-plane --listen "$DP_LISTEN" --metrics-listen "$DP_METRICS_LISTEN" --control-plane-url "https://$GRPC_LISTEN" \
  --tls-ca "$CERTS/ca.pem" --tls-cert "$CERTS/bench-dp.pem" --tls-key "$CERTS/bench-dp-key.pem" \
  --node-id bench-dp --label region=bench --data-dir "$WORK/dp" ${DP_ARGS:-} >"$WORK/dp.log" 2>"$WORK/dp-stderr.log" &
GW_PID=$!; PIDS+=("$GW_PID")
wait_for_line "$WORK/dp.log" '^MODELGATE_BASE_URL=' 30 "$GW_PID" || die "the data plane did not start"
BASE_URL="$(var_from "$WORK/dp.log" MODELGATE_BASE_URL)"; BASE_URL="${BASE_URL%/}"
GW_CHAT="$BASE_URL/chat/completions"
log "measuring data plane pid $GW_PID at $BASE_URL (control plane in 'up' pid $UP_PID)"

# The data plane picks the configuration up asynchronously: poll until a request goes through.
ok=0
for _ in $(seq 1 60); do
  code="$(curl -s -o "$WORK/probe.out" -w '%{http_code}' -m 5 -X POST -H "Authorization: Bearer $API_KEY" \
    -H 'Content-Type: application/json' --data-binary @"$BODY" "$GW_CHAT" || true)"
  if [ "$code" = 200 ]; then ok=1; break; fi
  sleep 0.25
done
[ "$ok" = 1 ] || die "gateway never answered 200 on $GW_CHAT (last: HTTP $code $(head -c 300 "$WORK/probe.out" 2>/dev/null))"

# ---------------------------------------------------------------- measure
RESULTS_DIR="$TARGET_DIR/modelgate-bench"
mkdir -p "$RESULTS_DIR"
RESULTS="$RESULTS_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# ModelGate data plane vs direct mock — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo
  echo "- host: $(uname -srm), $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- bodies: $BODY, $STREAM_BODY"
  echo "- phases: closed c=$CONC, fixed ${RATE} rps (c=$RATE_CONC), stream c=$STREAM_CONC; $DUR each after ${WARM} warm-up; reps=$REPS"
  echo
} | tee "$RESULTS"
if [ "${SLOWLORIS:-0}" = 1 ]; then
  log "slowloris: ${RATE} rps for $DUR without, then with ${SLOW_CONNS:-1000} slow connections"
  echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
  "$BENCH" slowloris --url "$GW_CHAT" -H "Authorization: Bearer $API_KEY" --body-file "$BODY" \
    --rate "$RATE" --concurrency "$RATE_CONC" --duration "$DUR" --connections "${SLOW_CONNS:-1000}" \
    --pid "$GW_PID" | tee -a "$RESULTS"
  echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
  log "results saved to $RESULTS"
  exit 0
fi
log "measuring (direct first, then gateway, phase by phase)"
if [ "${CACHE_COMPARE:-0}" = 1 ]; then
  echo "- CACHE_COMPARE: 'direct' = the gateway with x-modelgate-cache: bypass (pass-through to the mock), 'gateway' = cache hits; route policy $ROUTE_POLICY; data plane flags: ${DP_ARGS:-none}" | tee -a "$RESULTS"
  DIRECT_ARGS=(--direct "$GW_CHAT" --direct-header "Authorization: Bearer $API_KEY" --direct-header "x-modelgate-cache: bypass" --direct-pid "$GW_PID")
else
  DIRECT_ARGS=(--direct "http://$MOCK_LISTEN/v1/chat/completions" --direct-header "Authorization: Bearer sk-bench" --direct-pid "$MOCK_PID")
fi
"$BENCH" compare "${DIRECT_ARGS[@]}" \
  --gateway "$GW_CHAT" --gateway-header "Authorization: Bearer $API_KEY" \
  ${GW_HEADER:+--gateway-header "$GW_HEADER"} \
  --gateway-pid "$GW_PID" \
  --body-file "$BODY" --stream-body-file "$STREAM_BODY" \
  --concurrency "$CONC" --duration "$DUR" --warmup "$WARM" --rate "$RATE" \
  --rate-concurrency "$RATE_CONC" --stream-concurrency "$STREAM_CONC" --reps "$REPS" | tee -a "$RESULTS"
log "results saved to $RESULTS"
if [ "${OTLP:-0}" = 1 ]; then
  sleep 6  # the batch processor's 5 s schedule, then the sink's own 5 s report
  echo "- otlp sink received: $(grep -E '^exports=' "$WORK/otlp.log" | tail -n 1)" | tee -a "$RESULTS"
fi

if [ -n "${AFTER:-}" ]; then
  log "running AFTER: $AFTER"
  BASE_URL="$BASE_URL" API_KEY="$API_KEY" DP_METRICS_URL="http://$DP_METRICS_LISTEN/metrics" \
    MOCK_LISTEN="$MOCK_LISTEN" REDIS_PROXY="${REDIS_PROXY:-}" REDIS_ADDR="$REDIS_ADDR" \
    REDIS_PROXY_PGID="$REDIS_PROXY_PGID" bash -c "$AFTER" | tee -a "$RESULTS"
fi

# ---------------------------------------------------------------- peers
if [ "${PEERS:-0}" = 1 ]; then
  [ -x "$PEER_DIR/run_all.sh" ] || die "$PEER_DIR/run_all.sh not found"
  [ "$MOCK_LISTEN" = 127.0.0.1:18080 ] || die "PEERS=1 needs MOCK_LISTEN=127.0.0.1:18080 (run_all.sh's nginx mock takes that port)"
  log "stopping our mock: run_all.sh starts its own (nginx) mock on 18080, which the gateway then uses"
  stop_pid "$MOCK_PID"
  for _ in $(seq 1 50); do port_busy "$MOCK_LISTEN" || break; sleep 0.1; done
  TARGETS="${PEER_TARGETS:-direct nginx-proxy}" EXTRA_NAME=modelgate EXTRA_PID="$GW_PID" \
    "$PEER_DIR/run_all.sh" "$GW_CHAT" "Authorization: Bearer $API_KEY"
else
  cat >&2 <<EOF

To measure against the peers (nginx proxy; LiteLLM and Portkey optional) in the same run:
  PEERS=1 bench/run.sh                                  # runs $PEER_DIR/run_all.sh after the above
  PEERS=1 PEER_TARGETS="direct nginx-proxy litellm portkey" bench/run.sh   # all peers (slow installs)
or by hand, with a gateway routed to 127.0.0.1:18080 and nothing else listening there:
  TARGETS="direct nginx-proxy" EXTRA_NAME=modelgate EXTRA_PID=<gateway pid> \\
    $PEER_DIR/run_all.sh <MODELGATE_BASE_URL>/chat/completions "Authorization: Bearer <MODELGATE_API_KEY>"
EOF
fi

if [ "${HOLD:-0}" = 1 ]; then
  log "HOLD=1: mock and gateway stay up until Ctrl-C"
  echo "MODELGATE_BASE_URL=$BASE_URL MODELGATE_API_KEY=$API_KEY MODELGATE_ADMIN_URL=$ADMIN_URL gateway pid $GW_PID" >&2
  wait
fi
