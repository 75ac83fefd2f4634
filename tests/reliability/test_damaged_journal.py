"""A damaged journal: the daemon keeps looking but writes nothing, and says so with the fix in one line."""

from __future__ import annotations

import json
import random
import re
import subprocess

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, NotifySocket, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, pair_states

pytestmark = pytest.mark.integration

POLL_1S = {"OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"}
FIX = re.compile(r"move it aside: (cd \S+ && mkdir \S+ && mv \S+ \S+)")


def garbage(path, size: int = 8192) -> None:
    path.write_bytes(random.Random(20261202).randbytes(size))


def damage(tmp_path, kind: str) -> None:
    """Put a damaged journal.db into tmp/state the way each kind happens for real."""
    state = tmp_path / "state"
    if kind == "directory":
        state.mkdir(mode=0o700)
        (state / "journal.db").mkdir()
        return
    if kind == "garbage":
        state.mkdir(mode=0o700)
        garbage(state / "journal.db")
        return
    # truncated: a real journal (a `reap` that repaired something), cut in the middle of its pages
    other = dbfactory.make_db(tmp_path / "other" / "opencode.db")
    add_orphans(other, 3)
    done = cli(tmp_path, "reap", "--db", str(other), env=GRACE0)
    assert done.returncode == 0, done.stderr
    journal = state / "journal.db"
    size = journal.stat().st_size
    assert size > 8192 and not (state / "journal.db-wal").exists()  # the reap checkpointed on close
    with open(journal, "r+b") as handle:
        handle.truncate(size // 2 + 100)


def one_line_with_the_fix(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    assert "is damaged" in lines[0] and FIX.search(lines[0]), lines[0]
    return lines[0]


@scenario(
    "journal",
    "journal.db is damaged when the daemon starts: 8 KiB of garbage bytes, a real journal truncated in the "
    "middle of its pages, or a directory in its place; an orphan waits in the watched DB; `run` with a real "
    "NOTIFY_SOCKET",
    "the daemon runs READ-ONLY: READY=1; STATUS=, `status` and `status --json` say 'journal … is damaged (why)' "
    "with the one-line fix; the orphan is listed, never written; `reap` exits 2 with that one line, no "
    "traceback; `scan` lists the orphan with that line, exit 2; after the fix is run as written, the next pass "
    "starts a new journal and repairs the orphan",
)
@pytest.mark.parametrize("kind", ["garbage", "truncated", "directory"])
def test_damaged_journal_at_start(tmp_path, observe, kind):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1)
    damage(tmp_path, kind)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, **POLL_1S}, notify=notify)
    try:
        notify.wait_for("READY=1")
        line = notify.wait_for("STATUS=READ-ONLY: journal")
        assert "is damaged" in line and FIX.search(line), line
        shown = daemon.wait_status(lambda s: s["passes"] >= 3 and s["candidates"], what="3 read-only passes")
        assert shown["read_only"] and FIX.search(shown["read_only"])
        assert set(pair_states(db, orphans).values()) == {"untouched"}
        text = cli(tmp_path, "status")
        assert text.returncode == 0 and "READ-ONLY:   journal" in text.stdout, text.stdout
        assert text.stdout.count("is damaged") == 1, text.stdout  # said once, on its own line
        as_json = json.loads(cli(tmp_path, "status", "--json").stdout)
        assert as_json["running"] and as_json["status"]["read_only"] and as_json["journal_damaged"]
        reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
        assert reap.returncode == 2, reap.stdout
        said = one_line_with_the_fix(reap.stderr)
        assert set(pair_states(db, orphans).values()) == {"untouched"}
        scan = cli(tmp_path, "scan", "--json", "--db", str(db), env=GRACE0)  # writes nothing: still explains
        assert scan.returncode == 2 and one_line_with_the_fix(scan.stderr)
        assert [c["part_id"] for c in json.loads(scan.stdout)] == [o.part_id for o in orphans]

        fix = FIX.search(shown["read_only"]).group(1)
        assert subprocess.run(["sh", "-c", fix], capture_output=True).returncode == 0
        wait_until(
            lambda: set(pair_states(db, orphans).values()) == {"repaired"},
            timeout=60,
            what="the orphan repaired once the journal was moved aside",
        )
        healthy = daemon.wait_status(lambda s: not s["read_only"], what="a status without READ-ONLY")
        assert not healthy["status_line"].startswith("READ-ONLY")
        assert daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        notify.close()
    assert code == 0
    why = re.search(r"is damaged \(([^)]*)\)", said).group(1)
    observe(
        f"{kind}: read-only ('is damaged ({why})' in STATUS=, status, status --json and reap's one line, exit 2; "
        "scan lists the orphan under that line, exit 2)",
        "orphan untouched over 3 passes; after the fix line: new journal, orphan repaired",
    )


@scenario(
    "journal",
    "journal.db is overwritten with garbage while the daemon runs; then a new orphan appears",
    "the next pass finds the journal damaged and goes READ-ONLY (said in STATUS= and `status` with the fix); "
    "the new orphan is never written; the daemon keeps running",
)
def test_journal_damaged_while_running(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    first = add_orphans(db, 1)
    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, **POLL_1S}, notify=notify)
    try:
        notify.wait_for("READY=1")
        wait_until(
            lambda: set(pair_states(db, first).values()) == {"repaired"}, timeout=60, what="first repair"
        )
        garbage(daemon.state_dir / "journal.db", 4096)  # in place: same inode, its first pages now garbage
        line = notify.wait_for("STATUS=READ-ONLY: journal")
        assert "is damaged (file is not a database)" in line and FIX.search(line), line
        later = add_orphans(db, 1)
        passes = daemon.wait_status(lambda s: s.get("read_only"), what="a READ-ONLY status")["passes"]
        daemon.wait_status(lambda s: s["passes"] >= passes + 3 and s["candidates"], what="3 more passes")
        assert set(pair_states(db, later).values()) == {"untouched"}
        assert "READ-ONLY:   journal" in cli(tmp_path, "status").stdout
        assert daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        notify.close()
    assert code == 0
    observe(
        "READ-ONLY: 'is damaged (file is not a database)' in STATUS= and status, with the fix line",
        "the orphan that appeared afterwards untouched over 3 passes; daemon alive, exit 0",
    )
