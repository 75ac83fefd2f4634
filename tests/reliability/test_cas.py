"""Compare-and-set: opencode writes the same row between the daemon's read and its write."""

from __future__ import annotations

import json
import sqlite3

from tests import dbfactory, passes
from tests.reliability.conftest import scenario
from tests.reliability.helpers import is_completed_message, is_repaired_part
from watchdogd.opencode.store import OpencodeStore
from watchdogd.undo import undo_action


def one_pass(db, journal, settings):
    return list(passes.one_pass(db, journal, settings).outcomes)


def opencode_writes(db, sql: str, *params) -> None:
    """Another connection commits, as opencode would."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def interfere_before_write(monkeypatch, action) -> list[int]:
    """Run `action` once, right before the daemon's compare-and-set transaction."""
    calls = []
    original = OpencodeStore.compare_and_set

    def wrapped(self, changes):
        if not calls:
            calls.append(1)
            action()
        return original(self, changes)

    monkeypatch.setattr(OpencodeStore, "compare_and_set", wrapped)
    return calls


def completed_part(data: str) -> str:
    value = json.loads(data)
    value["state"] = {
        "status": "completed",
        "input": value["state"]["input"],
        "output": "Red",
        "title": "",
        "metadata": {},
        "time": {"start": value["state"]["time"]["start"], "end": 1},
    }
    return dbfactory.compact(value)


@scenario(
    "cas",
    "opencode completes the part (the user answered) between the daemon's read and its write",
    "compare-and-set miss: nothing clobbered, journaled as skipped, re-evaluated next pass",
)
def test_part_completed_between_read_and_write(env, monkeypatch, observe):
    db, settings, journal = env
    stuck = dbfactory.stuck_question(db)
    before_message = dbfactory.read_text(db, "message", stuck.message_id)
    answered = completed_part(dbfactory.read_text(db, "part", stuck.part_id))
    interfere_before_write(
        monkeypatch, lambda: opencode_writes(db, "UPDATE part SET data=? WHERE id=?", answered, stuck.part_id)
    )
    [outcome] = one_pass(db, journal, settings)
    assert outcome.outcome == "skipped" and "changed since it was read" in outcome.detail
    assert dbfactory.read_text(db, "part", stuck.part_id) == answered  # opencode's answer kept
    assert dbfactory.read_text(db, "message", stuck.message_id) == before_message
    [action] = journal.recent()
    assert action.outcome == "skipped"
    monkeypatch.undo()
    assert one_pass(db, journal, settings) == []  # next pass: no longer a candidate
    assert dbfactory.read_text(db, "part", stuck.part_id) == answered
    observe(
        "compare-and-set missed; the user's answer kept, message untouched",
        "journaled skipped",
        "next pass: no candidate, nothing written",
    )


@scenario(
    "cas",
    "opencode rewrites the still-running part (new metadata) between read and write",
    "compare-and-set miss, skipped; the next pass re-reads the row and repairs the new version",
)
def test_running_part_updated_between_read_and_write(env, monkeypatch, observe):
    db, settings, journal = env
    stuck = dbfactory.stuck_question(db)
    value = dbfactory.read_data(db, "part", stuck.part_id)
    value["state"]["title"] = "asking again"
    newer = dbfactory.compact(value)
    interfere_before_write(
        monkeypatch, lambda: opencode_writes(db, "UPDATE part SET data=? WHERE id=?", newer, stuck.part_id)
    )
    [outcome] = one_pass(db, journal, settings)
    assert outcome.outcome == "skipped"
    assert dbfactory.read_text(db, "part", stuck.part_id) == newer
    monkeypatch.undo()
    [again] = one_pass(db, journal, settings)
    assert again.outcome == "done"
    part = dbfactory.read_text(db, "part", stuck.part_id)
    assert is_repaired_part(part) and json.loads(part)["state"]["title"] == "asking again"
    assert is_completed_message(dbfactory.read_text(db, "message", stuck.message_id))
    actions = journal.recent()
    assert [a.outcome for a in actions] == ["done", "skipped"] and actions[0].part_before == newer
    observe(
        "first pass skipped (nothing written)",
        "second pass repaired the version opencode wrote",
        "journal: skipped then done, before-image = opencode's newer row",
    )


