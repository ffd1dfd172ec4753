#!/usr/bin/env python3
"""Writes link/hot-functions.txt: the functions a release binary runs at start-up and when serving
CI traffic, which build.rs turns into a linker script that places them together at the front of
the code (see "Code layout" in the README).

Usage: scripts/link_order.py [BINARY]     (default: target/release/perfgate-server)
       scripts/link_order.py --check BINARY   (the layout a release build got)

Needs valgrind (callgrind) and a release binary built without the layout,
`PERFGATE_LINK_ORDER=0 cargo build --release` (the layout changes no symbol, but valgrind 3.19
reads no symbol of a binary laid out by build.rs: its code shows as `???`). It starts the
binary under callgrind on an empty SQLite file, waits for /health and then as long as the idle
RSS measurement does (1.5 s), dumps the profile (the start-up set), then uploads, reads, judges
and lists over HTTP as CI jobs do, stops the server and dumps again (the request set).

Each line of the output is one function: its symbol with the hash suffix of Rust's legacy
mangling (`17h<16 hex>E`) and the crate disambiguators of v0 mangling (`Cs<base62>_`) taken out,
so that a line still matches after the hashes change (a new toolchain, a dependency update,
another build command), followed by the hashes this build had (which pick the exact generic
instances while they are current).
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "pg_live_" + "linkorder" * 4
HASH = re.compile(r"17h([0-9a-f]{16})E$")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {KEY}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status


def workload(port):
    receipt = json.load(open(os.path.join(ROOT, "tests/fixtures/run-bench-a-1.json")))
    base = "/api/v1/projects/bench"
    statuses = {}

    def call(method, path, body=None):
        s = request(port, method, path, body)
        statuses.setdefault((method, re.sub(r"\d+", "N", path)), set()).add(s)

    for v in range(6):
        for b in range(4):
            r = json.loads(json.dumps(receipt))
            r["stats"]["wall_ms"]["median"] = 10 + (v * 7 + b) % 5
            call("POST", f"{base}/baselines", {
                "benchmark": f"bench-{b}", "version": f"v{v:03d}", "git_ref": None,
                "git_sha": None, "receipt": r, "metadata": {}, "tags": [], "normalize": False})
    for i in range(40):
        call("GET", f"{base}/baselines/bench-{i % 4}/latest")
    for i in range(10):
        call("GET", f"{base}/baselines?limit=50")
        call("GET", f"{base}/baselines/bench-{i % 4}/trend?metric=wall_ms&window=30")
        status = ("pass", "warn", "fail")[i % 3]
        call("POST", f"{base}/verdicts", {
            "benchmark": f"bench-{i % 4}", "run_id": f"run-{i}", "status": status,
            "counts": {"pass": int(status == "pass"), "warn": int(status == "warn"),
                       "fail": int(status == "fail"), "skip": 0},
            "reasons": [] if status == "pass" else ["wall_ms regressed"],
            "git_ref": "refs/heads/main", "git_sha": None, "wall_ms_cv": 0.05})
        call("GET", f"{base}/baselines/bench-{i % 4}/versions/v001")
        call("GET", f"{base}/verdicts?limit=20")
    call("GET", "/metrics")
    call("GET", "/health")
    return statuses


def functions(path):
    """Function names in the binary's object that a callgrind output file shows running."""
    names, objs, out, seen = {}, {}, [], set()
    ob = cob = None

    def name_of(table, s):
        m = re.match(r"\((\d+)\)(?: (.*))?$", s)
        if not m:
            return s
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1))

    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("ob="):
            ob = name_of(objs, line[3:])
        elif line.startswith("cob="):
            cob = name_of(objs, line[4:])
        elif line.startswith(("fn=", "cfn=")):
            called = line.startswith("cfn=")
            n = name_of(names, line[4:] if called else line[3:])
            o = (cob or ob) if called else ob
            cob = None
            if o and os.path.basename(o) == BINARY_NAME and n:
                n = re.sub(r"'\d+$", "", n)  # callgrind's recursion marker
                if n not in seen and not n.startswith(("(", "0x")):
                    seen.add(n)
                    out.append(n)
    return out


