"""Signals (SIGHUP storms, SIGTERM mid-write, SIGTERM at random points) and wall-clock steps under the real daemon."""

from __future__ import annotations

import os
import random
import signal
import struct
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import dbfactory
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import GRACE0, add_orphans, cli, journal_actions, journal_lies, pair_states

pytestmark = pytest.mark.integration


def passes(daemon: DaemonProcess) -> int:
    return sum(1 for line in daemon.log_lines() if line.get("event") == "pass")


def actions_per_part(state_dir) -> Counter:
    return Counter(a["part_id"] for a in journal_actions(state_dir) if a["route"] == "db-repair")


@scenario(
    "signals_clock",
    "a storm of 40 SIGHUPs (5 ms apart) while the daemon repairs 60 orphans, then new orphans",
    "no duplicate actions (one journal row per part), no crash, reloads coalesce, later orphans still "
    "repaired; SIGTERM then exits 0",
)
def test_sighup_storm(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    config = tmp_path / "config.toml"
    config.write_text('[policy]\norphan_grace = "0s"\n[watch]\npoll_interval = "1h"\n')
    orphans = add_orphans(db, 60)
    daemon = DaemonProcess(tmp_path, [db], extra_args=["--config", str(config)])
    try:
        wait_until(lambda: b'"backup ' in daemon.own_log(), timeout=30, interval=0.005, what="first write")
        for _ in range(40):
            daemon.signal(signal.SIGHUP)
            time.sleep(0.005)
        wait_until(lambda: set(pair_states(db, orphans).values()) == {"repaired"}, timeout=60, what="repairs")
        later = add_orphans(db, 3)
        wait_until(
            lambda: set(pair_states(db, later).values()) == {"repaired"}, timeout=30, what="later repairs"
        )
        assert daemon.proc.poll() is None
        reloads = sum(1 for line in daemon.log_lines() if line.get("event") == "config reloaded")
        assert 1 <= reloads <= 40
    finally:
        daemon.signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=30)
        daemon.stop()
    assert code == 0
    counts = actions_per_part(daemon.state_dir)
    assert set(counts.values()) == {1} and len(counts) == 63
    assert journal_lies(db, daemon.state_dir) == []
    observe(
        "63 parts, exactly one journal action each",
        "reloads coalesced (1 to 40 'config reloaded' lines)",
        "daemon alive after the storm, exit 0 on SIGTERM",
    )


@scenario(
    "signals_clock",
    "SIGTERM while the daemon's write is blocked on a write lock another process holds",
    "graceful stop within seconds (exit 0): the blocked transaction is interrupted and rolled back, "
    "nothing half-written, never journaled as done; the next run repairs it",
)
def test_sigterm_during_a_blocked_write(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1)
    with dbfactory.holder_process(db, "write"):
        daemon = DaemonProcess(
            tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}
        )
        try:
            wait_until(
                lambda: [a for a in journal_actions(daemon.state_dir) if a["outcome"] == "planned"],
                timeout=30,
                interval=0.02,
                what="the write planned (now waiting on the lock)",
            )
            time.sleep(0.5)
            stopped = time.monotonic()
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(timeout=30)
            took = time.monotonic() - stopped
        finally:
            daemon.stop()
        assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    assert code == 0 and took < 10
    [action] = journal_actions(daemon.state_dir)
    assert action["outcome"] in ("failed", "planned")  # interrupted and settled, or left for reconcile
    again = cli(tmp_path, "reap", "--db", str(db), env=GRACE0, state_dir=daemon.state_dir)
    assert again.returncode == 0, again.stdout + again.stderr
    assert pair_states(db, orphans) == {orphans[0].part_id: "repaired"}
    outcomes = {a["id"]: a["outcome"] for a in journal_actions(daemon.state_dir)}
    assert outcomes[action["id"]] == "failed" and sorted(outcomes.values()) == ["done", "failed"]
    assert journal_lies(db, daemon.state_dir) == []
    observe(
        "exit 0 within seconds; the write rolled back; the action is 'failed' (never 'done')",
        "the next reap repaired it",
    )


