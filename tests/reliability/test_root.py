"""Running as root against another user's opencode DB."""

from __future__ import annotations

import os

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, needs_root, pair_states

pytestmark = [needs_root, pytest.mark.integration]

ALICE = 4242  # a uid with no account: what matters is that it is not ours


def alices_db(tmp_path):
    folder = tmp_path / "alice"
    db = dbfactory.make_db(folder / "opencode.db")
    orphans = add_orphans(db, 2)
    for path in (folder, db):
        os.chown(path, ALICE, ALICE)
    return db, orphans


@scenario(
    "root",
    "root runs `reap` and the daemon against another user's DB (allow_other_users unset)",
    "refused: nothing written, no backup copy of their conversations, no journal row; scan/status say "
    "whose DB it is and which setting allows it",
)
def test_root_refuses_another_users_db(tmp_path, observe):
    assert os.geteuid() == 0
    db, orphans = alices_db(tmp_path)
    reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0)
    assert reap.returncode == 1, reap.stdout + reap.stderr
    assert "owned by uid 4242, not by this process's user root (uid 0)" in reap.stdout
    assert "allow_other_users = true" in reap.stdout
    daemon = DaemonProcess(tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"})
    try:
        status = daemon.wait_status(lambda s: s["candidates"], what="candidates listed")
        assert "owned by uid 4242" in status["databases"][0]["write_refusal"]
        assert all(
            c["route"].startswith("report: DB not writable (owned by uid 4242") for c in status["candidates"]
        )
        shown = cli(tmp_path, "status", state_dir=daemon.state_dir)
        assert "read-only: owned by uid 4242" in shown.stdout
    finally:
        assert daemon.stop() == 0
    assert set(pair_states(db, orphans).values()) == {"untouched"}
    assert journal_actions(tmp_path / "state") == []
    assert not (tmp_path / "state" / "backups").exists()
    observe(
        "reap: reported, exit 1: 'owned by uid 4242, not by this process's user root (uid 0): set "
        "allow_other_users = true …'",
        "daemon: route report-only, status shows the refusal",
        "no write, no journal row, no backup",
    )


@scenario(
    "root",
    "root with allow_other_users = true repairs another user's DB that has no -wal/-shm yet",
    "repaired; the -wal/-shm files SQLite creates belong to the DB's owner, so their opencode can still "
    "open it",
)
def test_root_with_allow_other_users(tmp_path, observe):
    db, orphans = alices_db(tmp_path)
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(f"{db}{suffix}")
    daemon = DaemonProcess(
        tmp_path,
        [db],
        env={
            **GRACE0,
            "OPENCODE_WATCHDOGD_ALLOW_OTHER_USERS": "true",
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
        },
    )
    try:
        wait_until(lambda: set(pair_states(db, orphans).values()) == {"repaired"}, timeout=30, what="repair")
        made = [f"{db}{s}" for s in ("-wal", "-shm") if os.path.exists(f"{db}{s}")]
        assert made, "the write left no -wal/-shm to check"
        assert {os.stat(p).st_uid for p in made} == {ALICE}
    finally:
        assert daemon.stop() == 0
    assert os.stat(db).st_uid == ALICE
    assert {os.stat(f"{db}{s}").st_uid for s in ("-wal", "-shm") if os.path.exists(f"{db}{s}")} <= {ALICE}
    observe("repaired", "-wal/-shm created during the write are owned by the DB's owner (uid 4242), not root")
