"""The schema gate: write only to the v1 layout."""

from __future__ import annotations

import sqlite3

import pytest

from tests import dbfactory
from watchdogd.opencode.schema import check_schema


def conn_for(tmp_path, version="1.15.3", sql=None) -> sqlite3.Connection:
    path = dbfactory.make_db(tmp_path / "opencode.db", version, sql=sql)
    return sqlite3.connect(path)


@pytest.mark.parametrize("version", dbfactory.VERSIONS)
def test_real_layouts_are_writable(tmp_path, version):
    if not dbfactory.schema_path(version).exists():
        pytest.skip(f"no schema dump for {version}")
    verdict = check_schema(conn_for(tmp_path, version))
    assert verdict.writable and verdict.label == "v1"
    assert "v1" in verdict.reason
    # both releases have the event tables (1.15.3 leaves them empty)
    assert verdict.has_event_log


def test_fallback_layout_is_writable_without_event_log(tmp_path):
    verdict = check_schema(conn_for(tmp_path, sql=dbfactory.FALLBACK_DDL))
    assert verdict.writable and not verdict.has_event_log


def test_event_log_needs_both_tables(tmp_path):
    conn = conn_for(tmp_path, sql=dbfactory.FALLBACK_DDL)
    conn.execute(
        "CREATE TABLE event (id text PRIMARY KEY, aggregate_id text, seq integer, type text, data text)"
    )
    assert not check_schema(conn).has_event_log
    conn.execute("CREATE TABLE event_sequence (aggregate_id text PRIMARY KEY, seq integer NOT NULL)")
    assert check_schema(conn).has_event_log


@pytest.mark.parametrize("table", ["part", "message", "session"])
def test_missing_table(tmp_path, table):
    conn = conn_for(tmp_path, sql=dbfactory.FALLBACK_DDL)
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"DROP TABLE {table}")
    verdict = check_schema(conn)
    assert not verdict.writable and verdict.label == "unsupported"
    assert verdict.reason == f"not an opencode v1 database: table {table!r} is missing"


def test_empty_file_is_not_opencode(tmp_path):
    conn = sqlite3.connect(tmp_path / "empty.db")
    assert not check_schema(conn).writable


MINIMAL = {
    "session": ["id", "project_id", "parent_id", "directory", "title", "time_created", "time_updated"],
    "message": ["id", "session_id", "time_created", "time_updated", "data"],
    "part": ["id", "message_id", "session_id", "time_created", "time_updated", "data"],
}


def minimal_db(tmp_path, drop: tuple[str, str] | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "minimal.db")
    for table, columns in MINIMAL.items():
        kept = [c for c in columns if (table, c) != drop]
        conn.execute(f"CREATE TABLE {table} ({', '.join(kept)})")
    return conn


def test_minimal_v1_columns_are_enough(tmp_path):
    assert check_schema(minimal_db(tmp_path)).writable


@pytest.mark.parametrize(
    "table, column",
    [
        ("part", "data"),
        ("message", "time_created"),
        ("session", "directory"),
        ("part", "message_id"),
        ("session", "parent_id"),
    ],
)
def test_missing_column(tmp_path, table, column):
    verdict = check_schema(minimal_db(tmp_path, (table, column)))
    assert not verdict.writable
    assert verdict.reason == f"unrecognised layout: {table} lacks {column}"


def test_extra_columns_and_tables_are_fine(tmp_path):
    conn = conn_for(tmp_path, sql=dbfactory.FALLBACK_DDL)
    conn.execute("ALTER TABLE part ADD COLUMN something text")
    conn.execute("CREATE TABLE session_message (id text PRIMARY KEY)")  # exists in 1.15.3 and 1.18.33 already
    assert check_schema(conn).writable


@pytest.mark.parametrize("marker", ["session_v2", "message_v2", "part_v2"])
def test_v2_layout_is_read_only(tmp_path, marker):
    conn = conn_for(tmp_path)
    conn.execute(f"CREATE TABLE {marker} (id text PRIMARY KEY, data text)")
    verdict = check_schema(conn)
    assert not verdict.writable
    assert marker in verdict.reason and "read-only" in verdict.reason


def test_v2_only_layout(tmp_path):
    conn = sqlite3.connect(tmp_path / "v2.db")
    conn.executescript(
        "CREATE TABLE session_v2 (id text PRIMARY KEY); CREATE TABLE part_v2 (id text PRIMARY KEY);"
    )
    verdict = check_schema(conn)
    assert not verdict.writable and "part_v2, session_v2" in verdict.reason
