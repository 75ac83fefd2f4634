"""CandidateTracker: the unchanged / incremental / full modes, and what each one reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.dbfactory import (
    ID_WRAP_MS,
    add_message,
    add_session,
    add_text_part,
    add_tool_part,
    compact,
    make_db,
    make_id,
    now_ms,
    tool_state,
)
from watchdogd.opencode.store import OpencodeStore
from watchdogd.opencode.tracker import FULL, INCREMENTAL, UNCHANGED, CandidateTracker, checkpoint_targets


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Env:
    """A WAL opencode DB, a separate writer connection, and a tracker on its own store."""

    def __init__(self, path: Path, interval: float = 3600.0):
        self.path = make_db(path, "1.18.33")
        self.writer = sqlite3.connect(path, isolation_level=None, timeout=10)
        self.writer.execute("PRAGMA foreign_keys = ON")
        self.session = add_session(path)
        self.message = add_message(path, self.session)
        self.clock = FakeClock()
        self.store = OpencodeStore(path)
        self.tracker = CandidateTracker(self.store, interval, clock=self.clock)
        self.statements: list[str] = []
        self.store.reader.set_trace_callback(self.statements.append)

    def running(self, tool: str = "question", **kw) -> str:
        return add_tool_part(self.path, self.session, self.message, tool, "running", **kw)

    def set_status(self, pid: str, status: str) -> None:
        data = {
            "type": "tool",
            "tool": "question",
            "callID": "call_x",
            "state": tool_state("question", status, now_ms(), raw=False),
        }
        self.writer.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET data = excluded.data, time_updated = excluded.time_updated",
            (pid, self.message, self.session, now_ms(), now_ms(), compact(data)),
        )

    def oracle(self):
        other = OpencodeStore(self.path)
        try:
            return other.scan()
        finally:
            other.close()

    def refresh(self, **kw):
        self.statements.clear()
        cands, bad, mode = self.tracker.refresh(**kw)
        assert not self.store.reader.in_transaction
        assert (cands, sorted(bad, key=lambda b: b.part_id)) == (
            self.oracle()[0],
            sorted(self.oracle()[1], key=lambda b: b.part_id),
        )
        return cands, bad, mode

    def close(self) -> None:
        self.store.close()
        self.writer.close()


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path / "opencode.db")
    yield e
    e.close()


def ids(cands) -> list[str]:
    return [c.part_id for c in cands]


def test_checkpoint_targets_are_geometric_down_to_one():
    assert checkpoint_targets(0) == []
    assert checkpoint_targets(1) == [1]
    assert checkpoint_targets(10) == [10, 9, 7, 3, 1]
    targets = checkpoint_targets(10**6)
    assert targets[0] == 10**6 and targets[-1] == 1 and len(targets) <= 22


def test_first_pass_is_full_then_unchanged_without_touching_part(env: Env):
    pid = env.running()
    cands, bad, mode = env.refresh()
    assert mode == FULL and env.tracker.last.reason == "start"
    assert ids(cands) == [pid] and bad == []
    cands, _bad, mode = env.refresh()
    assert mode == UNCHANGED and ids(cands) == [pid]
    assert env.statements == ["PRAGMA data_version"]


def test_full_pass_reads_in_one_transaction(env: Env):
    env.running()
    env.refresh()
    assert env.statements[0] == "BEGIN" and env.statements[-1] == "COMMIT"
    assert sum(s in ("BEGIN", "COMMIT") for s in env.statements) == 2


def test_new_row_is_found_incrementally_in_one_short_transaction(env: Env):
    first = env.running()
    add_text_part(env.path, env.session, env.message)
    env.refresh()
    watermark = env.tracker.watermark
    second = env.running()
    cands, _bad, mode = env.refresh()
    assert mode == INCREMENTAL
    assert ids(cands) == [first, second]
    assert env.tracker.last.resume_rowid == watermark and env.tracker.last.known == 1
    # the unchanged-check outside, then everything else inside one BEGIN … COMMIT
    assert env.statements[:3] == ["PRAGMA data_version", "BEGIN", "PRAGMA data_version"]
    assert env.statements[-1] == "COMMIT" and env.statements.count("BEGIN") == 1
    scans = [s for s in env.statements if "data GLOB" in s]
    assert scans and all(f"rowid > {watermark}" in s for s in scans), scans
    assert not any("rowid > 0 " in s for s in env.statements)


def test_status_moves_forward_and_leaves_the_set(env: Env):
    pid = add_tool_part(env.path, env.session, env.message, "bash", "pending")
    cands, _, _ = env.refresh()
    assert [c.status for c in cands] == ["pending"]
    env.set_status(pid, "running")
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and [c.status for c in cands] == ["running"]
    env.set_status(pid, "completed")
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and cands == []


def test_upsert_of_a_candidate_updates_its_data(env: Env):
    pid = env.running()
    before, _, _ = env.refresh()
    env.set_status(pid, "running")  # same status, new data (as opencode's metadata updates)
    after, _, mode = env.refresh()
    assert mode == INCREMENTAL and after[0].data != before[0].data


def test_session_deleted_whole_cascades_out(env: Env):
    other = add_session(env.path)
    msg = add_message(env.path, other)
    gone = add_tool_part(env.path, other, msg)
    kept = env.running()
    assert set(ids(env.refresh()[0])) == {gone, kept}
    env.writer.execute("DELETE FROM session WHERE id = ?", (other,))
    cands, _, mode = env.refresh()
    assert ids(cands) == [kept] and mode == INCREMENTAL


def test_rowid_reuse_after_deleting_newest_rows_resumes_below(env: Env):
    for _ in range(20):
        add_text_part(env.path, env.session, env.message)
    env.refresh()
    top = env.tracker.watermark
    env.writer.execute("DELETE FROM part WHERE rowid > ?", (top - 3,))
    new = env.running()  # takes rowid top-2: the old watermark's rowid range is reused
    assert env.writer.execute("SELECT rowid FROM part WHERE id = ?", (new,)).fetchone()[0] == top - 2
    add_text_part(env.path, env.session, env.message)
    add_text_part(env.path, env.session, env.message)
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and ids(cands) == [new]
    assert env.tracker.last.resume_rowid < top - 2


def test_renumbered_table_forces_a_full_rescan(env: Env):
    for _ in range(10):
        add_text_part(env.path, env.session, env.message)
    env.refresh()
    env.writer.execute("DELETE FROM part WHERE rowid <= 5")
    pid = env.running()
    # What a dump/restore or an old VACUUM does: every row gets a new, dense rowid.
    env.writer.executescript(
        "BEGIN; CREATE TEMP TABLE t AS SELECT * FROM part ORDER BY rowid; DELETE FROM part;"
        " INSERT INTO part SELECT * FROM t ORDER BY rowid; DROP TABLE t; COMMIT;"
    )
    cands, _, mode = env.refresh()
    assert mode == FULL and env.tracker.last.reason == "rowids-moved" and ids(cands) == [pid]


def test_vacuum_is_seen(env: Env):
    pid = env.running()
    for _ in range(5):
        add_text_part(env.path, env.session, env.message)
    env.refresh()
    env.writer.execute("DELETE FROM part WHERE id = ?", (pid,))
    env.writer.execute("VACUUM")
    late = env.running()
    cands, _, mode = env.refresh()
    assert ids(cands) == [late] and mode in (FULL, INCREMENTAL)


def test_order_is_time_created_even_when_ids_wrap(env: Env):
    before_wrap = ID_WRAP_MS - 5_000
    after_wrap = ID_WRAP_MS + 5_000
    old = env.running(pid=make_id("prt", before_wrap), created_ms=before_wrap, start_ms=before_wrap + 12)
    env.refresh()
    new = env.running(pid=make_id("prt", after_wrap), created_ms=after_wrap, start_ms=after_wrap + 12)
    assert new < old  # the id of the newer part sorts first
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and ids(cands) == [old, new]
    # out-of-order time_created: a row written later but created earlier comes first
    early = env.running(created_ms=before_wrap - 60_000, start_ms=before_wrap - 59_000)
    cands, _, _ = env.refresh()
    assert ids(cands) == [early, old, new]


def test_bad_rows_are_tracked_like_candidates(env: Env):
    add_text_part(env.path, env.session, env.message)
    bad = add_tool_part(
        env.path,
        env.session,
        env.message,
        data='{"type":"tool","tool":"bash","state":null,"x":{"status":"running"}}',
    )
    _, found, _ = env.refresh()
    assert [b.part_id for b in found] == [bad]
    env.writer.execute("DELETE FROM part WHERE id = ?", (bad,))
    _, found, mode = env.refresh()
    assert found == [] and mode == INCREMENTAL


def test_periodic_full_rescan_and_force(env: Env):
    env.running()
    env.refresh()
    env.clock.now += 3599
    assert env.refresh()[2] == UNCHANGED
    env.clock.now += 1
    assert env.refresh()[2] == FULL and env.tracker.last.reason == "interval"
    assert env.refresh()[2] == UNCHANGED
    assert env.refresh(force_full=True)[2] == FULL and env.tracker.last.reason == "forced"


def test_the_documented_blind_spot_is_covered_by_the_periodic_rescan(env: Env):
    """An old completed part rewritten back to running: opencode never does it; the full rescan sees it."""
    pid = add_tool_part(env.path, env.session, env.message, "bash", "completed")
    env.running()
    env.tracker.refresh()
    env.set_status(pid, "running")
    cands, _, mode = env.tracker.refresh()
    assert mode == INCREMENTAL and pid not in ids(cands)
    env.clock.now += 3600
    cands, _, mode = env.tracker.refresh()
    assert mode == FULL and pid in ids(cands)


def _row(env: Env, pid: str) -> tuple[str, int]:
    return env.writer.execute("SELECT data, time_updated FROM part WHERE id = ?", (pid,)).fetchone()


def test_a_part_put_back_with_its_old_time_updated_is_seen_at_the_next_pass(env: Env):
    """`undo` (any process) restores a repaired part byte for byte, its older time_updated included: the
    next incremental pass finds it again, reading only time_updated of the parts that left."""
    pid = env.running(start_ms=now_ms() - 7_200_000)
    env.running()
    env.refresh()
    image = _row(env, pid)
    env.set_status(pid, "error")  # the repair: a newer time_updated
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and pid not in ids(cands)
    assert env.tracker.refresh()[2] == UNCHANGED
    env.writer.execute("UPDATE part SET data = ?, time_updated = ? WHERE id = ?", (*image, pid))  # the undo
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and pid in ids(cands) and env.tracker.last.known == 2
    lookups = [s for s in env.statements if s.startswith("SELECT id, time_updated FROM part")]
    assert lookups and f"'{pid}'" in lookups[0]


def test_a_departed_part_that_is_deleted_or_stays_finished_is_not_reread(env: Env):
    gone, done = env.running(), env.running()
    env.refresh()
    env.set_status(gone, "completed")
    env.set_status(done, "completed")
    env.refresh()
    env.writer.execute("DELETE FROM part WHERE id = ?", (gone,))
    env.running()
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and env.tracker.last.known == 0  # neither re-read in full
    assert gone not in ids(cands) and done not in ids(cands)
    assert env.tracker._departed.keys() == {done}


def test_reset_rescans_fully_on_a_new_connection(env: Env):
    env.running()
    env.refresh()
    conn = env.store.reader
    env.tracker.reset()
    assert env.store.reader is not conn
    _, _, mode = env.tracker.refresh()
    assert mode == FULL and env.tracker.last.reason == "reset"


def test_a_new_read_connection_never_counts_as_unchanged(env: Env):
    env.running()
    env.refresh()
    env.store.close()  # someone closed the store: data_version numbering starts again
    env.store.reader.set_trace_callback(env.statements.append)
    assert env.refresh()[2] == INCREMENTAL
    assert env.refresh()[2] == UNCHANGED


def test_replaced_file_after_reset(env: Env, tmp_path: Path):
    env.running()
    env.refresh()
    other = make_db(tmp_path / "other.db", "1.18.33")
    sid = add_session(other)
    pid = add_tool_part(other, sid, add_message(other, sid))
    env.writer.close()
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(other) + suffix)
        if src.exists():
            src.replace(Path(str(env.path) + suffix))
    env.writer = sqlite3.connect(env.path, isolation_level=None)
    env.tracker.reset()
    cands, _, mode = env.tracker.refresh()
    assert mode == FULL and ids(cands) == [pid]


def test_an_error_keeps_the_last_good_state(env: Env, monkeypatch: pytest.MonkeyPatch):
    from watchdogd.opencode.store import StoreError

    pid = env.running()
    env.refresh()
    env.running()

    def broken(*_a, **_k):
        raise StoreError("boom")

    monkeypatch.setattr(env.store, "scan", broken)
    with pytest.raises(StoreError):
        env.tracker.refresh()
    assert not env.store.reader.in_transaction
    monkeypatch.undo()
    cands, _, mode = env.refresh()
    assert mode == INCREMENTAL and len(cands) == 2 and pid in ids(cands)


def test_only_the_newest_departed_parts_are_watched(env: Env, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("watchdogd.opencode.tracker.DEPARTED_MAX", 1)
    older, newer = env.running(), env.running()
    env.refresh()
    env.set_status(older, "completed")
    env.refresh()
    env.set_status(newer, "completed")
    env.refresh()
    assert env.tracker._departed.keys() == {newer}
