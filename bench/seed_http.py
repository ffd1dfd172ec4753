#!/usr/bin/env python3
"""Seeds baselines through the HTTP API (the same bodies for every server under test).

Usage: seed_http.py PORT KEY PROJECT BENCHMARKS VERSIONS RECEIPT
Uploads BENCHMARKS x VERSIONS baselines (`bench-<i>`, versions `v000`...) with all eight body keys
(the reference server requires them) over a few keep-alive connections. The receipt's wall_ms
median varies with the version so trends have a series to analyse.
"""
import http.client
import json
import sys
import threading


def main():
    port, key, project = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    benchmarks, versions, receipt_path = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
    receipt = json.load(open(receipt_path))
    jobs = [(v, i) for v in range(versions) for i in range(benchmarks)]
    lock = threading.Lock()
    errors = []

    def worker(part):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for v, i in part:
            r = json.loads(json.dumps(receipt))
            r["stats"]["wall_ms"]["median"] = 10 + (v * 7 + i) % 5
            body = json.dumps({"benchmark": f"bench-{i}", "version": f"v{v:03d}", "git_ref": None,
                               "git_sha": None, "receipt": r, "metadata": {}, "tags": [],
                               "normalize": False})
            conn.request("POST", f"/api/v1/projects/{project}/baselines", body,
                         {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 201:
                with lock:
                    errors.append(resp.status)
    # One version round at a time, so that created_at order follows the version number.
    for v in range(versions):
        part = [j for j in jobs if j[0] == v]
        threads = [threading.Thread(target=worker, args=(part[k::4],)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        sys.exit(f"seeding failed: {len(errors)} uploads answered {sorted(set(errors))}")


main()
