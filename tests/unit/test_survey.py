"""One look at a DB: sightings persist across passes, subagents decide their parent's fate."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests import dbfactory as f
from tests import passes
from tests.unit.helpers import make_settings, survey
from watchdogd.journal import Journal
from watchdogd.models import Decision, Holder, OwnerKind, Ownership


def look(db, journal, settings, now, holders=None, live=None):
    report, store = passes.look(db, journal, settings, holders, live, now)
    store.close()
    return report


def old_holder() -> Holder:
    return Holder(4242, time.time() - 10 * 86400, "opencode serve")


def test_a_fresh_orphan_waits_the_grace_across_passes(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=0)  # its row changed just now
    settings = make_settings(tmp_path, orphan_grace="30s")
    t0 = datetime.now(UTC)
    [first] = look(db, journal, settings, t0).assessments
    assert first.verdict.decision is Decision.KEEP and first.candidate.updated_ms is not None
    assert first.sighting.first_seen.timestamp() == pytest.approx(t0.timestamp())
    assert journal.sightings(str(db)) == {stuck.part_id: (t0.timestamp(), None)}
    [later] = look(db, journal, settings, t0 + timedelta(seconds=20)).assessments
    assert later.verdict.decision is Decision.KEEP and "after the part last changed" in later.verdict.reason
    [due] = look(db, journal, settings, t0 + timedelta(seconds=31)).assessments
    assert due.verdict.expired
    assert due.sighting.first_seen == first.sighting.first_seen


def test_a_week_old_orphan_is_due_at_the_first_look(tmp_path, db, journal):
    f.stuck_question(db, age_s=7 * 86400)
    [item] = look(db, journal, make_settings(tmp_path, orphan_grace="30s"), datetime.now(UTC)).assessments
    assert item.ownership.kind is OwnerKind.NONE and item.verdict.expired


def test_the_grace_counts_from_the_last_owner_sighting_of_any_command(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=3600)
    settings = make_settings(tmp_path, orphan_grace="30s")
    t0 = datetime.now(UTC)
    [held] = look(db, journal, settings, t0, [old_holder()]).assessments
    assert held.ownership.kind is OwnerKind.HELD and held.sighting.owner_seen.timestamp() == pytest.approx(
        t0.timestamp()
    )
    assert held.verdict.decision is Decision.KEEP and "policy.tools.question = 2h" in held.verdict.reason
    # Another command (a new journal connection on the same state dir) sees the owner gone 10 s later.
    other = Journal(settings.state_dir)
    try:
        [gone] = look(db, other, settings, t0 + timedelta(seconds=10)).assessments
    finally:
        other.close()
    assert gone.ownership.kind is OwnerKind.NONE and gone.verdict.decision is Decision.KEEP
    assert gone.verdict.expires_at.timestamp() == pytest.approx((t0 + timedelta(seconds=30)).timestamp())
    assert "after an owner was last seen" in gone.verdict.reason
    assert journal.sightings(str(db))[stuck.part_id][1] == pytest.approx(t0.timestamp())
    [due] = look(db, journal, settings, t0 + timedelta(seconds=30)).assessments
    assert due.verdict.expired


def test_an_owner_sighting_is_journaled_to_the_second(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=3600)
    settings = make_settings(tmp_path, orphan_grace="30s")
    t0 = datetime.now(UTC)
    look(db, journal, settings, t0, [old_holder()])
    look(db, journal, settings, t0 + timedelta(seconds=0.5), [old_holder()])
    assert journal.sightings(str(db))[stuck.part_id][1] == pytest.approx(t0.timestamp())
    look(db, journal, settings, t0 + timedelta(seconds=1.5), [old_holder()])
    assert journal.sightings(str(db))[stuck.part_id][1] == pytest.approx(t0.timestamp() + 1.5)


def test_finished_candidates_are_forgotten(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=60)
    settings = make_settings(tmp_path)
    look(db, journal, settings, datetime.now(UTC))
    assert stuck.part_id in journal.sightings(str(db))
    with f.connection(db) as conn:
        conn.execute("DELETE FROM part WHERE id = ?", (stuck.part_id,))
    look(db, journal, settings, datetime.now(UTC))
    assert journal.sightings(str(db)) == {}


def test_session_details_are_attached(tmp_path, db, journal):
    f.stuck_question(db, age_s=60, directory="/home/u/proj")
    [item] = look(db, journal, make_settings(tmp_path), datetime.now(UTC)).assessments
    assert item.candidate.directory == "/home/u/proj" and item.session.title == "Fake session title"


def _task_with_child(db, child_age_s: float | None):
    parent = f.stuck_question(db, age_s=3 * 3600, tool="task", child_session_id="ses_placeholder")
    child = f.add_session(db, parent_id=parent.session_id)
    with f.connection(db) as conn:  # point the task part at the real child
        data = f.read_text(conn, "part", parent.part_id).replace("ses_placeholder", child)
        conn.execute("UPDATE part SET data = ? WHERE id = ?", (data, parent.part_id))
    if child_age_s is not None:
        f.stuck_question(db, age_s=child_age_s, session=child)
    return parent, child


def by_tool(report):
    return {a.candidate.tool: a for a in report.assessments}


def test_task_with_a_waiting_child_is_never_reaped(tmp_path, db, journal):
    parent, child = _task_with_child(db, child_age_s=600)  # the child's question is 10 min old
    report = look(
        db,
        journal,
        make_settings(tmp_path, orphan_grace="30s", tools={"task": "1h"}),
        datetime.now(UTC),
        [old_holder()],
    )
    items = by_tool(report)
    assert items["task"].candidate.child_session_id == child
    assert items["question"].verdict.decision is Decision.KEEP
    assert items["task"].verdict.decision is Decision.NEVER
    assert "still active" in items["task"].verdict.reason


def test_task_with_a_stuck_child_frees_the_child_first(tmp_path, db, journal):
    _task_with_child(db, child_age_s=3 * 3600)
    report = look(
        db,
        journal,
        make_settings(tmp_path, tools={"task": "1h", "question": "2h"}),
        datetime.now(UTC),
        [old_holder()],
    )
    items = by_tool(report)
    assert items["question"].verdict.expired
    assert (
        items["task"].verdict.decision is Decision.KEEP and "free the child" in items["task"].verdict.reason
    )


def test_task_without_child_activity_uses_its_threshold(tmp_path, db, journal):
    _task_with_child(db, child_age_s=None)
    report = look(
        db, journal, make_settings(tmp_path, tools={"task": "1h"}), datetime.now(UTC), [old_holder()]
    )
    assert by_tool(report)["task"].verdict.expired


class FakeLive:
    def __init__(self, kind: OwnerKind, busy: bool | None):
        self.kind, self.busy, self.seen = kind, busy, []

    def ownership(self, candidate, base, holders):
        self.seen.append((candidate.part_id, base.kind))
        return Ownership(self.kind, base.pids, "http://127.0.0.1:4096")

    def child_busy(self, candidate):
        return self.busy

    def servers_reached(self):
        return []


def test_live_evidence_refines_ownership(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=60)
    live = FakeLive(OwnerKind.LIVE_IDLE, None)
    [item] = look(db, journal, make_settings(tmp_path), datetime.now(UTC), [old_holder()], live).assessments
    assert live.seen == [(stuck.part_id, OwnerKind.HELD)]
    assert (
        item.ownership.kind is OwnerKind.LIVE_IDLE and item.verdict.expired
    )  # idle on its server: an orphan


def test_live_busy_child_keeps_the_parent(tmp_path, db, journal):
    _task_with_child(db, child_age_s=None)
    report = look(
        db,
        journal,
        make_settings(tmp_path, tools={"task": "1h"}),
        datetime.now(UTC),
        [old_holder()],
        FakeLive(OwnerKind.LIVE, True),
    )
    assert by_tool(report)["task"].verdict.decision is Decision.NEVER


def test_missing_db(tmp_path, journal):
    report = look(tmp_path / "none.db", journal, make_settings(tmp_path), datetime.now(UTC))
    assert report.error == "database does not exist (yet)" and not report.ok and report.assessments == []


def test_broken_db(tmp_path, journal):
    broken = tmp_path / "opencode.db"
    broken.write_bytes(b"garbage " * 300)
    report = look(broken, journal, make_settings(tmp_path), datetime.now(UTC))
    assert report.error == "not an SQLite database" and not report.ok


def test_bad_rows_are_carried(tmp_path, db, journal):
    stuck = f.stuck_question(db, age_s=60)
    bad = f.add_tool_part(
        db, stuck.session_id, stuck.message_id, data='{"type":"tool","state":{"status":"running"'
    )
    report, store = survey(db, journal, make_settings(tmp_path))
    store.close()
    assert [b.part_id for b in report.bad_rows] == [bad] and len(report.assessments) == 1 and report.ok
