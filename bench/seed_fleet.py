#!/usr/bin/env python3
"""Seeds N dependency events straight into a perfgate-server SQLite database (already migrated),
together with the alert aggregates the server maintains at write time.

Shape: 60 upgrade groups (6 dependencies x 10 version pairs); each group is used by 12 fixed
(project, benchmark) pairs out of 200 projects x 5 benchmarks. The first 720 events report each
pair once as a regression; the rest repeat random pairs again and again, as CI runs do (75 %
regressions). So 1,000 and 1,000,000 events give the same groups and entries, and the alert
answer has the same shape: only the length of the history differs. Usage: seed_fleet.py DB N
"""
import random
import sqlite3
import sys
import time
import uuid
import hashlib
import struct


def group_key(dep, old, new):
    h = hashlib.sha256(b"perfgate-fleet-alert\0")
    for part in (dep, old, new):
        if part is None:
            h.update(b"\0")
        else:
            b = part.encode()
            h.update(b"\1" + struct.pack(">Q", len(b)) + b)
    return h.hexdigest()[:32]


def main():
    db, n = sys.argv[1], int(sys.argv[2])
    rnd = random.Random(42)
    groups = []
    for d in range(6):
        for v in range(10):
            dep, old, new = f"dep-{d}", f"1.{v}.0", f"1.{v}.1"
            users = [(f"project-{rnd.randrange(200)}", f"bench-{rnd.randrange(5)}") for _ in range(12)]
            groups.append((group_key(dep, old, new), dep, old, new, users))
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA journal_mode = WAL")
    now = int(time.time() * 1e6) - n * 1000
    members = {}
    rows = []
    first_pass = [(g, u) for g in groups for u in g[4]]
    for i in range(n):
        if i < len(first_pass):
            (key, dep, old, new, _), (project, bench) = first_pass[i]
            delta = rnd.uniform(0.5, 30.0)
        else:
            key, dep, old, new, users = groups[rnd.randrange(len(groups))]
            project, bench = users[rnd.randrange(len(users))]
            delta = rnd.uniform(-10.0, 30.0)
        at = now + i * 1000
        eid = uuid.uuid4().hex
        rows.append((eid, project, bench, dep, old, new, "wall_ms", delta, key, at))
        if delta > 0:
            m = members.get((key, project, bench))
            if m is None:
                members[(key, project, bench)] = [delta, eid, at, at]
            else:
                m[0], m[1], m[3] = delta, eid, at
        if len(rows) == 50_000:
            con.executemany("INSERT INTO dependency_events VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            rows.clear()
    con.executemany("INSERT INTO dependency_events VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    con.executemany(
        "INSERT INTO fleet_members VALUES (?,?,?,?,?,?,?,?)",
        [(k, p, b, "wall_ms", m[0], m[1], m[2], m[3]) for (k, p, b), m in members.items()],
    )
    for key, dep, old, new, _ in groups:
        ms = [(p, m) for (k, p, b), m in members.items() if k == key]
        if not ms:
            continue
        projects = len({p for p, _ in ms})
        total = sum(m[0] for _, m in ms)
        con.execute(
            "INSERT INTO fleet_groups VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (key, dep, old, new, projects, len(ms), total, min(projects, 5), total / len(ms),
             min(m[2] for _, m in ms), max(m[3] for _, m in ms)),
        )
    con.commit()
    count = con.execute("SELECT COUNT(*) FROM dependency_events").fetchone()[0]
    groups_n = con.execute("SELECT COUNT(*) FROM fleet_groups").fetchone()[0]
    members_n = con.execute("SELECT COUNT(*) FROM fleet_members").fetchone()[0]
    print(f"seeded {count} events, {groups_n} groups, {members_n} entries")


if __name__ == "__main__":
    main()
