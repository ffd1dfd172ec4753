#!/usr/bin/env python3
"""What the storage layout of run summaries costs an upload, at the SQLite level.

Replays the writer's statements of an upload (the baseline row, the benchmark's count, the audit
row and one run_stats row per metric) against the real migrations, five uploads a commit, in WAL
mode with synchronous = FULL like the server, and prints per upload: the time in statements and
in the commit, the process CPU time, and the WAL frames the commit wrote. Layouts:

  current   the schema as migrated (six run_stats rows, each in every run_stats index)
  per-run   the per-run indexes (run id, stored time, commit sha) hold one row of the six
  packed    one run_stats row per upload (the metrics would be packed in it)
  norowid   the current schema with run_stats and audit_events WITHOUT ROWID (each row lives in
            its primary key's b-tree, instead of a rowid table plus a primary-key index)
  none      no run summaries at all (the floor)

Usage: bench/upload_layout.py [--uploads N] [--rounds R] [--sha] [--dir DIR]
(--sha gives every upload a commit sha, as CI uploads have; the bench's uploads have none).
Python's own cost per statement is in the figures; compare layouts, not absolute values.
"""
import argparse
import glob
import os
import random
import sqlite3
import statistics
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ["wall_ms", "cpu_ms", "page_faults", "ctx_switches", "max_rss_kb", "binary_bytes"]
BATCH = 5
PER_RUN = """
ALTER TABLE run_stats ADD COLUMN lead BOOLEAN NOT NULL DEFAULT FALSE;
DROP INDEX run_stats_sha_idx;
CREATE INDEX run_stats_sha_idx ON run_stats (project, benchmark, git_sha, created_at DESC)
    WHERE git_sha IS NOT NULL AND lead;
DROP INDEX run_stats_group_idx;
CREATE INDEX run_stats_group_idx ON run_stats (project, runner, git_sha)
    WHERE git_sha IS NOT NULL AND lead;
DROP INDEX run_stats_run_idx;
CREATE INDEX run_stats_run_idx ON run_stats (project, benchmark, run_id) WHERE lead;
DROP INDEX run_stats_created_idx;
CREATE INDEX run_stats_created_idx ON run_stats (created_at) WHERE lead;
"""


def run(layout, uploads, with_sha, directory, seed):
    rng = random.Random(seed)
    path = os.path.join(directory, f"{layout}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    c.execute("PRAGMA wal_autocheckpoint=0")
    for up in sorted(glob.glob(os.path.join(ROOT, "migrations/sqlite/*/up.sql"))):
        c.executescript(open(up).read())
    if layout == "per-run":
        c.executescript(PER_RUN)
    if layout == "norowid":
        for table in ("run_stats", "audit_events"):
            (sql,) = c.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            indexes = [i for (i,) in c.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
                " AND sql IS NOT NULL", (table,))]
            c.execute(f"DROP TABLE {table}")
            c.execute(sql + " WITHOUT ROWID")
            for i in indexes:
                c.execute(i)
    receipt = open(os.path.join(ROOT, "tests/fixtures/run-bench-a-1.json")).read()
    audit_cols = len(c.execute("PRAGMA table_info(audit_events)").fetchall())
    state = {"ts": 1_700_000_000_000_000}

    def row_id():
        # UUIDv7-like: the millisecond first, as the server's ids.
        return f"{state['ts'] // 1000:012x}7{rng.getrandbits(76):019x}"

    def upload(i):
        state["ts"] += 137
        ts = state["ts"]
        bid = row_id()
        bench = f"upload-{rng.randrange(50)}"
        sha = f"{rng.getrandbits(160):040x}" if with_sha else None
        c.execute(
            "INSERT INTO baselines (id, project, benchmark, version, git_ref, git_sha, receipt,"
            " metadata, tags, content_hash, source, wall_ms_median, medians, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (bid, "bench", bench, f"v{i}", None, sha, receipt, "{}", "[]",
             f"{rng.getrandbits(256):064x}", "upload", 12, '{"wall_ms":12}', ts, ts))
        n = c.execute(
            "UPDATE benchmarks SET baseline_count = baseline_count + 1, updated_at = ?"
            " WHERE project = ? AND benchmark = ?", (ts, "bench", bench)).rowcount
        if n == 0:
            c.execute("INSERT INTO benchmarks VALUES (?,?,1,?,?)", ("bench", bench, ts, ts))
        c.execute(
            "INSERT INTO audit_events SELECT " + ",".join("?" * audit_cols),
            (row_id(), ts, "admin", "create", "baseline", bid, "bench", "{}")
            + (None,) * (audit_cols - 8))
        if layout == "none":
            return
        for k, metric in enumerate(METRICS[:1] if layout == "packed" else METRICS):
            values = [bid, metric, "bench", bench, "ubuntu-x86_64", f"run-{i}", sha,
                      1.0, 0.1, 5, 0.001, ts]
            if layout == "per-run":
                c.execute(
                    "INSERT INTO run_stats (baseline_id, metric, project, benchmark, runner, run_id,"
                    " git_sha, center, within_sd, n, resolution, created_at, lead)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", values + [k == 0])
            else:
                c.execute(
                    "INSERT INTO run_stats (baseline_id, metric, project, benchmark, runner, run_id,"
                    " git_sha, center, within_sd, n, resolution, created_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", values)

    def batch(first):
        for i in range(first, first + BATCH):
            upload(i)

    # Warm up: 4,000 uploads, so the indexes have depth.
    for j in range(0, 4000, BATCH):
        c.execute("BEGIN IMMEDIATE")
        batch(j)
        c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stmt = commit = frames = 0.0
    cpu0 = time.process_time()
    for j in range(4000, 4000 + uploads, BATCH):
        t0 = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        batch(j)
        wal0 = os.path.getsize(path + "-wal")
        t1 = time.perf_counter()
        c.execute("COMMIT")
        t2 = time.perf_counter()
        frames += (os.path.getsize(path + "-wal") - wal0) / (4096 + 24)
        stmt += t1 - t0
        commit += t2 - t1
        if j % 1000 == 0:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cpu = time.process_time() - cpu0
    c.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    per = 1e6 / uploads
    return stmt * per, commit * per, cpu * per, frames / uploads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sha", action="store_true")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    directory = a.dir or tempfile.mkdtemp(prefix="upload-layout-")
    layouts = ["current", "per-run", "packed", "norowid", "none"]
    results = {l: [] for l in layouts}
    for r in range(a.rounds):
        for l in layouts:  # alternated, so the machine's drift spreads over all layouts
            results[l].append(run(l, a.uploads, a.sha, directory, seed=1000 + r))
    print(f"{a.uploads} uploads x {a.rounds} rounds, {BATCH} per commit, commit sha: {a.sha}; "
          "medians per upload")
    print(f"{'layout':10} {'statements us':>14} {'commit us':>10} {'cpu us':>8} {'WAL frames':>11}"
          f" {'cpu vs current':>15}")
    base = statistics.median(x[2] for x in results["current"])
    for l in layouts:
        med = [statistics.median(x[k] for x in results[l]) for k in range(4)]
        print(f"{l:10} {med[0]:14.1f} {med[1]:10.1f} {med[2]:8.1f} {med[3]:11.1f}"
              f" {med[2] / base:14.2f}x")


if __name__ == "__main__":
    main()
