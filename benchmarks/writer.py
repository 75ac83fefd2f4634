"""A separate process that writes like opencode streaming a reply: N part commits a second.

Works in its own session (unrelated to any candidate): mostly upserts of the part being streamed
(`INSERT … ON CONFLICT(id) DO UPDATE SET data=…`, same rowid, text growing), sometimes a new part
(step-start, text, a completed tool part). One commit per write, paced to the requested rate.
Prints one JSON line: {"commits": …, "seconds": …, "rate": …, "p50_ms": …, "p99_ms": …}, the
percentiles of the commit latency (BEGIN IMMEDIATE → COMMIT returned).

    python benchmarks/writer.py --db /tmp/x/opencode.db --rate 50 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.dbfactory import compact, make_id  # noqa: E402

UPSERT = (
    "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?) "
    "ON CONFLICT(id) DO UPDATE SET data = excluded.data, time_updated = excluded.time_updated"
)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="commits per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    conn = sqlite3.connect(args.db, isolation_level=None, timeout=30)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    now = int(time.time() * 1000)
    sid = make_id("ses", now, descending=True)
    mid = make_id("msg", now + 1)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated) "
        "VALUES (?, 'global', 'bench-probe', '/home/user/src/other', 'streaming', '1.18.33', ?, ?)",
        (sid, now, now),
    )
    conn.execute(
        "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?)",
        (mid, sid, now + 1, now + 1, compact({"role": "assistant", "time": {"created": now + 1}})),
    )
    conn.execute("COMMIT")

    text_id, text, commits, latencies = None, "", 0, []
    start = time.monotonic()
    interval = 1.0 / args.rate
    while True:
        due = start + commits * interval
        if due - start >= args.seconds:
            break
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ms = int(time.time() * 1000)
        if text_id is None or rng.random() < 0.1:
            kind = rng.choice(("step-start", "text", "tool"))
            pid = make_id("prt", ms, commits)
            if kind == "step-start":
                data = {"type": "step-start", "snapshot": f"{rng.getrandbits(160):040x}"}
            elif kind == "tool":
                data = {
                    "type": "tool",
                    "tool": "read",
                    "callID": f"toolu_{commits}",
                    "state": {
                        "status": "completed",
                        "input": {"filePath": "/x.py"},
                        "output": "x" * rng.randint(500, 6000),
                        "title": "/x.py",
                        "metadata": {},
                        "time": {"start": ms - 50, "end": ms},
                    },
                }
            else:
                text_id, text = pid, ""
                data = {"type": "text", "text": text, "time": {"start": ms}}
            row = (pid, mid, sid, ms, ms, compact(data))
        else:
            text += " streamed" * rng.randint(1, 4)
            if len(text) > 4000:
                text_id = None
            row = (text_id, mid, sid, ms, ms, compact({"type": "text", "text": text, "time": {"start": ms}}))
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(UPSERT, row)
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - t)
        commits += 1
    elapsed = time.monotonic() - start
    conn.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "commits": commits,
                "seconds": round(elapsed, 2),
                "rate": round(commits / elapsed, 1),
                "p50_ms": round(1000 * percentile(latencies, 50), 3),
                "p99_ms": round(1000 * percentile(latencies, 99), 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
