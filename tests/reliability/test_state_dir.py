"""The state dir (journal, backups, status file): full, read-only, failing at each journal step, loose modes."""

from __future__ import annotations

import os
import stat
import time

import pytest

from tests import dbfactory, passes
from tests.integration.daemonproc import DaemonProcess, wait_until
from tests.reliability.conftest import scenario
from tests.reliability.helpers import (
    GRACE0,
    add_orphans,
    cli,
    fill_disk,
    journal_actions,
    journal_lies,
    needs_root,
    pair_states,
    remount,
    tmpfs,
)
from watchdogd.db_repair import DBRepairer
from watchdogd.journal import Journal, JournalError
from watchdogd.opencode.store import OpencodeStore
from watchdogd.reconcile import reconcile


def one_pass(db, journal, settings, **more):
    return list(passes.one_pass(db, journal, settings, **more).outcomes)


def failing(monkeypatch, method: str, after_calls: int = 0):
    original = getattr(Journal, method)
    calls = []

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > after_calls:
            raise JournalError(f"journal {self.path}: database or disk is full")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Journal, method, wrapped)


@pytest.mark.parametrize("step", ["record", "update_rows"])
@scenario(
    "state_dir",
    "the journal write fails (disk full) when the action is planned, or when its after-rows are recorded",
    "no DB write happens without its journal row: the repair fails as 'journal unavailable', the rows stay "
    "as they were",
)
def test_journal_failure_before_the_write(env, monkeypatch, step, observe):
    db, settings, journal = env
    orphans = add_orphans(db, 1)
    failing(monkeypatch, step)
    [outcome] = one_pass(db, journal, settings)
    assert outcome.outcome == "failed" and outcome.detail.startswith("journal unavailable")
    assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    monkeypatch.undo()
    [again] = one_pass(db, journal, settings)
    assert again.outcome == "done"
    observe(
        f"{step} failing: outcome failed 'journal unavailable…', nothing written", "the next pass repaired it"
    )


@scenario(
    "state_dir",
    "the journal cannot record the outcome after the DB write committed (disk full at `settle`), "
    "for a part+message repair and for a message-only completion",
    "the outcome says the write happened; the `planned` row (with before/after rows) is settled as done by "
    "the next pass from the rows themselves",
)
def test_journal_failure_after_the_write(env, monkeypatch, observe):
    db, settings, journal = env
    orphans = add_orphans(db, 2)
    failing(monkeypatch, "settle")
    first = one_pass(db, journal, settings)
    assert [o.outcome for o in first] == ["done", "done"]
    assert all("journal could not record the outcome" in o.detail for o in first)
    assert set(pair_states(db, orphans).values()) == {"repaired"}
    assert [a.outcome for a in journal.recent()] == ["planned", "planned"]
    assert journal_lies(db, settings.state_dir) == []
    monkeypatch.undo()
    store = OpencodeStore(db)
    settled = reconcile(journal, {db: store})
    store.close()
    assert sorted(outcome for _a, outcome in settled) == ["done", "done"]

    # A message-only completion (what the live layer does after a PATCH): reconcile must look at the message.
    [extra] = add_orphans(db, 1)
    report, store = passes.look(db, journal, settings)
    [item] = report.assessments
    failing(monkeypatch, "settle")
    outcome = DBRepairer(settings, journal).repair(item, report, store, "test", part_change=False)
    monkeypatch.undo()
    assert outcome.outcome == "done"
    assert dbfactory.read_data(db, "message", extra.message_id)["time"]["completed"]
    [(action, result)] = reconcile(journal, {db: store})
    store.close()
    assert (action.id, result) == (outcome.action_id, "done")
    observe(
        "outcome 'done (written, but the journal could not record the outcome …)'",
        "the planned rows hold the after-rows; the next pass settled them done (message-only action too)",
    )


