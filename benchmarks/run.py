"""Scale benchmark of opencode-watchdogd: one command, one table. Not part of the test suite.

    .venv/bin/python benchmarks/run.py [--sizes 100000,1000000] [--writer-seconds 60]

For each size it builds (or reuses) a realistic opencode DB (benchmarks/builddb.py), then measures:
query times (naive json_extract scan, the one-shot `store.scan()`, the tracker's full, steady-state
and unchanged passes), and the real daemon (`python -m watchdogd run`) as a subprocess: start to
first repair, orphan-to-repair latency, CPU while a separate writer commits 50 part updates a
second, peak and final RSS. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import builddb  # noqa: E402
import fleet  # noqa: E402

from tests.dbfactory import compact, make_id  # noqa: E402
from watchdogd.opencode.store import OpencodeStore  # noqa: E402
from watchdogd.opencode.tracker import CandidateTracker  # noqa: E402

# The instr() prefilter store.scan() used before it switched to GLOB, kept for comparison.
INSTR_SCAN = (
    "SELECT rowid, id, message_id, session_id, time_created, data FROM part WHERE "
    '(instr(data, \'"status":"running"\') > 0 OR instr(data, \'"status":"pending"\') > 0)'
)
NAIVE = (
    "SELECT id, data FROM part WHERE json_extract(data, '$.type') = 'tool' "
    "AND json_extract(data, '$.state.status') IN ('running', 'pending')"
)
BYTES_PER_PART = 3_000  # what builddb writes on average (2.8 KB), rounded up
TICKS = os.sysconf("SC_CLK_TCK")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- /proc --------------------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (all threads)


def cpu_ns(pid: int) -> int:
    """CPU time of the live threads in nanoseconds (/proc/<pid>/task/*/schedstat): finer than the 10 ms ticks
    of /proc/<pid>/stat, which matters for idle figures of a few ms a minute."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):  # the thread ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total


def mem_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# -- query timings ------------------------------------------------------------------------------------


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def query_bench(db: Path, steady_runs: int = 40) -> dict:
    ro = sqlite3.connect(f"file:{urllib.parse.quote(str(db))}?mode=ro", uri=True)
    ro.execute(NAIVE).fetchall()  # warm the page cache: every figure below is warm
    naive = median_time(lambda: ro.execute(NAIVE).fetchall(), 3)
    naive_hits = len(ro.execute(NAIVE).fetchall())
    instr = median_time(lambda: ro.execute(INSTR_SCAN).fetchall(), 3)
    ro.close()

    store = OpencodeStore(db)
    scan = median_time(store.scan, 3)
    store.close()

    store = OpencodeStore(db)
    tracker = CandidateTracker(store, full_rescan_interval=3600)
    t = time.perf_counter()
    cands, _bad, mode = tracker.refresh()
    full = time.perf_counter() - t
    assert mode == "full" and len(cands) == naive_hits, (mode, len(cands), naive_hits)

    # the steady state: after each small commit (one upsert of a streamed part + one new part), one pass
    writer = sqlite3.connect(db, isolation_level=None, timeout=30)
    writer.execute("PRAGMA foreign_keys = ON")
    now = int(time.time() * 1000)
    sid, mid = make_id("ses", now, descending=True), make_id("msg", now)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated) "
        "VALUES (?, 'global', 'bench-probe', '/p', 'probe', '1.18.33', ?, ?)",
        (sid, now, now),
    )
    writer.execute(
        "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?)",
        (mid, sid, now, now, compact({"role": "assistant", "time": {"created": now}})),
    )
    writer.execute("COMMIT")
    streamed = make_id("prt", now)
    steady, modes = [], set()
    for i in range(steady_runs):
        ms = int(time.time() * 1000)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET data = excluded.data, time_updated = excluded.time_updated",
            (streamed, mid, sid, now, ms, compact({"type": "text", "text": "streamed " * (i + 1)})),
        )
        writer.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?)",
            (make_id("prt", ms, i), mid, sid, ms, ms, compact({"type": "step-start"})),
        )
        writer.execute("COMMIT")
        t = time.perf_counter()
        _c, _b, mode = tracker.refresh()
        steady.append(time.perf_counter() - t)
        modes.add(mode)
    writer.close()
    assert modes == {"incremental"}, modes
    unchanged = median_time(tracker.refresh, 200)
    assert tracker.last.mode == "unchanged"
    store.close()
    return {
        "naive": naive,
        "scan": scan,
        "instr": instr,
        "full": full,
        "steady": statistics.median(steady),
        "steady_max": max(steady),
        "unchanged": unchanged,
        "candidates": naive_hits,
    }


# -- the daemon ---------------------------------------------------------------------------------------


class DaemonLog:
    """Follows the daemon's JSON log lines."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.events: list[dict] = []
        self.cursor = 0

    def poll(self) -> list[dict]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        cut = chunk.rfind(b"\n") + 1
        self.offset += cut
        new = []
        for line in chunk[:cut].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                new.append(event)
        self.events += new
        return new

    def wait(self, predicate, timeout: float, proc: subprocess.Popen) -> dict:
        """The next event (after the last one returned) that matches; none is skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            while self.cursor < len(self.events):
                event = self.events[self.cursor]
                self.cursor += 1
                if predicate(event):
                    return event
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode}; log tail:\n" + self.tail())
            time.sleep(0.01)
        raise TimeoutError(f"no matching daemon event within {timeout}s; log tail:\n" + self.tail())

    def tail(self) -> str:
        return "\n".join(self.path.read_text(errors="replace").splitlines()[-15:])


def stamp(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def insert_orphan(db: Path, started_at: float | None = None) -> tuple[str, float]:
    """A `question` part left running by a process that is already gone: short connection, closed.
    `started_at` (epoch s) backdates the call (its start, session and messages), e.g. to before a writer
    process started; the part row's time_updated stays the commit's."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        now = int((time.time() if started_at is None else started_at) * 1000)
        sid, user, mid, pid = (
            make_id("ses", now, descending=True),
            make_id("msg", now),
            make_id("msg", now + 1),
            make_id("prt", now + 2),
        )
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO session (id, project_id, slug, directory, title, version, time_created, time_updated) "
            "VALUES (?, 'global', 'bench-probe', '/p', 'orphan probe', '1.18.33', ?, ?)",
            (sid, now, now),
        )
        conn.execute(
            "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?)",
            (user, sid, now, now, compact({"role": "user", "time": {"created": now}})),
        )
        conn.execute(
            "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?)",
            (
                mid,
                sid,
                now + 1,
                now + 1,
                compact({"parentID": user, "role": "assistant", "time": {"created": now + 1}}),
            ),
        )
        data = {
            "type": "tool",
            "tool": "question",
            "callID": f"call_{now}",
            "state": {"status": "running", "input": {"questions": []}, "time": {"start": now + 3}},
        }
        # time_updated is the commit, even for a backdated call: the orphan grace counts from the row's last
        # change
        conn.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?)",
            (pid, mid, sid, now + 2, max(now + 3, int(time.time() * 1000)), compact(data)),
        )
        conn.execute("COMMIT")
        committed = time.time()
    finally:
        conn.close()  # the "owner" is gone
    return pid, committed


def run_writer(db: Path, args, pid: int | None = None) -> dict:
    """benchmarks/writer.py for --writer-seconds: its commit latencies, the WAL's largest size (sampled every
    0.25 s) and, with `pid`, that process's CPU (% of a core) and RSS meanwhile."""
    wal = Path(f"{db}-wal")
    writer = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "writer.py"),
            "--db",
            str(db),
            "--rate",
            str(args.rate),
            "--seconds",
            str(args.writer_seconds),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    t0, c0 = time.monotonic(), cpu_ticks(pid) if pid else 0
    rss, wal_max = [], 0
    while writer.poll() is None:
        if pid:
            rss.append(mem_kb(pid)["VmRSS"])
        wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
        time.sleep(0.25)
    wall = time.monotonic() - t0
    out = {"writer": json.loads(writer.stdout.read().strip().splitlines()[-1]), "wal_max": wal_max}
    if pid:
        out["cpu"] = 100 * (cpu_ticks(pid) - c0) / TICKS / wall
        out["rss_max_kb"] = max(rss) if rss else mem_kb(pid)["VmRSS"]
    return out


def orphans_under_writer(db: Path, args, log: DaemonLog, proc: subprocess.Popen) -> list[float]:
    """Commit → `action done` of --orphan-trials orphans, one every 3 s, while the writer runs.

    The writer holds the DB open, so it counts as a possible owner of any call that started while it ran
    (policy: HELD, never repaired). Each orphan's call is backdated to 2 s before the writer started: a
    session left behind by an opencode that exited, while a new one streams (RESTARTED: an orphan)."""
    spawned = time.time()
    writer = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "writer.py"),
            "--db",
            str(db),
            "--rate",
            str(args.rate),
            "--seconds",
            "600",
            "--seed",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    latencies = []
    try:
        time.sleep(1.0)
        for _ in range(args.orphan_trials):
            if writer.poll() is not None:
                raise RuntimeError(f"the writer exited ({writer.returncode}) before the orphan trials ended")
            pid, committed = insert_orphan(db, started_at=spawned - 2)
            event = log.wait(
                lambda e, pid=pid: e.get("event") == "action done" and e.get("part") == pid, 60, proc
            )
            latencies.append(stamp(event) - committed)
            time.sleep(max(0.0, committed + 3 - time.time()))
    finally:
        writer.terminate()  # it has done its part: streaming while the orphans were repaired
        writer.wait()
    return latencies


def daemon_bench(db: Path, seeded: list[dict], args, workdir: Path) -> dict:
    state = Path(tempfile.mkdtemp(prefix="state-", dir=workdir))
    xdg = state / "xdg"
    xdg.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_WATCHDOGD_")}
    env.update(
        OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE=f"{args.grace}s",
        XDG_CONFIG_HOME=str(xdg / "config"),
        XDG_STATE_HOME=str(xdg / "state"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(args.daemon_src),
    )
    log_path = state / "daemon.log"
    out: dict = {}
    # 0. opencode's side without the daemon: the same writer, nothing else has the DB open
    out["alone"] = run_writer(db, args)
    with open(log_path, "wb") as log_file:
        started = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watchdogd",
                "run",
                "--db",
                str(db),
                "--state-dir",
                str(state),
                "--log-format",
                "json",
            ],
            cwd=args.daemon_src,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log = DaemonLog(log_path)
        try:
            # 1. start-up: full scan, then the seeded historic orphans are repaired after the grace
            want = {row["part_id"] for row in seeded}
            done: list[dict] = []
            while want:
                event = log.wait(lambda e: e.get("event") == "action done", 300, proc)
                done.append(event)
                want.discard(event.get("part"))
            out["first_repair"] = stamp(done[0]) - started
            out["all_seeded"] = stamp(done[-1]) - started
            backups = [e for e in log.events if "backup" in str(e.get("event", ""))]
            out["backup"] = (
                "copied" if any(e.get("backup") for e in backups) else "none (too big)" if backups else "?"
            )
            # 2. a part becoming an orphan → its repair
            latencies = []
            for _ in range(args.orphan_trials):
                time.sleep(1.0)
                pid, committed = insert_orphan(db)
                event = log.wait(
                    lambda e, pid=pid: e.get("event") == "action done" and e.get("part") == pid, 60, proc
                )
                latencies.append(stamp(event) - committed)
            out["orphan"] = latencies
            time.sleep(1.0)
            # 3. idle, then CPU while a separate process commits `rate` part updates a second
            out["rss_before_kb"] = mem_kb(proc.pid)["VmRSS"]
            t0, c0 = time.monotonic(), cpu_ns(proc.pid)
            time.sleep(args.idle_seconds)
            out["cpu_idle_ms_min"] = (cpu_ns(proc.pid) - c0) / 1e6 / (time.monotonic() - t0) * 60
            # the same writer as in step 0, now with the daemon running
            out["with"] = run_writer(db, args, proc.pid)
            out["cpu_writer"], out["writer"] = out["with"]["cpu"], out["with"]["writer"]
            mem = mem_kb(proc.pid)
            out["rss_during_max_kb"] = out["with"]["rss_max_kb"]
            out["rss_after_kb"], out["hwm_kb"] = mem["VmRSS"], mem["VmHWM"]
            # 4. orphans committed while the writer streams into another session
            try:
                out["orphan_loaded"] = orphans_under_writer(db, args, log, proc)
            except (RuntimeError, TimeoutError) as exc:  # the figures above stand on their own
                say(f"orphans under the writer failed: {exc}")
            out["passes"] = None
            status = state / "status.json"
            if status.exists():
                out["passes"] = json.loads(status.read_text()).get("passes")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not args.keep:
        shutil.rmtree(state, ignore_errors=True)
    return out


# -- report -------------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return (
        f"{value * 1000:.3f} ms"
        if value < 0.01
        else f"{value * 1000:.1f} ms"
        if value < 10
        else f"{value:.1f} s"
    )


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM; Linux {platform.release()}; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def pct(value: float, base: float) -> str:
    return f"{100 * (value - base) / base:+.0f} %" if base else "n/a"


def report(results: dict[int, dict], args) -> str:
    sizes = list(results)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn) -> None:
        cells = []
        for size in sizes:
            try:
                cells.append(fn(results[size]))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                cells.append("n/a")
        rows.append((label, cells))

    row("parts / DB file size", lambda r: f"{r['parts']:,} / {r['bytes'] / 2**30:.2f} GiB")
    row("running/pending parts in the DB", lambda r: str(r["q"]["candidates"]))
    row("naive json_extract full scan", lambda r: ms(r["q"]["naive"]))
    row("store.scan() (one-shot `scan` query)", lambda r: ms(r["q"]["scan"]))
    row("  same rows with the old instr() prefilter", lambda r: ms(r["q"]["instr"]))
    row("tracker full pass (start-up)", lambda r: ms(r["q"]["full"]))
    row(
        "tracker steady pass after 1 small commit",
        lambda r: f"{ms(r['q']['steady'])} (max {ms(r['q']['steady_max'])})",
    )
    row("tracker pass, nothing committed", lambda r: ms(r["q"]["unchanged"]))
    row(
        "ratio naive / steady pass",
        lambda r: f"{r['q']['naive'] / r['q']['steady']:,.0f}x (1/{r['q']['naive'] / r['q']['steady']:,.0f})",
    )
    row("ratio store.scan / steady pass", lambda r: f"{r['q']['scan'] / r['q']['steady']:,.0f}x")
    row(
        "daemon start -> first repair",
        lambda r: f"{r['d']['first_repair']:.2f} s (backup: {r['d']['backup']})",
    )
    row(
        "orphan -> repaired (grace %gs)" % args.grace,
        lambda r: (
            f"median {statistics.median(r['d']['orphan']):.2f} s, max {max(r['d']['orphan']):.2f} s "
            f"(n={len(r['d']['orphan'])})"
        ),
    )
    row(
        "orphan -> repaired, writer running (grace %gs)" % args.grace,
        lambda r: (
            f"median {statistics.median(r['d']['orphan_loaded']):.2f} s, "
            f"max {max(r['d']['orphan_loaded']):.2f} s (n={len(r['d']['orphan_loaded'])})"
        ),
    )
    row(
        f"daemon CPU idle ({args.idle_seconds:g} s)",
        lambda r: f"{r['d']['cpu_idle_ms_min']:.1f} ms per minute",
    )
    row(
        f"daemon CPU, writer {args.rate:g} commits/s x {args.writer_seconds:g} s",
        lambda r: f"{r['d']['cpu_writer']:.2f} % of a core ({r['d']['writer']['rate']}/s achieved)",
    )
    row(
        "writer commit p50 / p99, no daemon",
        lambda r: f"{r['d']['alone']['writer']['p50_ms']:.3f} / {r['d']['alone']['writer']['p99_ms']:.3f} ms",
    )
    row(
        "writer commit p50 / p99, daemon running",
        lambda r: (
            f"{r['d']['with']['writer']['p50_ms']:.3f} / {r['d']['with']['writer']['p99_ms']:.3f} ms "
            f"({pct(r['d']['with']['writer']['p50_ms'], r['d']['alone']['writer']['p50_ms'])} / "
            f"{pct(r['d']['with']['writer']['p99_ms'], r['d']['alone']['writer']['p99_ms'])})"
        ),
    )
    row(
        "largest -wal during the writer: no daemon / daemon",
        lambda r: f"{r['d']['alone']['wal_max'] / 2**20:.1f} / {r['d']['with']['wal_max'] / 2**20:.1f} MiB",
    )
    row(
        "daemon RSS before writer / max during / after",
        lambda r: (
            f"{r['d']['rss_before_kb'] / 1024:.1f} / {r['d']['rss_during_max_kb'] / 1024:.1f} / "
            f"{r['d']['rss_after_kb'] / 1024:.1f} MiB"
        ),
    )
    row("daemon peak RSS (VmHWM)", lambda r: f"{r['d']['hwm_kb'] / 1024:.1f} MiB")
    row("DB build", lambda r: r["build"])

    headers = ["figure"] + [f"{s:,} parts" for s in sizes]
    widths = [max(len(headers[0]), *(len(label) for label, _ in rows))]
    for i in range(len(sizes)):
        widths.append(max(len(headers[i + 1]), *(len(cells[i]) for _, cells in rows)))
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)),
        "  ".join("-" * w for w in widths),
    ]
    for label, cells in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip([label, *cells], widths, strict=False)))
    errors = [f"{s:,} parts: {r['error']}" for s, r in results.items() if r.get("error")]
    head = [
        f"opencode-watchdogd scale benchmark, {datetime.now().isoformat(timespec='seconds')}",
        f"machine: {machine()}",
        f"daemon: real `python -m watchdogd run` subprocess from {args.daemon_src}; query timings warm "
        "(page cache hot), median",
        f"load average at the end: {os.getloadavg()[0]:.1f}",
        "",
    ]
    return "\n".join(head + lines + ([""] + errors if errors else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="opencode-watchdogd scale benchmark (see benchmarks/README.md)"
    )
    parser.add_argument(
        "--sizes", default="100000,1000000", help="part counts, comma separated (100k, 1M allowed)"
    )
    parser.add_argument("--writer-seconds", type=float, default=60.0, help="how long the 50/s writer runs")
    parser.add_argument("--rate", type=float, default=50.0, help="writer commits per second")
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="idle CPU samples (60 s include one poll pass)"
    )
    parser.add_argument("--orphan-trials", type=int, default=3)
    parser.add_argument(
        "--fleet", type=int, default=300, help="DBs watched in the many-DB phase (0: skip it)"
    )
    parser.add_argument(
        "--grace", type=float, default=1.0, help="policy.orphan_grace for the daemon, seconds"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "watchdogd-bench",
        help="where the DBs are built and kept for the next run",
    )
    parser.add_argument("--rebuild", action="store_true", help="build the DBs again even if present")
    parser.add_argument("--clean", action="store_true", help="delete the built DBs at the end")
    parser.add_argument(
        "--keep", action="store_true", help="keep the daemon state dirs (logs) in the workdir"
    )
    parser.add_argument("--no-daemon", action="store_true", help="query timings only")
    parser.add_argument("--no-queries", action="store_true", help="daemon figures only")
    parser.add_argument(
        "--daemon-src",
        type=Path,
        default=ROOT,
        help="run the daemon from this checkout (e.g. a `git worktree` of an older commit) to compare",
    )
    parser.add_argument("--version", default="1.18.33", choices=["1.15.3", "1.18.33"], help="opencode layout")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]

    args.workdir.mkdir(parents=True, exist_ok=True)
    need = sum(
        s * BYTES_PER_PART for s in sizes if args.rebuild or not (args.workdir / f"opencode-{s}.db").exists()
    )
    free = shutil.disk_usage(args.workdir).free
    say(f"workdir {args.workdir}: {free / 2**30:.1f} GiB free, about {need / 2**30:.1f} GiB needed")
    if need * 1.3 > free:
        say("not enough free disk for these sizes; pick smaller --sizes or another --workdir")
        return 2

    results: dict[int, dict] = {}
    for size in sizes:
        db = args.workdir / f"opencode-{size}.db"
        r: dict = {}
        results[size] = r
        if args.rebuild or not db.exists() or not Path(f"{db}.seeded.json").exists():
            say(f"[{size:,}] building {db} ...")
            built = builddb.build(
                db,
                size,
                version=args.version,
                progress=lambda n, size=size: say(f"  {n:,}/{size:,}") if n % 200_000 < 20_000 else None,
            )
            r["build"] = f"{built.seconds:.0f} s"
        else:
            r["build"] = "reused"
        seeded = builddb.reseed(db)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        r["parts"] = conn.execute("SELECT count(*) FROM part").fetchone()[0]
        conn.close()  # no fd on the DB left in this process: it would count as a live holder
        r["bytes"] = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db}{s}").exists())
        if not args.no_queries:
            say(f"[{size:,}] query timings ...")
            r["q"] = query_bench(db)
        if not args.no_daemon:
            say(
                f"[{size:,}] daemon: start-up, {args.orphan_trials} orphans, {args.writer_seconds:g} s writer ..."
            )
            try:
                r["d"] = daemon_bench(db, seeded, args, args.workdir)
            except (RuntimeError, TimeoutError, OSError) as exc:
                r["error"] = f"daemon phase failed: {exc}"
        if args.clean:
            for suffix in ("", "-wal", "-shm", ".seeded.json"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
    text = report(results, args)
    if args.fleet and not args.no_daemon:
        say(f"idle and {args.fleet} DBs ...")
        try:
            text += "\n\n" + "\n".join(
                fleet.fleet_report(fleet.fleet_bench(args, args.workdir, cpu_ns, run_writer), args)
            )
        except (RuntimeError, AssertionError, OSError) as exc:
            text += f"\n\nidle / many-DB phase failed: {exc}"
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