@scenario(
    "cas",
    "opencode updates the assistant message between the daemon's read and its write",
    "the part and message are one transaction: neither is written; skipped, repaired next pass",
)
def test_message_updated_between_read_and_write(env, monkeypatch, observe):
    db, settings, journal = env
    stuck = dbfactory.stuck_question(db)
    part_before = dbfactory.read_text(db, "part", stuck.part_id)
    value = dbfactory.read_data(db, "message", stuck.message_id)
    value["tokens"]["output"] = 42
    newer = dbfactory.compact(value)
    interfere_before_write(
        monkeypatch,
        lambda: opencode_writes(db, "UPDATE message SET data=? WHERE id=?", newer, stuck.message_id),
    )
    [outcome] = one_pass(db, journal, settings)
    assert outcome.outcome == "skipped" and "message" in outcome.detail
    assert dbfactory.read_text(db, "part", stuck.part_id) == part_before  # rolled back with the message
    assert dbfactory.read_text(db, "message", stuck.message_id) == newer
    monkeypatch.undo()
    [again] = one_pass(db, journal, settings)
    assert again.outcome == "done"
    message = dbfactory.read_data(db, "message", stuck.message_id)
    assert message["tokens"]["output"] == 42 and message["time"]["completed"]
    observe(
        "part not written either (one transaction rolled back)",
        "journaled skipped",
        "next pass completed opencode's newer message",
    )


@scenario(
    "cas",
    "the session is deleted (rows gone) between read and write",
    "nothing written, no row resurrected, journaled as skipped",
)
def test_rows_deleted_between_read_and_write(env, monkeypatch, observe):
    db, settings, journal = env
    stuck = dbfactory.stuck_question(db)

    def delete():
        conn = sqlite3.connect(db, timeout=10)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM session WHERE id=?", (stuck.session_id,))
        conn.commit()
        conn.close()

    interfere_before_write(monkeypatch, delete)
    [outcome] = one_pass(db, journal, settings)
    assert outcome.outcome == "skipped"
    assert dbfactory.read_row(db, "part", stuck.part_id) is None
    assert dbfactory.read_row(db, "message", stuck.message_id) is None
    assert journal.recent()[0].outcome == "skipped"
    observe("zero rows matched: skipped", "no row re-created")


@scenario(
    "cas",
    "undo after opencode rewrote a row the daemon had repaired",
    "undo restores part and message together or neither (one compare-and-set transaction on both); "
    "opencode's row is kept",
)
def test_undo_never_clobbers(env, observe):
    db, settings, journal = env
    stuck = dbfactory.stuck_question(db)
    [done] = one_pass(db, journal, settings)
    assert done.outcome == "done"
    value = dbfactory.read_data(db, "part", stuck.part_id)
    value["state"]["title"] = "opencode touched it after us"
    theirs = dbfactory.compact(value)
    opencode_writes(db, "UPDATE part SET data=? WHERE id=?", theirs, stuck.part_id)
    message_ours = dbfactory.read_text(db, "message", stuck.message_id)
    store = OpencodeStore(db)
    try:
        result = undo_action(journal, journal.action(done.action_id), store)
    finally:
        store.close()
    assert dbfactory.read_text(db, "part", stuck.part_id) == theirs
    assert any("changed since the daemon wrote it" in r for r in result.not_restored)
    assert dbfactory.read_text(db, "message", stuck.message_id) == message_ours  # neither: never half-undone
    assert result.restored == []
    observe(
        "part left as opencode wrote it (NOT restored, said so)",
        "message NOT restored either (both or neither: never a running part beside a completed message)",
    )
