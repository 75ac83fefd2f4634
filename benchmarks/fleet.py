"""Idle cost and many DBs, for benchmarks/run.py: the daemon over 1 small DB and over N of them.

For each: CPU at rest (ms per minute), then CPU while benchmarks/writer.py streams into the first DB.
The 1-DB daemon is also measured at rest with systemd's watchdog on (WATCHDOG_USEC of the shipped
unit's WatchdogSec=30s, a real NOTIFY_SOCKET counting the WATCHDOG=1 pings).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, NotifySocket

WATCHDOG_USEC = 30_000_000  # WatchdogSec=30s, as in watchdogd/units/opencode-watchdogd.service


def make_fleet(root: Path, count: int) -> list[Path]:
    """`count` small opencode DBs (1.18.33 layout) in one data dir, kept for the next run."""
    dbs = [root / f"opencode-{i:03d}.db" for i in range(count)]
    for db in dbs:
        if not db.exists():
            dbfactory.make_db(db, "1.18.33")
    return dbs


def measure(
    dbs: list[Path], args, workdir: Path, cpu_ns, run_writer, pings: bool = False, writer: bool = True
) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="fleet-", dir=workdir) as tmp:
        tmp = Path(tmp)
        notify = NotifySocket(tmp / "notify.sock")
        env = {"PYTHONPATH": str(args.daemon_src)} | ({"WATCHDOG_USEC": str(WATCHDOG_USEC)} if pings else {})
        daemon = DaemonProcess(tmp, dbs, env=env, notify=notify)
        try:
            notify.wait_for("READY=1", timeout=120)
            time.sleep(2)
            pings0 = sum(line == "WATCHDOG=1" for line in notify.lines())
            t0, c0 = time.monotonic(), cpu_ns(daemon.pid)
            time.sleep(args.idle_seconds)
            out["idle_ms_min"] = (cpu_ns(daemon.pid) - c0) / 1e6 / (time.monotonic() - t0) * 60
            out["pings"] = sum(line == "WATCHDOG=1" for line in notify.lines()) - pings0
            if writer:
                out["writer"] = run_writer(dbs[0], args, daemon.pid)
        finally:
            code = daemon.stop()
            notify.close()
        if code not in (0, None):
            raise RuntimeError(
                f"daemon over {len(dbs)} DBs exited with {code}:\n{daemon.log_path.read_text()[-2000:]}"
            )
    return out


def fleet_bench(args, workdir: Path, cpu_ns, run_writer) -> dict:
    dbs = make_fleet(workdir / "fleet", args.fleet)
    return {
        "one": measure(dbs[:1], args, workdir, cpu_ns, run_writer),
        "one_pings": measure(dbs[:1], args, workdir, cpu_ns, run_writer, pings=True, writer=False),
        "many": measure(dbs, args, workdir, cpu_ns, run_writer),
    }


def fleet_report(fleet: dict, args) -> list[str]:
    one, pinged, many = fleet["one"], fleet["one_pings"], fleet["many"]
    n = args.fleet
    return [
        f"idle and many DBs (small DBs; idle {args.idle_seconds:g} s, writer {args.rate:g} commits/s x "
        f"{args.writer_seconds:g} s into the first DB)",
        f"  daemon CPU idle, 1 DB                       {one['idle_ms_min']:.1f} ms per minute",
        f"  daemon CPU idle, 1 DB, WatchdogSec=30s      {pinged['idle_ms_min']:.1f} ms per minute "
        f"({pinged['pings']} WATCHDOG=1 pings)",
        f"  daemon CPU idle, {n} DBs                     {many['idle_ms_min']:.1f} ms per minute",
        f"  daemon CPU, writer, 1 DB                    {one['writer']['cpu']:.2f} % of a core "
        f"({one['writer']['writer']['rate']}/s achieved)",
        f"  daemon CPU, writer into 1 of {n} DBs         {many['writer']['cpu']:.2f} % of a core "
        f"({many['writer']['writer']['rate']}/s achieved)",
    ]
