"""What one journal row is, and reading rows: the schema, `Action`, and the read-only reader.

Kept apart from `journal.Journal` (the writer): `status` and `history` read through `read_recent` without
ever creating a state dir or a journal.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from watchdogd.journal_health import JournalDamaged, file_damage, journal_error
from watchdogd.models import Outcome
from watchdogd.statedir import JOURNAL_FILE

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, command TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    time REAL NOT NULL,
    db TEXT NOT NULL,
    session_id TEXT NOT NULL, message_id TEXT NOT NULL, part_id TEXT NOT NULL, tool TEXT NOT NULL,
    route TEXT NOT NULL,
    reason TEXT NOT NULL,
    outcome TEXT NOT NULL,          -- planned | done | skipped | failed | reported | undone
    detail TEXT NOT NULL DEFAULT '',
    part_before TEXT, part_after TEXT, message_before TEXT, message_after TEXT,
    server_version TEXT,
    undo_of INTEGER REFERENCES actions(id),
    group_of INTEGER REFERENCES actions(id),  -- the first row of the event this row belongs to
    -- time_updated of the rows before and after the write, as stored (no type: kept exactly)
    part_before_updated, part_after_updated, message_before_updated, message_after_updated);
CREATE INDEX IF NOT EXISTS actions_run ON actions(run_id);
CREATE INDEX IF NOT EXISTS actions_part ON actions(part_id);
CREATE TABLE IF NOT EXISTS backups (
    path TEXT PRIMARY KEY, db TEXT NOT NULL, time REAL NOT NULL);
DROP TABLE IF EXISTS sightings;
CREATE TABLE IF NOT EXISTS part_sightings (
    db TEXT NOT NULL, part_id TEXT NOT NULL, first_seen REAL NOT NULL, owner_seen REAL,
    PRIMARY KEY (db, part_id));
"""

OUTCOMES = tuple(o.value for o in Outcome if o is not Outcome.DRY_RUN)  # dry runs are never journaled


@dataclass(frozen=True)
class Action:
    id: int
    run_id: int
    time: float
    db: str
    session_id: str
    message_id: str
    part_id: str
    tool: str
    route: str
    reason: str
    outcome: str
    detail: str
    part_before: str | None
    part_after: str | None
    message_before: str | None
    message_after: str | None
    server_version: str | None
    undo_of: int | None
    group_of: int | None = None  # the first row of the event (one live free) this row belongs to
    # The rows' time_updated before and after the write (NULL in rows journaled before they were recorded):
    # undo puts the before value back, so a restored row is byte-identical to what it was.
    part_before_updated: object = None
    part_after_updated: object = None
    message_before_updated: object = None
    message_after_updated: object = None

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.time, UTC)


# Columns added after the first release: a journal written before gains them (NULL in its old rows).
ADDED_COLUMNS = {
    "group_of": "INTEGER REFERENCES actions(id)",  # NULL: a row of its own
    "part_before_updated": "",  # NULL: undo gives the row the time of the undo (as before they existed)
    "part_after_updated": "",
    "message_before_updated": "",
    "message_after_updated": "",
}
# What `record` and `update_rows` may set: every column but the ones the journal fills in itself.
RECORDED = frozenset(Action.__dataclass_fields__) - {"id", "run_id", "time"}
ROW_IMAGES = frozenset(
    {
        "part_after",
        "message_before",
        "message_after",
        "part_after_updated",
        "message_before_updated",
        "message_after_updated",
    }
)


def add_columns(conn: sqlite3.Connection) -> None:
    columns = {row[1] for row in conn.execute("PRAGMA table_info(actions)")}
    for name, kind in ADDED_COLUMNS.items():
        if name not in columns:
            conn.execute(f"ALTER TABLE actions ADD COLUMN {name} {kind}")


def select_actions(
    conn: sqlite3.Connection, where: str, params: tuple = (), limit: int | None = None
) -> list[Action]:
    present = {row[1] for row in conn.execute("PRAGMA table_info(actions)")}
    # A journal from before a column existed (read-only here, so never migrated) reads it as NULL.
    columns = [name if name in present else "NULL" for name in Action.__dataclass_fields__]
    sql = f"SELECT {', '.join(columns)} FROM actions WHERE {where} ORDER BY id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [Action(*row) for row in conn.execute(sql, params)]


def read_recent(state_dir: Path, limit: int) -> list[Action]:
    """The newest actions, read-only: never creates the state dir or a journal (`status`, `history` only read)."""
    path = state_dir / JOURNAL_FILE
    why = file_damage(path)
    if why:
        raise JournalDamaged(path, why)
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            return select_actions(conn, "1", (), limit)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise journal_error(path, exc) from None
