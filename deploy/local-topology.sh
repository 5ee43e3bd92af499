#!/usr/bin/env bash
# The compose topology as plain processes, for a machine with no container engine: two
# control-plane replicas on Postgres (one on SQLite, which allows one per file) and two data
# planes labelled region=eu-west and region=us-east, each given both control planes' URLs (in
# opposite orders, so each replica has a node until one goes away), the planes talking gRPC over
# mutual TLS with a fleet PKI made here.
#
#   MODELGATE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/modelgate \
#     deploy/local-topology.sh start [DIR]     start, wait until every process serves, print
#                                              MODELGATE_… lines, and return
#   deploy/local-topology.sh stop [DIR]        stop what `start` started in DIR
#
# DIR (default ./modelgate-topology) holds the certificates, keys (0600), the bootstrap admin
# token (first start on an empty database only), each data plane's data directory, logs and
# pids. Ports: MODELGATE_TOPOLOGY_PORT_BASE (default 19090) + 0 admin, +1 gRPC, +2 control-plane
# metrics, +3/+4/+5 the second control plane's admin/gRPC/metrics, +10/+11 eu-west
# proxy/metrics, +20/+21 us-east proxy/metrics. The binary:
# MODELGATE_BIN, else `modelgate` on PATH, else target/release or target/debug.
set -euo pipefail

cmd="${1:-}"
dir="${2:-./modelgate-topology}"
base="${MODELGATE_TOPOLOGY_PORT_BASE:-19090}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if command -v docker >/dev/null || command -v podman >/dev/null; then
    echo "local-topology.sh: a container engine is present; deploy/compose.yaml runs the same topology in containers" >&2
fi

find_bin() {
    if [[ -n "${MODELGATE_BIN:-}" ]]; then echo "${MODELGATE_BIN}"; return; fi
    if command -v modelgate >/dev/null; then command -v modelgate; return; fi
    for b in "${repo_root}/target/release/modelgate" "${repo_root}/target/debug/modelgate"; do
        if [[ -x "$b" ]]; then echo "$b"; return; fi
    done
    echo "local-topology.sh: no modelgate binary (set MODELGATE_BIN or run cargo build)" >&2
    exit 1
}

# Waits until URL answers (bounded), else shows the process's log and fails.
wait_http() {
    local url="$1" log="$2"
    for _ in $(seq 1 300); do
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "local-topology.sh: ${url} did not answer within 30 s; its log:" >&2
    tail -n 30 "$log" >&2
    exit 1
}

hex_key() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

stop() {
    [[ -d "$dir" ]] || return 0
    for pidfile in "$dir"/*.pid; do
        [[ -e "$pidfile" ]] || continue
        pid="$(cat "$pidfile")"
        # SIGTERM: each process drains and hands over its usage before it exits.
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$pidfile"
    done
}

# start_control_plane NAME ADMIN GRPC METRICS_PORT [ARGS…]: one control plane, logs and pid
# under NAME; returns once it answers.
start_control_plane() {
    local name="$1" admin="$2" grpc="$3" metrics="$4"
    shift 4
    MODELGATE_MASTER_KEY_FILE="$dir/master.key" \
        nohup "$bin" control-plane \
        --admin-listen "$admin" --grpc-listen "$grpc" \
        --metrics-listen "127.0.0.1:${metrics}" \
        --tls-ca "$certs/ca.pem" --tls-cert "$certs/control-plane.pem" --tls-key "$certs/control-plane-key.pem" \
        "$@" \
        >"$dir/${name}.log" 2>&1 &
    echo $! > "$dir/${name}.pid"
    wait_http "http://${admin}/healthz" "$dir/${name}.log"
}

start() {
    : "${MODELGATE_DATABASE_URL:?set MODELGATE_DATABASE_URL to a Postgres database URL}"
    local bin; bin="$(find_bin)"
    mkdir -p -m 0700 "$dir"
    dir="$(cd "$dir" && pwd)"
    local certs="$dir/certs"
    [[ -f "$certs/ca.pem" ]] || "$bin" certs init --dir "$certs" >/dev/null
    "$bin" certs issue --dir "$certs" --control-plane --dns localhost --ip 127.0.0.1 >/dev/null
    [[ -f "$dir/master.key" ]] || (umask 077; hex_key > "$dir/master.key")
    [[ -f "$dir/lkg.key" ]] || (umask 077; hex_key > "$dir/lkg.key")

    local admin="127.0.0.1:${base}" grpc="127.0.0.1:$((base + 1))"
    # The first replica alone first: on an empty database it initialises it (one bootstrap token).
    start_control_plane control-plane "$admin" "$grpc" "$((base + 2))" \
        --bootstrap-token-file "$dir/admin-token.new"
    # The bootstrap token exists only after the first start on an empty database.
    if [[ -s "$dir/admin-token.new" ]]; then mv "$dir/admin-token.new" "$dir/admin-token"; fi
    local urls_eu="https://${grpc}" urls_us="https://${grpc}" admin_b=""
    if [[ "$MODELGATE_DATABASE_URL" == postgres* ]]; then
        admin_b="127.0.0.1:$((base + 3))"
        local grpc_b="127.0.0.1:$((base + 4))"
        start_control_plane control-plane-b "$admin_b" "$grpc_b" "$((base + 5))"
        urls_eu="https://${grpc},https://${grpc_b}"
        urls_us="https://${grpc_b},https://${grpc}"
    fi

    local offset region
    for region in eu-west us-east; do
        case "$region" in eu-west) offset=10 ;; us-east) offset=20 ;; esac
        "$bin" certs issue --dir "$certs" --node-id "$region-1" --label "region=$region" >/dev/null
        nohup "$bin" data-plane \
            --listen "127.0.0.1:$((base + offset))" --metrics-listen "127.0.0.1:$((base + offset + 1))" \
            --control-plane-url "$([[ $region == eu-west ]] && echo "$urls_eu" || echo "$urls_us")" \
            --tls-ca "$certs/ca.pem" --tls-cert "$certs/$region-1.pem" --tls-key "$certs/$region-1-key.pem" \
            --data-dir "$dir/data-plane-$region" --lkg-key-file "$dir/lkg.key" \
            >"$dir/data-plane-$region.log" 2>&1 &
        echo $! > "$dir/data-plane-$region.pid"
        wait_http "http://127.0.0.1:$((base + offset))/healthz" "$dir/data-plane-$region.log"
    done

    echo "MODELGATE_ADMIN_URL=http://${admin}"
    if [[ -n "$admin_b" ]]; then echo "MODELGATE_ADMIN_URL_B=http://${admin_b}"; fi
    echo "MODELGATE_ADMIN_TOKEN_FILE=$dir/admin-token"
    echo "MODELGATE_BASE_URL_EU_WEST=http://127.0.0.1:$((base + 10))/v1"
    echo "MODELGATE_BASE_URL_US_EAST=http://127.0.0.1:$((base + 20))/v1"
    echo "Stop with: $0 stop $dir"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac
