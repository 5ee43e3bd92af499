#!/usr/bin/env python3
"""Replays a skewed chat workload through a gateway whose route caches, and reports the hit
rate, the upstream calls saved and the latency — in three phases when REDIS_PROXY_PGID is set:
before, while the Redis proxy is cut (the shared store unreachable), and after it is back.

Run by bench/run.sh through its AFTER knob (which exports BASE_URL, API_KEY, DP_METRICS_URL,
REDIS_PROXY, REDIS_ADDR, REDIS_PROXY_PGID), e.g.:

  REDIS_PROXY=127.0.0.1:18096 CACHE_COMPARE=1 \
  ROUTE_POLICY='{"cache":{"enabled":true,"allow_non_deterministic":true}}' \
  DP_ARGS="--cache-redis-url redis://127.0.0.1:18096 --cache-redis-prefix bench-$$:" \
  AFTER="python3 bench/cache_replay.py" bench/run.sh

The workload: REQUESTS requests [3000], sequential on one keep-alive connection, each asking one
of PROMPTS distinct prompts [300] drawn from a Zipf distribution (exponent ZIPF [1.1], seed
SEED [7]) — a few popular prompts (system prompts, eval items) and a long tail. Every request is
deterministic (temperature 0). A share STREAM_SHARE [0.5] of the requests stream (drawn with a
separate generator, so the prompt sequence does not depend on it): one stored answer serves
both kinds of client, whichever kind stored it. A request that is not a hit made exactly one
upstream call (the mock never fails), so upstream calls = requests - hits. Only the standard
library is used.
"""

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def env(name, default):
    return type(default)(os.environ.get(name, default))


def zipf_sampler(n, s, rng):
    weights = [1.0 / (k ** s) for k in range(1, n + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)

    def draw():
        x = rng.random()
        lo, hi = 0, n - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cdf[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return lo

    return draw


def metric(url, name):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def main():
    base = os.environ["BASE_URL"].rstrip("/")
    key = os.environ["API_KEY"]
    metrics_url = os.environ["DP_METRICS_URL"]
    pgid = os.environ.get("REDIS_PROXY_PGID", "")
    proxy = os.environ.get("REDIS_PROXY", "")
    redis_addr = os.environ.get("REDIS_ADDR", "127.0.0.1:6379")
    n = env("REQUESTS", 3000)
    prompts = env("PROMPTS", 300)
    rng = random.Random(env("SEED", 7))
    draw = zipf_sampler(prompts, env("ZIPF", 1.1), rng)
    stream_share = env("STREAM_SHARE", 0.5)
    delivery = random.Random(env("SEED", 7) + 1)
    # A run-unique suffix: a replay never hits answers an earlier run left in Redis.
    run = "%x" % int(time.time() * 1000)

    u = urllib.parse.urlparse(base + "/chat/completions")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}

    cut_at, back_at = (n * 2 // 5, n * 3 // 5) if pgid else (n + 1, n + 1)
    phases = {"before": [], "redis cut": [], "after": []}
    restarted = None
    before = {m: metric(metrics_url, m) for m in (
        "modelgate_cache_hits_total", "modelgate_cache_misses_total",
        "modelgate_cache_store_errors_total", "modelgate_cache_stored_total")}
    for i in range(n):
        if i == cut_at:
            os.killpg(int(pgid), signal.SIGTERM)
            print("- request %d: Redis proxy (socat, pgid %s) cut" % (i, pgid))
        if i == back_at and pgid:
            host, port = proxy.rsplit(":", 1)
            restarted = subprocess.Popen(
                ["socat", "TCP-LISTEN:%s,bind=%s,fork,reuseaddr" % (port, host), "TCP:" + redis_addr],
                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.2)
            print("- request %d: Redis proxy back (pid %d)" % (i, restarted.pid))
        phase = "before" if i < cut_at else ("redis cut" if i < back_at else "after")
        p = draw()
        streams = delivery.random() < stream_share
        req = {"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 64,
               "messages": [{"role": "user", "content": "replay %s prompt %d" % (run, p)}]}
        if streams:
            req["stream"] = True
        body = json.dumps(req)
        t0 = time.perf_counter()
        conn.request("POST", u.path, body, headers)
        resp = conn.getresponse()
        got = resp.read()
        dt = (time.perf_counter() - t0) * 1e3
        if resp.status == 200 and streams and not got.rstrip().endswith(b"data: [DONE]"):
            print("- request %d: a stream that did not end with [DONE]" % i)
        phases[phase].append((resp.status, resp.getheader("x-modelgate-cache"), dt, streams))
    after = {m: metric(metrics_url, m) for m in before}
    if restarted is not None:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait()

    print()
    print("| phase | requests | non-200 | hits | hit rate | upstream calls | p50 ms | p99 ms | hit p50 ms | miss p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    total_hits = total = 0
    for name, rows in phases.items():
        if not rows:
            continue
        hits = [r for r in rows if r[1] == "hit"]
        misses = [r for r in rows if r[1] != "hit"]
        bad = sum(1 for r in rows if r[0] != 200)
        total_hits += len(hits)
        total += len(rows)
        print("| %s | %d | %d | %d | %.1f %% | %d | %.2f | %.2f | %.2f | %.2f |" % (
            name, len(rows), bad, len(hits), 100.0 * len(hits) / len(rows), len(misses),
            pct([r[2] for r in rows], 50), pct([r[2] for r in rows], 99),
            pct([r[2] for r in hits], 50), pct([r[2] for r in misses], 50)))
    distinct = prompts
    print()
    print("- %d requests over %d prompts (Zipf %.2f): %d hits (%.1f %%), upstream calls %d instead of %d (%.1f %% saved)" % (
        total, distinct, env("ZIPF", 1.1), total_hits, 100.0 * total_hits / total,
        total - total_hits, total, 100.0 * total_hits / total))
    for kind, flag in (("streaming", True), ("non-streaming", False)):
        rows = [r for rs in phases.values() for r in rs if r[3] == flag]
        if rows:
            print("- %s requests: %d, hits %d (%.1f %%)" % (
                kind, len(rows), sum(1 for r in rows if r[1] == "hit"),
                100.0 * sum(1 for r in rows if r[1] == "hit") / len(rows)))
    print("- data plane counters over the replay: " + ", ".join(
        "%s +%d" % (m, after[m] - before[m]) for m in before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
