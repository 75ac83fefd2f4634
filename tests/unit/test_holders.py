"""Which processes hold a DB open, from /proc."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests import dbfactory as f
from watchdogd.opencode.holders import db_files, find_holders, is_watchdogd

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    db = f.make_db(tmp_path / "opencode.db")
    f.stuck_question(db)
    return db


def test_other_process_is_found_with_a_sane_start_time(db, tmp_path):
    other = f.make_db(tmp_path / "other.db")
    before = time.time()
    with f.holder_process(db) as proc:
        holders = find_holders([db, other])
    assert holders[other] == []
    [holder] = [h for h in holders[db] if h.pid == proc.pid]
    # /proc start times are good to about a second (boot time is whole seconds)
    assert before - 2 <= holder.started_at <= time.time() + 1
    assert "-c" in holder.cmdline and str(db) in holder.cmdline


def test_holder_with_open_read_transaction_is_found(db):
    with f.holder_process(db, "read") as proc:
        assert proc.pid in [h.pid for h in find_holders([db])[db]]


def test_gone_holder_is_not_listed(db):
    with f.holder_process(db) as proc:
        pid = proc.pid
    assert pid not in [h.pid for h in find_holders([db])[db]]


def test_our_own_process_is_excluded(db):
    conn = sqlite3.connect(db)
    try:
        conn.execute("SELECT count(*) FROM part").fetchall()
        assert os.getpid() not in [h.pid for h in find_holders([db])[db]]
    finally:
        conn.close()


def test_watchdogd_processes_are_excluded(db):
    with f.holder_process(db, argv0="opencode-watchdogd") as proc:
        assert proc.pid not in [h.pid for h in find_holders([db])[db]]


def test_symlinked_db_path_is_resolved(db, tmp_path):
    link = tmp_path / "link.db"
    link.symlink_to(db)
    with f.holder_process(db) as proc:
        assert proc.pid in [h.pid for h in find_holders([link])[link]]
    assert db_files(link) == {str(db), f"{db}-wal"}


def test_no_holders(db):
    assert find_holders([db]) == {db: []}


@pytest.mark.parametrize("cmdline, ours", [
    ("/usr/bin/python3 /home/u/.venv/bin/opencode-watchdogd run", True),
    ("opencode-watchdogd scan --json", True),
    ("/home/u/.venv/bin/python -m watchdogd reap", True),
    ("/usr/sbin/watchdogd", False),  # the hardware watchdog daemon is not us
    ("opencode serve --port 4096", False),
    ("/usr/bin/node /home/u/.opencode/bin/opencode", False),
    ("/usr/bin/python3.11 -I -m watchdogd run", True),
    ("/usr/bin/python3 -m watchdogd.cli scan", False),
    ("", False),
    # arguments are not the program: a live opencode whose prompt mentions us is still a live opencode
    ("/usr/bin/node /home/u/.opencode/bin/opencode run please run python -m watchdogd scan", False),
    ("/home/u/.opencode/bin/opencode run opencode-watchdogd", False),
    ("/usr/bin/python3 -c import os -m watchdogd", False),
    ("bash -c opencode-watchdogd", False),
])
def test_is_watchdogd(cmdline, ours):
    assert is_watchdogd(cmdline) is ours
