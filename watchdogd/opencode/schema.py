"""Schema gate: write only to the v1 layout that opencode 1.14-1.18 writes."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

REQUIRED_COLUMNS = {
    "session": {"id", "directory", "title", "parent_id"},
    "message": {"id", "session_id", "time_created", "time_updated", "data"},
    "part": {"id", "message_id", "session_id", "time_created", "time_updated", "data"},
}
# Tables that only opencode 2.x layouts have: never guess at those.
V2_MARKERS = {"session_v2", "message_v2", "part_v2"}


@dataclass(frozen=True)
class SchemaVerdict:
    writable: bool
    reason: str
    has_event_log: bool = False  # 1.17+ append an `event` row per part update

    @property
    def label(self) -> str:
        return "v1" if self.writable else "unsupported"


def check_schema(conn: sqlite3.Connection) -> SchemaVerdict:
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    newer = sorted(tables & V2_MARKERS)
    if newer:
        return SchemaVerdict(
            False, f"newer opencode layout ({', '.join(newer)}): read-only, nothing will be written"
        )
    for table, needed in REQUIRED_COLUMNS.items():
        if table not in tables:
            return SchemaVerdict(False, f"not an opencode v1 database: table {table!r} is missing")
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing = sorted(needed - columns)
        if missing:
            return SchemaVerdict(False, f"unrecognised layout: {table} lacks {', '.join(missing)}")
    has_event_log = "event" in tables and "event_sequence" in tables
    return SchemaVerdict(True, "opencode v1 layout (1.14-1.18)", has_event_log)
