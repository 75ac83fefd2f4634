"""`kill -9` of the real daemon process at seeded random points while it repairs many orphans."""

from __future__ import annotations

import random
import sqlite3
import time

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import (
    GRACE0,
    add_orphans,
    cli,
    journal_actions,
    journal_lies,
    pair_states,
    rows,
)

pytestmark = pytest.mark.integration

SEED = 20260814
ITERATIONS = 50
ENV = {**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}


@scenario(
    "kill9",
    f"`kill -9` of the daemon at random points during reaps: {ITERATIONS} iterations, seed {SEED}; "
    "each adds 10-40 orphans, starts `opencode-watchdogd run`, and SIGKILLs it at a random delay (mostly "
    "just after its first write began, sometimes during start-up or the backup)",
    "every touched part: part and message both repaired or both untouched; the journal never claims a write "
    "that did not happen; the next run completes the work",
)
def test_kill_minus_9_at_random_points(tmp_path, observe):
    rng = random.Random(SEED)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    state_dir = tmp_path / "state"
    orphans = []
    truth: dict[int, bool] = {}  # planned action id -> did its write land (seen right after the kill)
    mid_work = 0
    for iteration in range(ITERATIONS):
        orphans += add_orphans(db, rng.randint(10, 40))
        before = pair_states(db, orphans)
        batch = [
            o for o in orphans if before[o.part_id] == "untouched"
        ]  # this run's work, leftovers included
        early = rng.random() < 0.2
        delay = rng.uniform(0.0, 1.0) if early else rng.uniform(0.0, 0.15)
        daemon = DaemonProcess(tmp_path, [db], env=ENV)
        try:
            if not early:
                wait_until(
                    lambda d=daemon: b'"backup ' in d.own_log(),
                    timeout=60,
                    interval=0.005,
                    what=f"iteration {iteration}: the first write",
                )
            time.sleep(delay)
            daemon.proc.kill()
            daemon.proc.wait(timeout=30)
        finally:
            daemon.stop()
        states = pair_states(db, orphans)
        half = {k: v for k, v in states.items() if v.startswith("HALF")}
        assert not half, f"iteration {iteration}: half-written pairs {half}"
        lies = journal_lies(db, state_dir)
        assert not lies, f"iteration {iteration}: {lies}"
        batch_states = {states[o.part_id] for o in batch}
        mid_work += batch_states == {"untouched", "repaired"}
        for action in journal_actions(state_dir):
            if action["outcome"] == "planned" and action["id"] not in truth:
                current = rows(db, "part", [action["part_id"]]).get(action["part_id"])
                truth[action["id"]] = action["part_after"] is not None and current == action["part_after"]

    # The next run completes the work and settles every interrupted action truthfully.
    final = cli(tmp_path, "reap", "--db", str(db), env=GRACE0, state_dir=state_dir)
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert set(pair_states(db, orphans).values()) == {"repaired"}
    actions = {a["id"]: a for a in journal_actions(state_dir)}
    assert not [a for a in actions.values() if a["outcome"] == "planned"]
    for action_id, written in truth.items():
        outcome = actions[action_id]["outcome"]
        assert outcome == ("done" if written else "failed"), (
            action_id,
            written,
            actions[action_id]["detail"],
        )
    done = [a["part_id"] for a in actions.values() if a["outcome"] == "done"]
    assert sorted(done) == sorted(o.part_id for o in orphans)  # each repaired exactly once
    assert journal_lies(db, state_dir) == []
    assert mid_work >= 5, f"only {mid_work} kills landed in the middle of a batch: the test lost its teeth"

    backups = sorted((state_dir / "backups").rglob("*"))
    assert not [p for p in backups if p.suffix == ".partial"], "a killed backup left its partial copy behind"
    copies = [p for p in backups if p.suffix == ".db"]
    assert 1 <= len(copies) <= 3  # backup.keep = 3
    for copy in copies:
        conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    observe(
        f"{ITERATIONS} real SIGKILLs (seeded); no half-written pair after any of them",
        "journal: every done matched the rows, every row we wrote had its journal row",
        "interrupted (planned) actions settled truthfully by the next run",
        "final reap repaired the rest: each orphan repaired exactly once",
        "no partial backup left; kept copies pass integrity_check",
    )