@needs_root
@scenario(
    "state_dir",
    "the state dir (a small tmpfs) fills up while the daemon runs and new orphans appear; "
    "then space is freed",
    "while full: no DB write happens without its journal row, the daemon keeps running and says why; "
    "after space is freed the repairs land",
)
def test_state_dir_full_under_the_daemon(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    with tmpfs(tmp_path / "statefs", size="1m") as mnt:
        state = mnt / "state"
        daemon = DaemonProcess(
            tmp_path,
            [db],
            env={**GRACE0, "OPENCODE_WATCHDOGD_WATCH__POLL_INTERVAL": "1s"},
            extra_args=["--state-dir", str(state)],
        )
        daemon.state_dir = state
        try:
            daemon.wait_status(lambda s: s["passes"] >= 1, what="first pass")
            filler = fill_disk(mnt)
            orphans = add_orphans(db, 5)
            wait_until(
                lambda: any(
                    "full" in str(line.get("error", "")) or "full" in str(line.get("detail", ""))
                    for line in daemon.log_lines()
                ),
                timeout=30,
                what="a journal/backup failure logged",
            )
            time.sleep(2)  # a few more passes while full
            assert daemon.proc.poll() is None
            assert journal_lies(db, state) == []
            assert set(pair_states(db, orphans).values()) == {"untouched"}
            filler.unlink()
            wait_until(
                lambda: set(pair_states(db, orphans).values()) == {"repaired"},
                timeout=30,
                what="repairs after space was freed",
            )
            assert journal_lies(db, state) == []
            done = [a["part_id"] for a in journal_actions(state) if a["outcome"] == "done"]
            assert sorted(done) == sorted(o.part_id for o in orphans)
        finally:
            assert daemon.stop() == 0
    observe(
        "while full: failures logged ('database or disk is full'), nothing written, daemon alive",
        "after freeing space: all 5 repaired once, journal consistent",
    )


@needs_root
@scenario(
    "state_dir",
    "the state dir is on a read-only mount when `reap` or the daemon starts",
    "refused at start with one clear line (exit 2), no traceback, the opencode DB untouched",
)
def test_read_only_state_dir(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    orphans = add_orphans(db, 1, age_s=0)  # within its grace: the seeding scan exits 0
    with tmpfs(tmp_path / "statefs") as mnt:
        seeded = cli(tmp_path, "scan", "--db", str(db), state_dir=mnt / "state")  # a journal already there
        assert seeded.returncode == 0, seeded.stderr
        remount(mnt, "ro")
        try:
            reap = cli(tmp_path, "reap", "--db", str(db), env=GRACE0, state_dir=mnt / "state")
            run = cli(tmp_path, "run", "--db", str(db), env=GRACE0, state_dir=mnt / "state", timeout=60)
        finally:
            remount(mnt, "rw")
    for result in (reap, run):
        assert result.returncode == 2, result.stdout + result.stderr
        assert "opencode-watchdogd: error: journal" in result.stderr and "read-only mount" in result.stderr
        assert "Traceback" not in result.stderr
    assert pair_states(db, orphans) == {orphans[0].part_id: "untouched"}
    observe(
        "reap and run: exit 2, 'opencode-watchdogd: error: journal …: unable to open database file (the state dir "
        "is on a read-only mount)'",
        "DB untouched",
    )


@scenario(
    "state_dir",
    "the daemon's files in the state dir were left group/world-readable (0755 backup "
    "folders, 0644 journal, status file and backups)",
    "checked at start and fixed: its folders 0700, its files 0600 (the state dir itself keeps the mode it has: "
    "see test_state_paths.py)",
)
def test_loose_modes_are_tightened_at_start(tmp_path, observe):
    db = dbfactory.make_db(tmp_path / "opencode.db")
    add_orphans(db, 1)
    state = tmp_path / "state"
    assert cli(tmp_path, "reap", "--db", str(db), env=GRACE0).returncode == 0
    (state / "status.json").write_text("{}")
    for path in state.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    result = cli(tmp_path, "history")
    assert result.returncode == 0, result.stderr
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in state.rglob("*")}
    assert all(mode == (0o700 if (tmp_path / p).is_dir() else 0o600) for p, mode in modes.items()), str(modes)
    observe(
        f"{len(modes)} of its files and folders: every folder back to 0700 and every file to 0600 by the next "
        "command's start"
    )


@needs_root
@scenario(
    "state_dir",
    "the state dir belongs to another user",
    "refused at start with one clear line (exit 2); nothing in it is changed",
)
def test_state_dir_of_another_user_is_refused(tmp_path, observe):
    state = tmp_path / "theirs"
    state.mkdir(mode=0o755)
    os.chown(state, 4242, 4242)
    result = cli(tmp_path, "history", state_dir=state)
    assert result.returncode == 2
    assert "is owned by uid 4242, not by this process (uid 0)" in result.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o755 and list(state.iterdir()) == []
    observe(
        "exit 2: 'state dir … is owned by uid 4242, not by this process (uid 0): refusing …'",
        "left as it was",
    )