def key(name):
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", HASH.sub("17h*", name))


def check(binary):
    """The code layout of a release binary: its hot section, and how many of the list's exact
    instances this build still has (fewer after a toolchain or dependency update: regenerate)."""
    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True,
                              check=True).stdout
    hot = re.search(r"\s\.text\.hot\s+PROGBITS\s+\S+\s+\S+\s+([0-9a-f]+)", sections)
    if not hot:
        sys.exit(f"code layout: {binary} has no .text.hot section (build.rs did not apply "
                 "link/hot-functions.txt)")
    symbols = set(subprocess.run(["nm", binary], capture_output=True, text=True,
                                 check=True).stdout.split())
    exact = [line.split()[1].replace("17h*", f"17h{h}E")
             for line in open(os.path.join(ROOT, "link/hot-functions.txt"))
             if not line.startswith("#") for h in line.split()[2:]]
    found = sum(1 for n in exact if n in symbols)
    relr = re.search(r"\s\.relr\.dyn\s", sections) is not None
    print(f"code layout: .text.hot holds {int(hot.group(1), 16) / 1e6:.1f} MB; {found} of the "
          f"list's {len(exact)} exact instances are in this build; relative relocations "
          f"{'packed (RELR)' if relr else 'not packed (glibc older than 2.36, or a cross build)'}")


def main():
    global BINARY_NAME
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
        return
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                             os.path.join(ROOT, "target/release/perfgate-server"))
    BINARY_NAME = os.path.basename(binary)
    work = tempfile.mkdtemp(prefix="link-order.")
    port = free_port()
    out = os.path.join(work, "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", f"--callgrind-out-file={out}",
         binary, "--storage-type", "sqlite", "--database-url", os.path.join(work, "x.db"),
         "--bind", "127.0.0.1", "--port", str(port), "--api-keys", f"admin:{KEY}:bench"],
        stdout=open(os.path.join(work, "server.log"), "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                if request(port, "GET", "/health") == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                sys.exit(f"the server exited; see {work}/server.log")
            time.sleep(0.2)
        else:
            sys.exit(f"the server did not answer /health; see {work}/server.log")
        time.sleep(1.5)
        subprocess.run(["callgrind_control", "--dump=startup", str(server.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        statuses = workload(port)
        bad = {k: v for k, v in statuses.items() if not v <= {200, 201}}
        if bad:
            sys.exit(f"unexpected statuses in the workload: {bad}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
    dumps = sorted(f for f in os.listdir(work) if f.startswith("callgrind.out."))
    if len(dumps) != 1:
        sys.exit(f"expected one start-up dump in {work}, found {dumps}")
    startup = functions(os.path.join(work, dumps[0]))
    later = functions(os.path.join(work, "callgrind.out"))
    if len(startup) < 500:
        sys.exit(f"only {len(startup)} functions of {binary} seen at start-up (about 2,000 run): "
                 "valgrind could not read its symbols. Build it without the layout: "
                 "PERFGATE_LINK_ORDER=0 cargo build --release")
    # One line per function and phase: an instance first run at start-up is listed there, the
    # other instances of the same function (and those only requests run) under `requests`.
    lines, index, listed = [], {}, set()
    for phase, names in (("startup", startup), ("requests", later)):
        for n in names:
            if n in listed:
                continue
            listed.add(n)
            k = key(n)
            h = HASH.search(n)
            if (phase, k) not in index:
                index[(phase, k)] = [phase, k, []]
                lines.append(index[(phase, k)])
            if h:
                index[(phase, k)][2].append(h.group(1))
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    target = os.path.join(ROOT, "link/hot-functions.txt")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w") as f:
        f.write(f"# Generated by scripts/link_order.py from a release build of {commit}; read by build.rs.\n")
        f.write("# PHASE SYMBOL [HASH...]: see the script's docstring and \"Code layout\" in the README.\n")
        for phase, k, hashes in lines:
            f.write(" ".join([phase, k] + hashes) + "\n")
    print(f"{target}: {len(startup)} instances run at start-up, {len(listed) - len(startup)} "
          f"more serving requests ({len(lines)} lines)")


if __name__ == "__main__":
    main()