@scenario(
    "signals_clock",
    "SIGTERM at 10 seeded random moments while the daemon repairs 10-40 orphans per run",
    "exit 0 every time; the action in flight finishes or rolls back and no new one starts: no half-written "
    "pair, no planned row left, the journal matches the rows",
)
def test_sigterm_at_random_points(tmp_path, observe):
    rng = random.Random(1729)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    state_dir = tmp_path / "state"
    orphans = []
    for iteration in range(10):
        orphans += add_orphans(db, rng.randint(10, 40))
        daemon = DaemonProcess(
            tmp_path, [db], env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h"}
        )
        try:
            wait_until(
                lambda d=daemon: b'"backup ' in d.own_log(), timeout=60, interval=0.005, what="first write"
            )
            time.sleep(rng.uniform(0, 0.1))
            daemon.signal(signal.SIGTERM)
            code = daemon.proc.wait(timeout=30)
        finally:
            daemon.stop()
        assert code == 0, iteration
        assert not [s for s in pair_states(db, orphans).values() if s.startswith("HALF")], iteration
        assert not [a for a in journal_actions(state_dir) if a["outcome"] == "planned"], iteration
        assert journal_lies(db, state_dir) == [], iteration
    final = cli(tmp_path, "reap", "--db", str(db), env=GRACE0, state_dir=state_dir)
    assert final.returncode == 0
    assert set(pair_states(db, orphans).values()) == {"repaired"}
    assert set(actions_per_part(state_dir).values()) == {1}
    observe(
        "10 SIGTERMs: exit 0, no half-written pair, no planned row left", "each orphan repaired exactly once"
    )


# -- clock steps ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fakeclock(clock_shim: Path) -> Path:
    return clock_shim  # built once per session by tests/conftest.py


class Clock:
    """The wall clock of the daemon subprocess only: an offset in a file its shim maps."""

    def __init__(self, shim: Path, folder: Path):
        self.path = folder / "clock-offset"
        self.path.write_bytes(struct.pack("q", 0))
        self.env = {"LD_PRELOAD": str(shim), "FAKECLOCK_FILE": str(self.path)}

    def step(self, seconds: float) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, struct.pack("q", int(seconds * 1e9)), 0)
        finally:
            os.close(fd)


