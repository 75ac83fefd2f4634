"""Daemon cost at rest and under an unrelated writer (issue targets: < 50 ms CPU per idle minute;
at most one pass per debounce window while a writer commits 50 part updates a second).

    python benchmarks/daemon_idle.py [--idle-seconds 60] [--writer-seconds 30] [--rate 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import dbfactory  # noqa: E402
from tests.integration.daemonproc import DaemonProcess, Holder, NotifySocket  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def writer(db: Path, seconds: float, rate: float) -> int:
    """Commit `rate` updates a second to one text part of an unrelated session."""
    sid = dbfactory.add_session(db)
    mid = dbfactory.add_message(db, sid, role="assistant", completed=True)
    pid = dbfactory.add_text_part(db, sid, mid, text="streaming")
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=5000")
    commits, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        conn.execute(
            "UPDATE part SET data=?, time_updated=? WHERE id=?",
            (
                dbfactory.compact({"type": "text", "text": "x" * (commits % 500)}),
                int(time.time() * 1000),
                pid,
            ),
        )
        commits += 1
        time.sleep(max(0.0, commits / rate - (time.monotonic() - start)))
    conn.close()
    return commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--writer-seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db = dbfactory.make_db(tmp / "opencode.db")
        holder = Holder(db)  # started before the parts: it may own them, so they are kept, not repaired
        for _ in range(20):
            dbfactory.stuck_question(db, age_s=0)
        notify = NotifySocket(tmp / "notify.sock")
        daemon = DaemonProcess(tmp, [db], notify=notify)
        try:
            notify.wait_for("READY=1", timeout=60)
            time.sleep(2)
            cpu0, passes0 = cpu_seconds(daemon.pid), daemon.status()["passes"]
            time.sleep(args.idle_seconds)
            idle_ms = (cpu_seconds(daemon.pid) - cpu0) * 1000 * 60 / args.idle_seconds
            idle_passes = daemon.status()["passes"] - passes0

            cpu0, passes0 = cpu_seconds(daemon.pid), daemon.status()["passes"]
            commits = writer(db, args.writer_seconds, args.rate)
            time.sleep(1)
            busy_cpu = cpu_seconds(daemon.pid) - cpu0
            busy_passes = daemon.status()["passes"] - passes0
            windows = args.writer_seconds / 0.5
            print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
            print(
                f"idle: {idle_ms:.1f} ms CPU per minute (target < 50), "
                f"{idle_passes} passes in {args.idle_seconds:.0f} s (poll 60 s), 20 kept candidates"
            )
            print(
                f"writer: {commits} commits in {args.writer_seconds:.0f} s ({commits / args.writer_seconds:.0f}/s); "
                f"{busy_passes} passes for {windows:.0f} debounce windows "
                f"(ratio {busy_passes / windows:.2f}, target <= 1); "
                f"daemon CPU {100 * busy_cpu / args.writer_seconds:.2f}% of one core"
            )
            print(
                f"rss: {rss_kib(daemon.pid) / 1024:.1f} MiB now, peak {rss_kib(daemon.pid, 'VmHWM') / 1024:.1f} MiB"
            )
        finally:
            daemon.stop()
            notify.close()
            holder.kill()


if __name__ == "__main__":
    main()
