#!/usr/bin/env python3
"""Seeds baselines straight into a perfgate-server SQLite database (already migrated), as the
server's database layer writes them: one `baselines` row per version (receipt text, content
hash, stat medians) and the per-benchmark live counts in `benchmarks`.

Shape: PROJECTS projects (`p000`...) x 100 benchmarks (`bench-0`...) x 100 versions (`v000`...),
so PROJECTS=1 gives 10,000 baselines and PROJECTS=100 gives 1,000,000; every project holds the
same history, only the table size differs. Every version also gets its gate summary row
(`run_stats`, wall_ms, as the server writes at upload), and the start-up back-fill is marked done.
Usage: seed_baselines.py DB PROJECTS RECEIPT
"""
import math
import hashlib
import json
import sqlite3
import sys
import time
import uuid

BENCHMARKS = 100
VERSIONS = 100


def main():
    db, projects, receipt_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    receipt = json.load(open(receipt_path))
    # A few receipt variants (different wall_ms medians) so that trends have a series.
    variants = []
    for k in range(5):
        r = json.loads(json.dumps(receipt))
        r["stats"]["wall_ms"]["median"] = 10 + k
        text = json.dumps(r, separators=(",", ":"))
        medians = json.dumps({m: s["median"] for m, s in sorted(r["stats"].items())},
                             separators=(",", ":"))
        variants.append((text, hashlib.sha256(text.encode()).hexdigest(), medians,
                         r["stats"]["wall_ms"]["median"]))
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA synchronous = OFF")
    # Bulk load without the indexes, then rebuild them exactly as the migration declared them.
    indexes = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                          "AND tbl_name IN ('baselines', 'run_stats') AND sql IS NOT NULL").fetchall()
    host = receipt["run"]["host"]
    runner = f"{host['os']}/{host['arch']}/{host.get('cpu_count', '?')}"
    for name, _ in indexes:
        con.execute(f"DROP INDEX {name}")
    start = int(time.time() * 1e6) - projects * BENCHMARKS * VERSIONS * 10
    t = start
    for p in range(projects):
        project = f"p{p:03d}"
        rows = []
        stats = []
        for v in range(VERSIONS):
            for b in range(BENCHMARKS):
                t += 10
                text, digest, medians, wall = variants[(v * 7 + b) % 5]
                row_id = uuid.uuid4().hex
                rows.append((row_id, project, f"bench-{b}", f"v{v:03d}", None, f"sha{v:03d}", text,
                             "{}", "[]", digest, "upload", None, wall, medians, t, t, None))
                # A benchmark level with a little run-to-run spread around it.
                level = 20.0 + 5.0 * b
                center = math.log(level) + 0.02 * (((v * 13 + b * 7) % 9) - 4) / 4
                stats.append((row_id, "wall_ms", project, f"bench-{b}", runner, f"run-{p}-{v}-{b}",
                              f"sha{v:03d}", center, 0.03, 10, 1 / (level * math.sqrt(12)), t))
        con.executemany("INSERT INTO baselines (id, project, benchmark, version, git_ref, git_sha, "
                        "receipt, metadata, tags, content_hash, source, promoted_from, "
                        "wall_ms_median, medians, created_at, updated_at, deleted_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT INTO run_stats (baseline_id, metric, project, benchmark, runner, "
                        "run_id, git_sha, center, within_sd, n, resolution, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", stats)
        con.executemany("INSERT INTO benchmarks (project, benchmark, baseline_count, created_at, "
                        "updated_at) VALUES (?, ?, ?, ?, ?)",
                        [(project, f"bench-{b}", VERSIONS, start, t) for b in range(BENCHMARKS)])
        con.commit()
    for _, sql in indexes:
        con.execute(sql)
    con.execute("INSERT OR REPLACE INTO backfill_state (task, position, done) VALUES ('run_stats', ?, 1)",
                ("f" * 32,))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    print(f"seeded {projects * BENCHMARKS * VERSIONS} baselines")


main()