@scenario(
    "signals_clock",
    "the wall clock steps back 1 h (NTP step) under a daemon polling every 1 s "
    "(clock shifted for the daemon process only, through an LD_PRELOAD shim)",
    "polls go on (the schedule is re-armed instead of sleeping out the hour); nothing repaired twice; a "
    "new orphan is still repaired",
)
def test_clock_steps_back(tmp_path, fakeclock, observe):
    clock = Clock(fakeclock, tmp_path)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    first = add_orphans(db, 3)
    daemon = DaemonProcess(
        tmp_path,
        [db],
        extra_args=["-v"],
        env={**clock.env, **GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"},
    )
    try:
        wait_until(
            lambda: set(pair_states(db, first).values()) == {"repaired"}, timeout=30, what="first repairs"
        )
        time.sleep(1.5)  # let the passes the repairs asked for run first: from here on only the poll wakes it
        counted = passes(daemon)
        clock.step(-3600)
        wait_until(lambda: passes(daemon) >= counted + 3, timeout=60, what="polls after the step")
        wait_until(
            lambda: any(line.get("event", "").startswith("wall clock jumped") for line in daemon.log_lines()),
            timeout=60,
            what="the jump logged",
        )
        later = add_orphans(db, 2)
        wait_until(
            lambda: set(pair_states(db, later).values()) == {"repaired"}, timeout=30, what="later repairs"
        )
    finally:
        assert daemon.stop() == 0
    counts = actions_per_part(daemon.state_dir)
    assert set(counts.values()) == {1} and len(counts) == 5
    observe(
        "'wall clock jumped' logged within one main-loop tick; polls continued at the 1 s interval",
        "5 parts, one action each; the new orphan repaired after the step",
    )


@scenario(
    "signals_clock",
    "the wall clock jumps forward 3 h (suspend/resume) while 3 orphans wait out a 2 h grace, "
    "poll interval 1 h",
    "the deadlines that passed during the jump fire right away (not up to a poll later), each orphan is "
    "repaired exactly once",
)
def test_clock_jumps_forward(tmp_path, fakeclock, observe):
    clock = Clock(fakeclock, tmp_path)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 3, age_s=0)  # rows changed just now: the 2 h grace counts from here
    daemon = DaemonProcess(
        tmp_path,
        [db],
        env={
            **clock.env,
            "OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE": "2h",
            "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1h",
        },
    )
    try:
        status = daemon.wait_status(lambda s: len(s["candidates"]) == 3, what="candidates seen")
        assert {c["verdict"] for c in status["candidates"]} == {"keep"}
        time.sleep(0.5)
        assert set(pair_states(db, orphans).values()) == {"untouched"}
        clock.step(3 * 3600)
        wait_until(
            lambda: set(pair_states(db, orphans).values()) == {"repaired"},
            timeout=30,
            what="repairs after the jump (a poll is 1 h away)",
        )
    finally:
        assert daemon.stop() == 0
    counts = actions_per_part(daemon.state_dir)
    assert set(counts.values()) == {1} and len(counts) == 3
    observe(
        "repaired within one main-loop tick of the jump (the next poll was 1 h away)", "one action per orphan"
    )


@scenario(
    "signals_clock",
    "the wall clock steps forward 1 h (VM restore, NTP at boot) while a process that "
    "started before the part holds the DB (btime in /proc/stat moves with the step, as the kernel's does)",
    "the holder still counts as the part's possible owner: nothing written after the step, by the daemon or "
    "by a `reap` started after it; once the holder exits the orphan is repaired",
)
def test_clock_step_forward_keeps_a_live_holder(tmp_path, fakeclock, observe):
    clock = Clock(fakeclock, tmp_path)
    db = dbfactory.make_db(tmp_path / "opencode.db")
    with dbfactory.holder_process(db) as holder:
        [part] = add_orphans(db, 1, age_s=0)  # written after the holder started: it may be that holder's run
        daemon = DaemonProcess(
            tmp_path,
            [db],
            extra_args=["-v"],
            env={**clock.env, **GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"},
        )
        try:
            held = daemon.wait_status(lambda s: len(s["candidates"]) == 1, what="the held part seen")
            counted = passes(daemon)
            clock.step(3600)
            wait_until(lambda: passes(daemon) >= counted + 3, timeout=30, what="polls after the step")
            after = daemon.status()["candidates"]
            assert pair_states(db, [part]) == {part.part_id: "untouched"}
            assert [c["verdict"] for c in after] == ["keep"]
            # A `reap` started after the step cannot see it itself: it recalls what the daemon saw.
            reap = cli(
                tmp_path, "reap", "--db", str(db), env={**clock.env, **GRACE0}, state_dir=daemon.state_dir
            )
            assert "Traceback" not in reap.stderr, reap.stderr
            assert pair_states(db, [part]) == {part.part_id: "untouched"}, reap.stdout
            holder.stdin.close()
            holder.wait(timeout=10)
            wait_until(
                lambda: pair_states(db, [part]) == {part.part_id: "repaired"},
                timeout=30,
                what="the repair once the holder exited",
            )
        finally:
            assert daemon.stop() == 0
    assert [c["verdict"] for c in held["candidates"]] == ["keep"]
    assert set(actions_per_part(daemon.state_dir).values()) == {1}
    observe(
        "kept (a possible owner holds the DB) before and after the +1 h step; not written",
        "repaired once, after the holder exited",
    )
