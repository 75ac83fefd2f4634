"""A real non-opencode SQLite holder, reached by another name than the daemon's, through the running daemon.

The holder opens the DB in WAL and keeps it open; the daemon must see it as a holder whichever path it used:
the plain path (control), a hard link elsewhere, or a bind mount that exists only in the holder's own mount
namespace (as a dev container sees a host data dir). While it lives, its fresh part is never written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until

pytestmark = pytest.mark.integration
GRACE_S = 1.0

_HOLD = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[1])\n"
    "assert c.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'\n"
    "c.execute('SELECT count(*) FROM part').fetchall()\n"
    "print('ready', flush=True)\n"
    "time.sleep(3600)\n"
)


class AliasHolder:
    """`python -c _HOLD <path>`, optionally behind a command prefix (unshare + mount --bind)."""

    def __init__(self, path: Path, prefix: list[str] | None = None):
        args = [*(prefix or []), sys.executable, "-c", _HOLD, str(path)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"holder did not start: {line!r} {self.proc.stderr.read()}")

    def fd_targets(self) -> list[str]:
        fd = Path(f"/proc/{self.proc.pid}/fd")
        return [os.readlink(fd / n) for n in os.listdir(fd)]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _unshare_usable() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True
    )
    return None if probe.returncode == 0 else f"unshare -m fails here: {probe.stderr.strip()}"


def _alias(kind: str, db: Path, tmp: Path) -> tuple[Path, list[str]]:
    """The path the holder opens, and the command prefix it runs under."""
    if kind == "plain":
        return db, []
    if kind == "hard-link":
        (tmp / "elsewhere").mkdir()
        alias = tmp / "elsewhere" / "renamed.db"
        os.link(db, alias)
        return alias, []
    why = _unshare_usable()
    if why and not os.environ.get("CI"):
        pytest.skip(why)
    mnt = tmp / "container-view"
    mnt.mkdir()
    bind = f'mount --bind {db.parent} {mnt} && exec "$0" "$@"'
    return mnt / db.name, ["unshare", "-m", "--propagation", "private", "sh", "-c", bind]


@pytest.mark.parametrize("kind", ["plain", "hard-link", "bind-mount"])
def test_a_holder_under_another_name_protects_its_fresh_part(tmp_path, kind):
    db = dbfactory.make_db(tmp_path / "data" / "opencode.db")
    path, prefix = _alias(kind, db, tmp_path)
    holder = AliasHolder(path, prefix)
    daemon = None
    try:
        if kind == "bind-mount":  # the daemon's namespace has no such path: only the file identity matches
            assert not (path.parent / db.name).exists() and any(str(path) in t for t in holder.fd_targets())
        time.sleep(1.1)  # the part starts after the holder (a later start time would make it a restart)
        stuck = dbfactory.stuck_question(db, age_s=0)
        daemon = DaemonProcess(
            tmp_path,
            [db],
            env={
                "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": f"{GRACE_S}s",
                "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
            },
        )
        status = daemon.wait_status(lambda s: s["candidates"], timeout=30, what="candidate listed")
        [cand] = status["candidates"]
        assert cand["owner"] in (f"held:{holder.proc.pid}", f"live-unreachable:{holder.proc.pid}"), cand
        time.sleep(GRACE_S + 2)
        assert dbfactory.read_data(db, "part", stuck.part_id)["state"]["status"] == "running"
    finally:
        holder.kill()
    # The same part, the same daemon: once the holder is gone it is an orphan, and repaired.
    try:
        wait_until(
            lambda: dbfactory.read_data(db, "part", stuck.part_id)["state"]["status"] == "error",
            timeout=30,
            what="repair after the holder exited",
        )
    finally:
        daemon.stop()
