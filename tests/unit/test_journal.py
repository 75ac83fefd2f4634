"""The daemon's own state DB: private, every action planned then settled, sightings kept per DB."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from watchdogd.journal import Journal, JournalError
from watchdogd.models import Outcome


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plan(journal: Journal, **extra) -> int:
    fields = dict(
        db="/d/opencode.db",
        session_id="ses_1",
        message_id="msg_1",
        part_id="prt_1",
        tool="question",
        route="db-repair",
        reason="orphan",
        part_before='{"a":1}',
        message_before='{"m":1}',
    )
    fields.update(extra)
    return journal.record(**fields)


def test_state_dir_and_files_are_private(tmp_path):
    state = tmp_path / "deep" / "state"
    journal = Journal(state)
    try:
        plan(journal)  # make sure the WAL exists
        assert mode(state) == 0o700
        files = [p for p in state.iterdir() if p.name.startswith("journal.db")]
        assert state / "journal.db" in files
        for file in files:
            assert mode(file) == 0o600, file
    finally:
        journal.close()


def test_state_dir_is_created_private(tmp_path):
    state = tmp_path / "state"
    Journal(state).close()
    assert mode(state) == 0o700


def test_a_directory_we_did_not_create_keeps_its_mode(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o2755)  # setgid, group-readable: someone else's choice
    (home / "notes.txt").write_text("x")
    (home / "notes.txt").chmod(0o644)
    Journal(home).close()
    Journal(home).close()  # the second start too: holding our journal does not make the directory ours
    assert mode(home) == 0o2755 and mode(home / "notes.txt") == 0o644
    assert mode(home / "journal.db") == 0o600


def test_loose_journal_file_is_tightened(tmp_path):
    state = tmp_path / "state"
    Journal(state).close()
    (state / "journal.db").chmod(0o644)
    Journal(state).close()
    assert mode(state / "journal.db") == 0o600


def test_unusable_state_dir_is_a_journal_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match=r"state dir .*file/state"):
        Journal(blocker / "state")


def test_plan_then_settle(journal):
    run = journal.start_run("reap")
    assert journal.start_run("again") == run  # one run per process
    action_id = plan(journal)
    planned = journal.action(action_id)
    assert planned.outcome == "planned" and planned.run_id == run
    assert (planned.part_before, planned.part_after, planned.message_before, planned.message_after) == (
        '{"a":1}',
        None,
        '{"m":1}',
        None,
    )
    assert journal.planned() == [planned]

    journal.update_rows(action_id, part_after='{"a":2}', message_after='{"m":2}')
    journal.settle(action_id, "done", "part error; message completed", server_version="1.15.3")
    done = journal.action(action_id)
    assert (done.outcome, done.detail, done.server_version) == (
        "done",
        "part error; message completed",
        "1.15.3",
    )
    assert (done.part_after, done.message_after, done.message_before) == ('{"a":2}', '{"m":2}', '{"m":1}')
    assert journal.planned() == []
    assert done.when.tzinfo is not None and abs(done.when.timestamp() - done.time) < 1e-6


def test_update_rows_keeps_values_not_given(journal):
    action_id = plan(journal)
    journal.update_rows(action_id, part_after="p2")
    journal.update_rows(action_id, message_after="m2")
    action = journal.action(action_id)
    assert (action.part_after, action.message_after, action.message_before) == ("p2", "m2", '{"m":1}')


def test_settle_rejects_unknown_outcomes(journal):
    with pytest.raises(AssertionError):
        journal.settle(plan(journal), "maybe")


def test_recent_is_newest_first_and_limited(journal):
    ids = [plan(journal, part_id=f"prt_{i}") for i in range(5)]
    assert [a.id for a in journal.recent(3)] == ids[::-1][:3]
    assert journal.action(9999) is None


def test_actions_survive_reopening(tmp_path):
    state = tmp_path / "state"
    first = Journal(state)
    action_id = plan(first)
    first.settle(action_id, "done")
    first.close()
    again = Journal(state)
    try:
        assert again.action(action_id).outcome == "done"
        assert again.start_run("next") != first.run_id
    finally:
        again.close()


def test_last_write_run(tmp_path):
    state = tmp_path / "state"
    first = Journal(state)
    first.start_run("reap")
    written = plan(first, part_id="prt_a")
    first.settle(written, "done")
    skipped = plan(first, part_id="prt_b")
    first.settle(skipped, "skipped")
    first.close()

    second = Journal(state)  # a later run that wrote nothing
    second.start_run("reap")
    second.settle(plan(second, part_id="prt_c"), "reported")
    second.settle(plan(second, part_id="prt_d"), "failed")
    try:
        assert [a.id for a in second.last_write_run()] == [written]
    finally:
        second.close()


def test_last_write_run_ignores_undo_rows(tmp_path):
    state = tmp_path / "state"
    reap = Journal(state)
    reap.start_run("reap")
    a, b = plan(reap, part_id="prt_a"), plan(reap, part_id="prt_b")
    reap.settle(a, "done")
    reap.settle(b, "done")
    reap.close()

    undo = Journal(state)
    undo.start_run("undo")
    try:
        undo.settle(a, "undone")
        undo.record(
            db="/d/opencode.db",
            session_id="ses_1",
            message_id="msg_1",
            part_id="prt_a",
            tool="question",
            route="undo",
            reason="undo of action",
            outcome="done",
            undo_of=a,
        )
        last = undo.last_write_run()
        assert sorted(x.id for x in last) == [a, b]
        assert {x.id: x.outcome for x in last} == {a: "undone", b: "done"}
    finally:
        undo.close()


def test_empty_journal_has_no_last_run(journal):
    assert journal.last_write_run() == []
    assert journal.recent() == [] and journal.planned() == []


def test_sightings_per_db(journal):
    assert journal.sightings("/d/a.db") == {}
    journal.record_sightings("/d/a.db", {"prt_1": (100.0, None), "prt_2": (200.0, 250.0)})
    journal.record_sightings("/d/b.db", {"prt_9": (1.0, 2.0)})
    assert journal.sightings("/d/a.db") == {"prt_1": (100.0, None), "prt_2": (200.0, 250.0)}
    # a replace forgets candidates no longer live, for that DB only
    journal.record_sightings("/d/a.db", {"prt_2": (200.0, 250.0)})
    assert journal.sightings("/d/a.db") == {"prt_2": (200.0, 250.0)}
    assert journal.sightings("/d/b.db") == {"prt_9": (1.0, 2.0)}
    journal.record_sightings("/d/a.db", {})
    assert journal.sightings("/d/a.db") == {}
    assert not journal.conn.in_transaction


FIELDS = dict(
    db="/d/opencode.db",
    session_id="ses_1",
    message_id="msg_1",
    part_id="prt_1",
    tool="question",
    route="db-repair",
    reason="orphan",
    part_before='{"a":1}',
)


def test_a_journaled_action_is_planned_first_and_settled_by_the_action(tmp_path):
    journal = Journal(tmp_path / "state")
    with journal.journaled(**FIELDS) as action:
        assert journal.action(action.id).outcome == "planned"  # on record before the action writes anything
        action.rows(part_after='{"a":2}')
        action.settle(Outcome.DONE, "part error")
    row = journal.action(action.id)
    assert (row.outcome, row.detail, row.part_after) == ("done", "part error", '{"a":2}')


def test_any_exception_in_a_journaled_action_settles_it_failed_and_is_raised(tmp_path):
    journal = Journal(tmp_path / "state")
    with pytest.raises(KeyError), journal.journaled(**FIELDS) as action:
        raise KeyError("no such row")
    assert (journal.action(action.id).outcome, journal.action(action.id).detail) == (
        "failed",
        "'no such row'",
    )


def test_a_journal_error_leaves_the_row_planned_for_reconcile(tmp_path):
    journal = Journal(tmp_path / "state")
    with pytest.raises(JournalError), journal.journaled(**FIELDS) as action:
        raise JournalError("disk full")
    assert journal.action(action.id).outcome == "planned"


def test_the_rows_of_one_event_share_its_first_row_as_group(tmp_path):
    journal = Journal(tmp_path / "state")
    with journal.journaled(**{**FIELDS, "route": "reject-question"}) as free:
        free.settle(Outcome.DONE)
    with journal.journaled(**{**FIELDS, "route": "patch-part"}, group_of=free.id) as patch:
        patch.settle(Outcome.DONE)
    assert [(a.route, a.group_of) for a in journal.recent()] == [
        ("patch-part", free.id),
        ("reject-question", None),
    ]


def test_an_older_journal_gains_the_group_column(tmp_path):
    import sqlite3

    state = tmp_path / "state"
    Journal(state).close()
    conn = sqlite3.connect(state / "journal.db")
    conn.execute("ALTER TABLE actions DROP COLUMN group_of")
    conn.close()
    journal = Journal(state)
    action_id = plan(journal)
    assert journal.action(action_id).group_of is None


def test_undone_is_the_last_done_undo_of_each_part(journal):
    first = plan(journal, route="undo", part_after='{"a":1}', part_after_updated=5)
    journal.settle(first, "done")
    later = plan(journal, route="undo", part_after='{"a":2}', part_after_updated=7)
    journal.settle(later, "done")
    journal.settle(plan(journal, route="undo", part_after='{"a":3}'), "skipped")  # nothing restored
    journal.settle(plan(journal, route="db-repair", part_after='{"a":4}'), "done")
    found = journal.undone("/d/opencode.db", ["prt_1", "prt_other"])
    assert list(found) == ["prt_1"]
    assert (found["prt_1"].action_id, found["prt_1"].part_data, found["prt_1"].part_updated) == (
        later,
        '{"a":2}',
        7,
    )
    assert journal.undone("/elsewhere.db", ["prt_1"]) == {}


def test_prune_keeps_planned_rows_the_last_write_run_and_each_parts_last_undo(journal):
    old_failure = plan(journal, part_id="prt_f")
    journal.settle(old_failure, "failed")
    planned = plan(journal, part_id="prt_p")
    journal.next_run("run")
    undo = plan(journal, route="undo", undo_of=old_failure, part_after='{"a":1}')
    journal.settle(undo, "done")
    journal.next_run("run")
    last = plan(journal, part_id="prt_l")
    journal.settle(last, "done")
    later = time.time() + 100 * 86400
    assert journal.prune(float("inf"), now=later) == 0  # journal.keep = never
    assert journal.prune(30 * 86400) == 0  # nothing is old yet
    assert journal.prune(30 * 86400, now=later) == 1
    assert {a.id for a in journal.recent()} == {planned, undo, last}
    runs = journal.conn.execute("SELECT count(*) FROM runs WHERE id NOT IN (SELECT run_id FROM actions)")
    assert runs.fetchone()[0] == 0
