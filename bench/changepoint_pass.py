#!/usr/bin/env python3
"""How long a change-point pass holds the write lock, through a real server.

Usage: changepoint_pass.py [BENCHMARKS] [RUNS] [BIN]
Starts `BIN` (default target/release/perfgate-server) on SQLite in a temporary directory with a
pass every second and no delay, uploads RUNS CI runs of BENCHMARKS benchmarks (one commit per run,
every benchmark of a run sharing its runner shift, one benchmark stepping 15 % halfway) over four
keep-alive connections, waits for the passes to catch up, and prints the pass-duration histogram
and the upload latency from /metrics, how long after the last upload the passes caught up
(the rows read stop growing), and the change points found.
"""
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

KEY = "pg_live_benchbenchbenchbenchbenchbench01"


def main():
    benchmarks = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    binary = sys.argv[3] if len(sys.argv) > 3 else os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "perfgate-server")
    here = os.path.dirname(os.path.abspath(__file__))
    receipt = json.load(open(os.path.join(here, "..", "tests", "fixtures", "run-bench-a-2.json")))
    d = tempfile.mkdtemp()
    port = 18000 + random.randrange(1000)
    srv = subprocess.Popen([binary, "--database-url", os.path.join(d, "pg.db"), "--port", str(port),
                            "--api-keys", f"admin:{KEY}", "--change-point-interval-ms", os.environ.get("CP_INTERVAL_MS", "1000"),
                            "--change-point-delay-ms", "0", "--log-level", "warn"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        rng = random.Random(20261130)
        started = time.time()
        for r in range(runs):
            shift = rng.gauss(0, 0.02)
            jobs = list(range(benchmarks))
            errors = []

            def worker(part, r=r, shift=shift, errors=errors):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                for b in part:
                    level = (10 + b % 90) * (1 + shift) * (1 + rng.gauss(0, 0.01))
                    if b == 0 and r >= runs // 2:
                        level *= 1.15
                    rec = json.loads(json.dumps(receipt))
                    rec["bench"]["name"] = f"bench-{b}"
                    rec["run"]["id"] = f"run-{r}-{b}"
                    for i, s in enumerate(rec["samples"]):
                        s["wall_ms"] = max(1, round(level * (1 + 0.004 * ((i * 7) % 5 - 2))))
                    body = json.dumps({"benchmark": f"bench-{b}", "receipt": rec,
                                       "git_sha": f"{r:040x}"})
                    conn.request("POST", "/api/v1/projects/bench/baselines", body,
                                 {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 201:
                        errors.append(resp.status)
            threads = [threading.Thread(target=worker, args=(jobs[i::4],)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                sys.exit(f"upload errors: {errors[:5]}")
        took = time.time() - started
        # The passes catch up: wait until the rows read stop growing for 3 s (at most 300 s).
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ended = time.time()
        last, still_since = -1.0, time.time()
        while time.time() - ended < 300:
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
            m = re.search(r"^perfgate_change_point_runs_total (\S+)$", text, re.M)
            n = float(m.group(1)) if m else 0.0
            if n != last:
                last, still_since = n, time.time()
            elif time.time() - still_since >= 3:
                break
            time.sleep(0.25)
        caught_up = still_since - ended
        c.request("GET", "/api/v1/projects/bench/benchmarks/bench-0/change-points",
                  headers={"Authorization": f"Bearer {KEY}"})
        points = json.loads(c.getresponse().read())["change_points"]
    finally:
        srv.terminate()
        srv.wait()
    print(f"{benchmarks} benchmarks x {runs} CI runs = {benchmarks * runs} uploads in {took:.1f} s "
          f"({benchmarks * runs / took:.0f}/s, 4 connections)")
    def metric(name):
        m = re.search(rf"^perfgate_{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0
    passes = metric("change_point_pass_seconds_count")
    total = metric("change_point_pass_seconds_sum")
    print(f"passes: {passes:.0f}, runs read: {metric('change_point_runs_total'):.0f} "
          f"(run x metric rows), mean pass {1000 * total / max(passes, 1):.1f} ms, "
          f"caught up {caught_up:.1f} s after the last upload")
    print("pass duration buckets (le seconds: passes):")
    for le, n in re.findall(r'^perfgate_change_point_pass_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
        print(f"  {le}: {n}")
    up = re.findall(r'^perfgate_http_request_duration_seconds_bucket\{method="POST",route="[^"]*baselines",status="201",le="([^"]+)"\} (\S+)$', text, re.M)
    if up:
        total_up = float(up[-1][1])
        p99 = next((le for le, n in up if float(n) >= 0.99 * total_up), "+Inf")
        print(f"upload p99 bucket: le {p99} s over {total_up:.0f} uploads")
    print("bench-0 change points:", [(p["index"], round(p["change_pct"], 1), p["status"]) for p in points])


if __name__ == "__main__":
    main()
