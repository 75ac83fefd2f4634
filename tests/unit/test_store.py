"""The store on a real WAL file: read-only scans, compare-and-set writes, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests import dbfactory as f
from watchdogd.opencode.store import BadRow, OpencodeStore, RowChange, StoreError


@pytest.fixture
def store(db: Path):
    store = OpencodeStore(db)
    yield store
    store.close()


def test_db_is_in_wal_mode(db):
    with f.connection(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_scan_finds_only_running_and_pending_tool_parts(db, store):
    stuck = f.stuck_question(db, age_s=60)
    sid = stuck.session_id
    mid = f.add_message(db, sid, parent_id=stuck.user_message_id)
    pending = f.add_tool_part(db, sid, mid, "bash", "pending")
    f.add_tool_part(db, sid, mid, "bash", "completed")
    f.add_tool_part(db, sid, mid, "question", "error")
    # a finished tool whose *input* mentions a running status is still finished
    f.add_tool_part(db, sid, mid, "bash", "completed", input={"status": "running"})
    f.add_text_part(db, sid, mid, 'the JSON says "status":"running"')
    found, bad = store.scan()
    assert bad == []
    assert [(c.part_id, c.status) for c in found] == [(stuck.part_id, "running"), (pending, "pending")]


def test_candidate_fields(db, store):
    stuck = f.stuck_question(db, age_s=60)
    [cand], _ = store.scan()
    row = f.read_row(db, "part", stuck.part_id)
    assert cand.db == db
    assert (cand.part_id, cand.message_id, cand.session_id) == (
        stuck.part_id,
        stuck.message_id,
        stuck.session_id,
    )
    assert (cand.tool, cand.status, cand.call_id) == ("question", "running", stuck.call_id)
    assert cand.started_ms == stuck.start_ms and cand.created_ms == row["time_created"]
    assert cand.data == row["data"]  # exactly as stored: the compare-and-set key
    assert cand.child_session_id is None


def test_task_candidate_names_its_child(db, store):
    parent = f.stuck_question(db, age_s=60, tool="task", child_session_id="ses_child")
    [cand], _ = store.scan()
    assert cand.tool == "task" and cand.child_session_id == "ses_child"
    assert json.loads(cand.data)["state"]["metadata"]["parentSessionId"] == parent.session_id


def test_pending_part_has_no_start_and_uses_time_created(db, store):
    stuck = f.stuck_question(db, age_s=60, status="pending")
    [cand], _ = store.scan()
    assert cand.started_ms is None
    assert cand.start_ms == cand.created_ms == f.read_row(db, "part", stuck.part_id)["time_created"]


@pytest.mark.parametrize("version", f.VERSIONS)
def test_real_stuck_rows_are_found(tmp_path, version):
    rows_file = f.DATA_DIR / f"opencode-{version}.stuck-rows.json"
    if not rows_file.exists():
        pytest.skip(f"no real rows for {version}")
    real = json.loads(rows_file.read_text())
    db = f.make_db(tmp_path / "opencode.db", version)
    s, m, p = real["session"], real["message"], real["part"]
    f.add_session(db, s["id"], directory=s["directory"], created_ms=s["time_created"])
    f.add_message(db, s["id"], mid=m["id"], created_ms=m["time_created"], data=m["data"])
    f.add_tool_part(db, s["id"], m["id"], pid=p["id"], created_ms=p["time_created"], data=p["data"])
    store = OpencodeStore(db)
    try:
        [cand], bad = store.scan()
        assert bad == []
        assert cand.part_id == p["id"] and cand.tool == "question" and cand.status == "running"
        assert cand.started_ms == p["data"]["state"]["time"]["start"]
        assert cand.call_id == p["data"]["callID"]
        assert store.sessions([s["id"]])[s["id"]].directory == s["directory"]
    finally:
        store.close()


def test_scan_orders_by_time_created_not_id(db, store):
    # ids wrap every ~795 days: a part made just before the 2026-08-14 wrap has the larger id
    sid = f.add_session(db, created_ms=f.ID_WRAP_MS - 60_000)
    mid = f.add_message(db, sid, created_ms=f.ID_WRAP_MS - 50_000)
    before = f.add_tool_part(db, sid, mid, "bash", start_ms=f.ID_WRAP_MS - 1000)
    after = f.add_tool_part(db, sid, mid, "question", start_ms=f.ID_WRAP_MS + 1000)
    assert before > after  # ids sort the other way
    found, _ = store.scan()
    assert [c.part_id for c in found] == [before, after]
    by_id, _ = store.parts_by_id([after, before])
    assert [c.part_id for c in by_id] == [before, after]


def test_scan_after_rowid_is_incremental(db, store):
    first = f.stuck_question(db, age_s=60)
    mark = store.max_rowid()
    assert mark > 0
    assert store.scan(after_rowid=mark) == ([], [])
    second = f.stuck_question(db, age_s=30)
    found, _ = store.scan(after_rowid=mark)
    assert [c.part_id for c in found] == [second.part_id]
    assert {c.part_id for c in store.scan()[0]} == {first.part_id, second.part_id}


def test_bad_json_is_reported_not_raised(db, store):
    stuck = f.stuck_question(db, age_s=60)
    sid, mid = stuck.session_id, stuck.message_id
    broken = f.add_tool_part(db, sid, mid, data='{"type":"tool","tool":"bash","state":{"status":"running"')
    stateless = f.add_tool_part(
        db, sid, mid, data='{"type":"tool","tool":"bash","state":"x","s":{"status":"running"}}'
    )
    found, bad = store.scan()
    assert [c.part_id for c in found] == [stuck.part_id]
    assert set(bad) == {
        BadRow(broken, "part data is not valid JSON"),
        BadRow(stateless, "tool part without a state object"),
    }


def test_odd_fields_do_not_break_parsing(db, store):
    stuck = f.stuck_question(db, age_s=60)
    odd = {
        "type": "tool",
        "tool": 5,
        "callID": 7,
        "state": {"status": "running", "time": {"start": "yesterday"}, "metadata": {"sessionId": 3}},
    }
    pid = f.add_tool_part(db, stuck.session_id, stuck.message_id, data=odd)
    found, bad = store.scan()
    [cand] = [c for c in found if c.part_id == pid]
    assert (cand.tool, cand.call_id, cand.started_ms, cand.child_session_id) == ("?", None, None, None)
    assert cand.start_ms == cand.created_ms and bad == []


def test_parts_by_id(db, store):
    a = f.stuck_question(db, age_s=120)
    b = f.stuck_question(db, age_s=60)
    done = f.add_tool_part(db, b.session_id, b.message_id, "bash", "completed")
    found, bad = store.parts_by_id([b.part_id, done, a.part_id, "prt_missing"])
    assert [c.part_id for c in found] == [a.part_id, b.part_id] and bad == []
    assert store.parts_by_id([]) == ([], [])


def test_parts_by_id_many_ids(db, store):
    stuck = f.stuck_question(db, age_s=60)
    ids = [f"prt_fake{i}" for i in range(1200)] + [stuck.part_id]
    found, _ = store.parts_by_id(ids)
    assert [c.part_id for c in found] == [stuck.part_id]


def test_sessions(db, store):
    parent = f.add_session(db, directory="/home/a/proj", title="parent")
    child = f.add_session(db, parent_id=parent, directory="/home/a/proj", title="ask (@general subagent)")
    found = store.sessions([parent, child, child, "ses_missing"])
    assert set(found) == {parent, child}
    assert found[child].parent_id == parent and found[child].title == "ask (@general subagent)"
    assert found[parent].directory == "/home/a/proj" and found[parent].parent_id is None


def test_row_data(db, store):
    stuck = f.stuck_question(db, age_s=60)
    assert store.row_data("message", stuck.message_id) == f.read_text(db, "message", stuck.message_id)
    assert store.row_data("part", "prt_missing") is None


def test_queued_user_messages(db, store):
    stuck = f.stuck_question(db, age_s=60)
    sid = stuck.session_id
    queued = f.add_message(db, sid, role="user", created_ms=stuck.start_ms + 5000)
    f.add_message(db, sid, role="assistant", created_ms=stuck.start_ms + 6000)
    f.add_message(db, sid, created_ms=stuck.start_ms + 7000, data="not json")
    f.add_message(db, sid, created_ms=stuck.start_ms + 8000, data="[1, 2]")
    other = f.add_session(db)
    f.add_message(db, other, role="user", created_ms=stuck.start_ms + 9000)
    assert store.queued_user_messages(sid, stuck.start_ms) == [(queued, stuck.start_ms + 5000)]
    assert store.queued_user_messages(sid, stuck.start_ms + 5000) == []


def test_reader_is_read_only(db, store):
    f.stuck_question(db, age_s=60)
    store.scan()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.reader.execute("UPDATE part SET data = '{}'")


def test_no_read_transaction_is_left_open(db, store):
    f.stuck_question(db, age_s=60)
    store.scan()
    store.sessions(["x"])
    assert not store.reader.in_transaction
    # a writer can still checkpoint the whole WAL: nobody pins an old snapshot
    with f.connection(db) as conn:
        f.stuck_question(conn, age_s=1)
        conn.commit()
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0


def test_reads_work_while_a_writer_holds_the_lock(db, store):
    stuck = f.stuck_question(db, age_s=60)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE part SET time_updated = 1")
        # The writer holds the lock until the end of this block: a reader that had to wait for it would fail with
        # "locked" at its busy timeout instead of reading (WAL: readers never wait; a time bound is not needed).
        found, _ = store.scan()
        assert [c.part_id for c in found] == [stuck.part_id]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_data_version_tells_other_commits(db, store):
    first = store.data_version()
    store.scan()
    assert store.data_version() == first
    f.stuck_question(db, age_s=1)
    assert store.data_version() != first


def test_busy_timeout_is_at_least_five_seconds(db):
    assert OpencodeStore(db, busy_timeout=0.1).busy_timeout == 5.0
    store = OpencodeStore(db, busy_timeout=7)
    try:
        assert store.reader.execute("PRAGMA busy_timeout").fetchone()[0] == 7000
    finally:
        store.close()


# -- compare-and-set ------------------------------------------------------------------------------------


def _changes(db, stuck):
    part = f.read_text(db, "part", stuck.part_id)
    message = f.read_text(db, "message", stuck.message_id)
    part_after = part.replace('"status":"running"', '"status":"error"')
    message_after = message.replace('"time":{', '"time":{"completed":1,')
    return (
        part,
        message,
        [
            RowChange("part", stuck.part_id, part, part_after),
            RowChange("message", stuck.message_id, message, message_after),
        ],
    )


def test_compare_and_set_writes_both_rows(db, store):
    stuck = f.stuck_question(db, age_s=60)
    old_updated = f.read_row(db, "part", stuck.part_id)["time_updated"]
    _, _, changes = _changes(db, stuck)
    assert store.compare_and_set(changes) is None
    assert f.read_text(db, "part", stuck.part_id) == changes[0].after
    assert f.read_text(db, "message", stuck.message_id) == changes[1].after
    assert f.read_row(db, "part", stuck.part_id)["time_updated"] > old_updated
    assert store.scan() == ([], [])


def test_compare_and_set_miss_leaves_both_rows_untouched(db, store):
    stuck = f.stuck_question(db, age_s=60)
    part, message, changes = _changes(db, stuck)
    # opencode moved on: the message changed after we read it
    moved = message.replace('"cost":0', '"cost":1')
    with f.connection(db) as conn:
        conn.execute("UPDATE message SET data = ? WHERE id = ?", (moved, stuck.message_id))
    before = f.snapshot(db)
    assert store.compare_and_set(changes) == "message"
    assert f.snapshot(db) == before  # the part update in the same transaction was rolled back
    assert f.read_text(db, "part", stuck.part_id) == part


def test_compare_and_set_miss_on_part(db, store):
    stuck = f.stuck_question(db, age_s=60)
    _, _, changes = _changes(db, stuck)
    with f.connection(db) as conn:
        conn.execute("DELETE FROM part WHERE id = ?", (stuck.part_id,))
    before = f.snapshot(db)
    assert store.compare_and_set(changes) == "part"
    assert f.snapshot(db) == before


def test_compare_and_set_locked_writer_raises_and_writes_nothing(db, store):
    stuck = f.stuck_question(db, age_s=60)
    _, _, changes = _changes(db, stuck)
    before = f.snapshot(db)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            store.compare_and_set(changes)
        assert time.monotonic() - started >= 4.0  # it waited for the busy timeout before giving up
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    message = str(info.value)
    assert message.startswith(f"{db}: write failed: database is locked") and "\n" not in message
    assert f.snapshot(db) == before


def test_non_sqlite_file(tmp_path):
    path = tmp_path / "opencode.db"
    path.write_bytes(b"this is not a database, just some text long enough to have a header" * 20)
    store = OpencodeStore(path)
    try:
        for call in (
            store.schema,
            store.scan,
            lambda: store.compare_and_set([RowChange("part", "p", "a", "b")]),
        ):
            with pytest.raises(StoreError, match="not an SQLite database"):
                call()
    finally:
        store.close()
    assert path.read_bytes().startswith(b"this is not")


def test_missing_file_is_a_store_error(tmp_path):
    store = OpencodeStore(tmp_path / "gone.db")
    with pytest.raises(StoreError, match="cannot open"):
        store.scan()
    assert not (tmp_path / "gone.db").exists()  # read-only open never creates it
