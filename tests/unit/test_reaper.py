"""The reaper: journal first, one compare-and-set transaction, never a DB write for an owned session."""

from __future__ import annotations

import json
import sqlite3
import time

from tests import dbfactory as f
from tests.unit.helpers import make_settings, repair_all, survey
from watchdogd.journal import JournalError
from watchdogd.models import Holder
from watchdogd.opencode.repair import MARKER
from watchdogd.policy import plan_route
from watchdogd.reaper import DB_REPAIR, Reaper


def old_holder(pid: int = 4242) -> Holder:
    """A process that started long before any test part: it may own them."""
    return Holder(pid, time.time() - 10 * 86400, "opencode serve --port 4096")


def test_orphan_is_repaired(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=7200)
    part_before = f.read_text(db, "part", stuck.part_id)
    message_before = f.read_text(db, "message", stuck.message_id)
    [outcome] = repair_all(db, journal, make_settings(tmp_path))
    assert (outcome.route, outcome.outcome, outcome.ok) == (DB_REPAIR, "done", True)
    assert outcome.detail.startswith("Abandoned by opencode-watchdogd after 2h running without a result")

    part = f.read_data(db, "part", stuck.part_id)
    assert part["state"]["status"] == "error" and part["state"]["error"] == outcome.detail
    assert part["state"]["metadata"][MARKER]["action"] == outcome.action_id
    message = f.read_data(db, "message", stuck.message_id)
    assert message["time"]["completed"] >= message["time"]["created"]
    assert message["error"]["name"] == "MessageAbortedError" and "finish" not in message

    action = journal.action(outcome.action_id)
    assert (action.outcome, action.route, action.tool) == ("done", DB_REPAIR, "question")
    assert (action.part_before, action.message_before) == (part_before, message_before)
    assert action.part_after == f.read_text(db, "part", stuck.part_id)
    assert action.message_after == f.read_text(db, "message", stuck.message_id)
    assert action.detail == "part error; message completed"


def test_second_pass_finds_nothing(tmp_path, db, journal):
    f.stuck_question(db, age_s=7200)
    settings = make_settings(tmp_path)
    assert len(repair_all(db, journal, settings)) == 1
    before = f.snapshot(db)
    assert repair_all(db, journal, settings) == []
    assert f.snapshot(db) == before


def test_backup_once_per_reaper(tmp_path, db, journal):
    f.stuck_question(db, age_s=7200)
    f.stuck_question(db, age_s=3600)
    settings = make_settings(tmp_path)
    outcomes = repair_all(db, journal, settings)
    assert [o.outcome for o in outcomes] == ["done", "done"]
    backups = list((settings.state_dir / "backups").rglob("*.db"))
    assert len(backups) == 1
    # the copy is the state before the first write
    copy = sqlite3.connect(backups[0])
    assert [
        json.loads(r[0])["state"]["status"]
        for r in copy.execute("SELECT data FROM part WHERE data LIKE '%\"tool\"%'")
    ] == ["running", "running"]
    copy.close()


def test_owned_session_is_reported_not_written(tmp_path, db, journal):
    f.stuck_question(db, age_s=7200)
    settings = make_settings(tmp_path, tools={"question": "1h"})
    before = f.snapshot(db)
    [outcome] = repair_all(db, journal, settings, holders=[old_holder()])
    assert outcome.outcome == "reported" and not outcome.ok
    assert "live owner may hold it (pid 4242)" in outcome.plan.label and "no DB write" in outcome.plan.label
    assert f.snapshot(db) == before
    assert journal.recent() == []  # nothing planned, nothing to undo


def test_not_yet_due_is_left_alone(tmp_path, db, journal):
    f.stuck_question(db, age_s=60)
    before = f.snapshot(db)
    assert repair_all(db, journal, make_settings(tmp_path), holders=[old_holder()]) == []
    assert f.snapshot(db) == before


def test_dry_run_writes_nothing(tmp_path, db, journal):
    f.stuck_question(db, age_s=7200)
    settings = make_settings(tmp_path)
    before = f.snapshot(db)
    report, store = survey(db, journal, settings)
    try:
        [outcome] = Reaper(settings, journal, dry_run=True).reap(report, store)
    finally:
        store.close()
    assert (outcome.outcome, outcome.route, outcome.ok) == ("dry-run", DB_REPAIR, True)
    assert f.snapshot(db) == before and journal.recent() == []
    assert not (settings.state_dir / "backups").exists()


def test_unsupported_schema_is_report_only(tmp_path, journal):
    db = f.make_db(tmp_path / "opencode.db")
    f.stuck_question(db, age_s=7200)
    with f.connection(db) as conn:
        conn.execute("CREATE TABLE session_v2 (id text PRIMARY KEY)")
    settings = make_settings(tmp_path)
    before = f.snapshot(db)
    report, store = survey(db, journal, settings)
    try:
        assert not report.ok
        [item] = report.assessments
        assert item.verdict.expired
        assert plan_route(item, report).label.startswith("report: DB not writable (newer opencode layout")
        [outcome] = Reaper(settings, journal).reap(report, store)
    finally:
        store.close()
    assert outcome.outcome == "reported"
    assert f.snapshot(db) == before


def test_opencode_moved_on_between_read_and_write(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=7200)
    settings = make_settings(tmp_path)
    report, store = survey(db, journal, settings)
    # the user answered after the scan read the row
    answered = json.loads(f.read_text(db, "part", stuck.part_id))
    answered["state"] = f.tool_state("question", "completed", stuck.start_ms, raw=True, output="Red")
    with f.connection(db) as conn:
        conn.execute("UPDATE part SET data = ? WHERE id = ?", (f.compact(answered), stuck.part_id))
    before = f.snapshot(db)
    try:
        [outcome] = Reaper(settings, journal).reap(report, store)
    finally:
        store.close()
    assert outcome.outcome == "skipped" and "opencode moved on" in outcome.detail
    assert f.snapshot(db) == before
    assert journal.action(outcome.action_id).outcome == "skipped"


def test_backup_failure_fails_the_action_without_writing(tmp_path, db, journal, monkeypatch):
    f.stuck_question(db, age_s=7200)
    settings = make_settings(tmp_path)

    def broken_backup(*_args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("watchdogd.db_repair.take_backup", broken_backup)
    before = f.snapshot(db)
    [outcome] = repair_all(db, journal, settings)
    assert outcome.outcome == "failed" and "disk is full" in outcome.detail
    assert f.snapshot(db) == before


def test_journal_failure_means_no_write(tmp_path, db, journal, monkeypatch):
    f.stuck_question(db, age_s=7200)

    def no_journal(**_kwargs):
        raise JournalError("journal: disk I/O error")

    monkeypatch.setattr(journal, "record", no_journal)
    before = f.snapshot(db)
    [outcome] = repair_all(db, journal, make_settings(tmp_path))
    assert outcome.outcome == "failed" and "journal unavailable" in outcome.detail
    assert f.snapshot(db) == before


def test_message_already_completed_only_part_is_written(tmp_path, db, journal):
    sid = f.add_session(db)
    mid = f.add_message(db, sid, completed=True, created_ms=f.now_ms() - 7_300_000)
    pid = f.add_tool_part(db, sid, mid, "bash", start_ms=f.now_ms() - 7_200_000)
    message = f.read_text(db, "message", mid)
    [outcome] = repair_all(db, journal, make_settings(tmp_path))
    assert outcome.outcome == "done"
    assert f.read_data(db, "part", pid)["state"]["status"] == "error"
    assert f.read_text(db, "message", mid) == message
    action = journal.action(outcome.action_id)
    assert action.message_after is None and action.detail == "part error"
