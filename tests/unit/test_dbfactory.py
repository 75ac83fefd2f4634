"""The test DB factory must produce what real opencode wrote, or every other test proves little."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from tests import dbfactory as f

ID = re.compile(r"^(ses|msg|prt)_[0-9a-f]{12}[0-9A-Za-z]{14}$")


def real_rows(version: str) -> dict:
    path = f.DATA_DIR / f"opencode-{version}.stuck-rows.json"
    if not path.exists():
        pytest.skip(f"no real rows for {version}")
    return json.loads(path.read_text())


def normalise(value, directory: str):
    """Blank out what differs between runs: ids, call ids, times, the work dir."""
    if isinstance(value, dict):
        return {
            k: (
                "<t>"
                if k in ("start", "created", "completed", "end") and isinstance(v, int)
                else "<id>"
                if k in ("parentID", "callID")
                else normalise(v, directory)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v, directory) for v in value]
    if isinstance(value, str):
        return value.replace(directory, "<WORKDIR>/proj")
    return value


@pytest.mark.parametrize("version", f.VERSIONS)
def test_stuck_question_matches_real_rows(tmp_path, version):
    real = real_rows(version)
    db = f.make_db(tmp_path / "opencode.db", version)
    stuck = f.stuck_question(db, directory="/w/proj")
    part = f.read_row(db, "part", stuck.part_id)
    message = f.read_row(db, "message", stuck.message_id)
    assert normalise(json.loads(part["data"]), "/w/proj") == normalise(real["part"]["data"], "<WORKDIR>/proj")
    assert normalise(json.loads(message["data"]), "/w/proj") == normalise(
        real["message"]["data"], "<WORKDIR>/proj"
    )
    # stored compactly, key order included, as JSON.stringify does
    assert part["data"] == f.compact(json.loads(part["data"]))
    assert list(json.loads(part["data"])) == list(real["part"]["data"])
    session = f.read_row(db, "session", stuck.session_id)
    assert session["version"] == version and set(session) == set(real["session"])


@pytest.mark.parametrize("version", f.VERSIONS)
def test_real_ids_follow_the_id_scheme(version):
    real = real_rows(version)
    for kind in ("part", "message", "session"):
        assert ID.match(real[kind]["id"])
    # ascending ids carry their creation time (to the ms) in the first 12 hex digits
    part = real["part"]
    assert f.make_id("prt", part["time_created"])[:16] == part["id"][:16]
    session = real["session"]
    assert f.make_id("ses", session["time_created"], descending=True)[:16] == session["id"][:16]


def test_generated_ids():
    for make in (f.session_id, f.message_id, f.part_id):
        assert ID.match(make())
    assert len({f.part_id(1000) for _ in range(50)}) == 50
    newer, older = f.session_id(2_000_000), f.session_id(1_000_000)
    assert newer < older  # sessions sort newest first
    assert f.part_id(f.ID_WRAP_MS - 1) > f.part_id(f.ID_WRAP_MS + 1)  # and ids wrap


def test_fallback_ddl_without_dumps(tmp_path):
    db = f.make_db(tmp_path / "opencode.db", sql=f.FALLBACK_DDL)
    stuck = f.stuck_question(db)
    assert f.read_data(db, "part", stuck.part_id)["state"]["raw"] == ""
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_rows_respect_foreign_keys(tmp_path):
    db = f.make_db(tmp_path / "opencode.db")
    f.stuck_question(db, tool="task", child_session_id="ses_x")
    with f.connection(db) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        with pytest.raises(sqlite3.IntegrityError):
            f.add_message(conn, "ses_missing")


def test_task_part_shape(tmp_path):
    db = f.make_db(tmp_path / "opencode.db", "1.18.33")
    stuck = f.stuck_question(db, tool="task", child_session_id="ses_child")
    state = f.read_data(db, "part", stuck.part_id)["state"]
    assert list(state) == ["title", "metadata", "status", "input", "time"]
    assert (
        state["metadata"]["sessionId"] == "ses_child"
        and state["metadata"]["parentSessionId"] == stuck.session_id
    )
