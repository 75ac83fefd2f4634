"""Undo restores a row only while it still holds what the daemon wrote; reconcile settles crashed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import dbfactory as f
from tests.unit.helpers import make_settings, repair_all
from watchdogd.journal import Journal
from watchdogd.opencode.store import OpencodeStore
from watchdogd.reconcile import reconcile
from watchdogd.undo import undo_action


@pytest.fixture
def store(db: Path):
    store = OpencodeStore(db)
    yield store
    store.close()


@pytest.fixture
def repaired(db, journal, tmp_path):
    """A stuck question repaired by one reap pass: (stuck ids, original part, original message, action)."""
    stuck = f.stuck_question(db, age_s=7200)
    part, message = f.read_text(db, "part", stuck.part_id), f.read_text(db, "message", stuck.message_id)
    [outcome] = repair_all(db, journal, make_settings(tmp_path))
    assert outcome.outcome == "done"
    assert f.read_text(db, "part", stuck.part_id) != part
    return stuck, part, message, journal.action(outcome.action_id)


def overwrite(db: Path, table: str, row_id: str, data: str) -> None:
    with f.connection(db) as conn:
        conn.execute(f"UPDATE {table} SET data = ? WHERE id = ?", (data, row_id))


def test_undo_restores_both_rows(db, journal, store, repaired):
    stuck, part, message, action = repaired
    result = undo_action(journal, action, store)
    assert result.restored == [f"part {stuck.part_id}", f"message {stuck.message_id}"]
    assert result.not_restored == []
    assert f.read_text(db, "part", stuck.part_id) == part
    assert f.read_text(db, "message", stuck.message_id) == message
    assert journal.action(action.id).outcome == "undone"
    [undo] = [a for a in journal.recent() if a.undo_of == action.id]
    assert (undo.route, undo.outcome) == ("undo", "done")
    assert (undo.part_before, undo.part_after) == (action.part_after, action.part_before)
    assert (undo.message_before, undo.message_after) == (action.message_after, action.message_before)


def test_undo_skips_a_row_opencode_changed_since(db, journal, store, repaired):
    stuck, part, message, action = repaired
    newer = json.loads(action.part_after)
    newer["state"]["error"] = "The user dismissed this question"
    overwrite(db, "part", stuck.part_id, f.compact(newer))
    ours = f.read_text(db, "message", stuck.message_id)
    result = undo_action(journal, action, store)
    assert result.restored == []  # both or neither: never a part running again beside a completed message
    assert result.not_restored == [
        f"part {stuck.part_id}: the part row changed since the daemon wrote it (or was "
        "deleted, or moved to another session): nothing restored, neither row",
        f"message {stuck.message_id}: the part row changed since the daemon wrote it (or "
        "was deleted, or moved to another session): nothing restored, neither row",
    ]
    assert f.read_data(db, "part", stuck.part_id) == newer  # left exactly as opencode wrote it
    assert f.read_text(db, "message", stuck.message_id) == ours != message


def test_undo_with_nothing_left_to_restore_writes_nothing(db, journal, store, repaired):
    stuck, _part, _message, action = repaired
    with f.connection(db) as conn:
        conn.execute("DELETE FROM message WHERE id = ?", (stuck.message_id,))  # cascades to the part
    before = f.snapshot(db)
    count = len(journal.recent(100))
    result = undo_action(journal, action, store)
    assert result.restored == [] and len(result.not_restored) == 2
    assert f.snapshot(db) == before
    assert journal.action(action.id).outcome == "done"
    [undo] = journal.recent(100)[: len(journal.recent(100)) - count]  # planned first, settled skipped
    assert (undo.route, undo.outcome, undo.undo_of) == ("undo", "skipped", action.id)


def test_undo_twice_restores_nothing_the_second_time(db, journal, store, repaired):
    stuck, part, message, action = repaired
    undo_action(journal, action, store)
    again = undo_action(journal, journal.action(action.id), store)
    assert again.restored == [] and len(again.not_restored) == 2
    assert f.read_text(db, "part", stuck.part_id) == part


def test_undo_when_the_db_cannot_be_written_reports_it(db, journal, repaired, tmp_path):
    stuck, _part, _message, action = repaired
    # (a locked DB takes the same path after the 5 s busy timeout: see test_store)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database " * 300)
    bad_store = OpencodeStore(broken)
    before = f.snapshot(db)
    try:
        result = undo_action(journal, action, bad_store)
    finally:
        bad_store.close()
    assert result.restored == []
    assert [m.split(": ", 1)[0] for m in result.not_restored] == [
        f"part {stuck.part_id}",
        f"message {stuck.message_id}",
    ]
    assert all("not an SQLite database" in m for m in result.not_restored)
    assert journal.action(action.id).outcome == "done"
    assert f.snapshot(db) == before


# -- reconcile ----------------------------------------------------------------------------------------


def planned(journal: Journal, db: Path, stuck: f.Stuck, after: str | None) -> int:
    action_id = journal.record(
        db=str(db),
        session_id=stuck.session_id,
        message_id=stuck.message_id,
        part_id=stuck.part_id,
        tool="question",
        route="db-repair",
        reason="orphan",
        part_before=f.read_text(db, "part", stuck.part_id),
    )
    if after is not None:
        journal.update_rows(action_id, part_after=after)
    return action_id


def test_reconcile_write_landed(db, journal, store):
    stuck = f.stuck_question(db)
    after = f.read_text(db, "part", stuck.part_id).replace('"running"', '"error"')
    action_id = planned(journal, db, stuck, after)
    overwrite(db, "part", stuck.part_id, after)  # the write committed, then the process died
    [(action, outcome)] = reconcile(journal, {db: store})
    assert (action.id, outcome) == (action_id, "done")
    assert journal.action(action_id).outcome == "done"
    assert "confirmed from the row" in journal.action(action_id).detail


def test_reconcile_write_never_happened(db, journal, store):
    stuck = f.stuck_question(db)
    action_id = planned(journal, db, stuck, '{"never":"written"}')
    assert reconcile(journal, {db: store})[0][1] == "failed"
    assert journal.action(action_id).detail == "interrupted before the write; nothing was written"


def test_reconcile_crash_before_after_image(db, journal, store):
    stuck = f.stuck_question(db)
    action_id = planned(journal, db, stuck, None)
    assert reconcile(journal, {db: store})[0][1] == "failed"
    assert journal.action(action_id).outcome == "failed"


def test_reconcile_row_changed_since(db, journal, store):
    stuck = f.stuck_question(db)
    action_id = planned(journal, db, stuck, '{"ours":true}')
    overwrite(
        db, "part", stuck.part_id, f.read_text(db, "part", stuck.part_id).replace('"running"', '"completed"')
    )
    assert reconcile(journal, {db: store})[0][1] == "skipped"
    assert journal.action(action_id).outcome == "skipped"
    assert journal.planned() == []


def test_reconcile_leaves_actions_of_other_or_unreadable_dbs(db, journal, tmp_path):
    stuck = f.stuck_question(db)
    action_id = planned(journal, db, stuck, '{"x":1}')
    assert reconcile(journal, {}) == []
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"garbage" * 200)
    bad_store = OpencodeStore(broken)
    try:
        assert reconcile(journal, {db: bad_store}) == []
    finally:
        bad_store.close()
    assert journal.action(action_id).outcome == "planned"


def test_reconcile_ignores_settled_actions(db, journal, store, repaired):
    assert reconcile(journal, {db: store}) == []


def _updated(db: Path, table: str, row_id: str) -> int:
    with f.connection(db) as conn:
        return conn.execute(f"SELECT time_updated FROM {table} WHERE id = ?", (row_id,)).fetchone()[0]


def test_undo_puts_time_updated_back_and_checks_it(db, journal, store, repaired):
    stuck, _part, _message, action = repaired
    assert action.part_after_updated == _updated(db, "part", stuck.part_id) != action.part_before_updated
    with f.connection(db) as conn:  # opencode touched the row's time only: not what the daemon wrote
        conn.execute("UPDATE part SET time_updated = time_updated + 1 WHERE id = ?", (stuck.part_id,))
    result = undo_action(journal, action, store)
    assert result.restored == [] and "the part row changed" in result.not_restored[0]


def test_undo_of_a_row_journaled_without_times_restores_data_and_dates_it_now(db, journal, store, repaired):
    """Journal rows from before the times were recorded (NULL): `data` comes back, time_updated is now."""
    stuck, part, message, action = repaired
    journal.conn.execute(
        "UPDATE actions SET part_before_updated = NULL, part_after_updated = NULL, "
        "message_before_updated = NULL, message_after_updated = NULL WHERE id = ?",
        (action.id,),
    )
    before = f.now_ms()
    result = undo_action(journal, journal.action(action.id), store)
    assert result.not_restored == []
    assert (
        f.read_text(db, "part", stuck.part_id) == part
        and f.read_text(db, "message", stuck.message_id) == message
    )
    assert _updated(db, "part", stuck.part_id) >= before
