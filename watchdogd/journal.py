"""The daemon's own state DB: every action with before/after rows, plus candidate sightings.

It holds conversation content (the rows' JSON), so the directory is 0700 and the files 0600.
An action is recorded as `planned` before opencode's DB is touched, then settled; a crash in
between leaves a `planned` row that `reconcile` settles by looking at the DB row itself.
Actions write through `Journal.journaled` (plan → the action writes → settle, `failed` on any
exception); `group_of` ties the rows of one event (a live free and the row fixes after it) together.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from watchdogd.journal_health import (
    JournalDamaged,
    JournalError,
    check_integrity,
    damage_of,
    file_damage,
    file_ident,
    journal_error,
    why_unwritable,
)
from watchdogd.journal_rows import (
    OUTCOMES,
    RECORDED,
    ROW_IMAGES,
    SCHEMA,
    Action,
    add_columns,
    read_recent,
    select_actions,
)
from watchdogd.models import Outcome, Undone
from watchdogd.statedir import (
    JOURNAL_FILE,
    StateDirError,
    check_existing_state_dir,
    prepare_state_dir,
    private_file,
)

__all__ = ["Action", "Journal", "JournalDamaged", "JournalError", "JournaledAction", "read_recent"]


def check_state_dir(path: Path) -> None:
    """For a command that only reads: an existing state dir is ours and not a symlink (else refused); none is
    created."""
    try:
        check_existing_state_dir(path)
    except StateDirError as exc:
        raise JournalError(str(exc)) from None


def secure_state_dir(path: Path) -> None:
    """The state dir at every start: ours (else refused), never a symlink, our own files in it private.

    See watchdogd/statedir.py: nothing the daemon did not create has its mode changed.
    """
    try:
        prepare_state_dir(path)
    except StateDirError as exc:
        raise JournalError(str(exc)) from None


# Settled rows older than the cutoff, but never what `Journal.prune` keeps (see there).
_PRUNE = """
DELETE FROM actions WHERE time < ? AND outcome != 'planned' AND run_id IS NOT ?
AND id NOT IN (SELECT max(id) FROM actions WHERE route = 'undo' AND outcome = 'done' GROUP BY db, part_id)
"""


class JournaledAction:
    """One journal row while its action runs: record the rows it writes, then settle it once."""

    def __init__(self, journal: Journal, action_id: int):
        self.journal = journal
        self.id = action_id
        self.outcome: Outcome | None = None

    def rows(self, **images: object) -> None:
        """The rows the action is about to write (before the write: crash reconciliation compares them):
        `part_after`, `message_before`, `message_after` and their `…_updated` times; None leaves one as is."""
        self.journal.update_rows(self.id, **images)

    def settle(self, outcome: Outcome, detail: str = "", server_version: str | None = None) -> None:
        self.journal.settle(self.id, outcome, detail, server_version)
        self.outcome = outcome


def _open(path: Path, state_dir: Path) -> sqlite3.Connection:
    """The journal's connection, its schema current; a damaged file is closed again and JournalDamaged raised."""
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        check_integrity(path, conn)
        conn.executescript(SCHEMA)
        add_columns(conn)
        return conn
    except (sqlite3.Error, JournalDamaged) as exc:
        if conn is not None:
            conn.close()  # a damaged journal is not kept open: it is moved aside while we run
        if isinstance(exc, JournalDamaged):
            raise
        raise journal_error(path, exc, why_unwritable(state_dir)) from None


class Journal:
    def __init__(self, state_dir: Path):
        secure_state_dir(state_dir)
        self.path = state_dir / JOURNAL_FILE
        why = file_damage(self.path)
        if why:
            raise JournalDamaged(self.path, why)
        try:  # created here with O_NOFOLLOW|O_EXCL, 0600: SQLite then opens the file we made, never a link
            private_file(self.path, "journal")
        except StateDirError as exc:
            raise JournalError(str(exc)) from None
        old_umask = os.umask(0o077)
        try:
            self.conn = _open(self.path, state_dir)
        finally:
            os.umask(old_umask)
        self.ident = file_ident(self.path)
        self._private_backups()
        self.run_id: int | None = None
        self._run_command = "unknown"  # of the run next_run() starts lazily

    def close(self) -> None:
        self.conn.close()

    def moved(self) -> bool:
        """`journal.db` is no longer the file this journal opened (moved aside, deleted or replaced)."""
        return file_ident(self.path) != self.ident

    def damage(self, thorough: bool = False) -> JournalDamaged | None:
        """The file's first bytes (cheap, every pass) and, when `thorough`, SQLite's quick_check."""
        why = file_damage(self.path)
        if why is None and thorough:
            try:
                check_integrity(self.path, self.conn)
            except JournalDamaged as exc:
                return exc
            except sqlite3.Error as exc:
                return journal_error(self.path, exc) if damage_of(exc) else None
        return JournalDamaged(self.path, why) if why else None

    def _private_backups(self) -> None:
        """The backup copies this journal recorded are ours: 0600 (a copy someone else put there is not)."""
        try:
            paths = [Path(row[0]) for row in self.conn.execute("SELECT path FROM backups")]
            for path in paths:
                private_file(path, "backup copy", create=False)
        except StateDirError as exc:
            raise JournalError(str(exc)) from None

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise journal_error(self.path, exc) from None

    # -- runs and actions ----------------------------------------------------------------------
    def start_run(self, command: str) -> int:
        if self.run_id is None:
            cur = self._write(
                "INSERT INTO runs(command, pid, started) VALUES (?,?,?)", (command, os.getpid(), time.time())
            )
            self.run_id = cur.lastrowid
        return self.run_id

    def next_run(self, command: str) -> None:
        """A new run for what follows, recorded only if something is journaled in it (the daemon calls this at
        every pass: `undo --last` then restores the last pass that wrote, not everything since the start)."""
        self.run_id = None
        self._run_command = command

    def record(self, *, outcome: str = Outcome.PLANNED, detail: str = "", **fields: object) -> int:
        """Insert one action row (`planned` unless told otherwise) and return its id.

        `fields` are the Action's columns: db, session_id, message_id, part_id, tool, route and reason always;
        the row images, server_version, undo_of and group_of when known."""
        unknown = set(fields) - RECORDED
        assert not unknown, unknown
        run_id = self.start_run(self._run_command)
        values = {"run_id": run_id, "time": time.time(), "outcome": outcome, "detail": detail, **fields}
        marks = ",".join("?" * len(values))
        cur = self._write(
            f"INSERT INTO actions({', '.join(values)}) VALUES ({marks})", tuple(values.values())
        )
        return cur.lastrowid

    @contextmanager
    def journaled(self, **fields) -> Iterator[JournaledAction]:
        """Record a `planned` row (fields as for `record`), let the action write, and settle it.

        Any exception settles the row `failed` (its text as the detail) and is re-raised; a JournalError
        is re-raised as it is (the journal cannot be written). An action that returns without settling
        leaves its row `planned`, as a crash would: the next `reconcile` settles it from the DB rows.
        """
        action = JournaledAction(self, self.record(**fields))
        try:
            yield action
        except JournalError:
            raise
        except BaseException as exc:
            if action.outcome is None:
                action.settle(Outcome.FAILED, str(exc) or type(exc).__name__)
            raise

    def update_rows(self, action_id: int, **images: object) -> None:
        """Set the given row images of an action (None: left as it is)."""
        unknown = set(images) - ROW_IMAGES
        assert not unknown, unknown
        given = {name: value for name, value in images.items() if value is not None}
        if given:
            assignments = ", ".join(f"{name}=?" for name in given)
            self._write(f"UPDATE actions SET {assignments} WHERE id=?", (*given.values(), action_id))

    def settle(
        self, action_id: int, outcome: str, detail: str = "", server_version: str | None = None
    ) -> None:
        assert outcome in OUTCOMES, outcome
        self._write(
            "UPDATE actions SET outcome=?, detail=?, server_version=coalesce(?, server_version) WHERE id=?",
            (outcome, detail, server_version, action_id),
        )

    def _select(self, where: str, params: tuple = (), limit: int | None = None) -> list[Action]:
        try:
            return select_actions(self.conn, where, params, limit)
        except sqlite3.Error as exc:
            raise journal_error(self.path, exc) from None

    def action(self, action_id: int) -> Action | None:
        found = self._select("id = ?", (action_id,))
        return found[0] if found else None

    def recent(self, limit: int = 20) -> list[Action]:
        return self._select("1", (), limit)

    def followups(self, action: Action) -> list[Action]:
        """Later writes of the same run to the same part (the repair after a stop-process), oldest first."""
        found = self._select(
            "run_id = ? AND part_id = ? AND id > ? AND outcome = 'done' AND undo_of IS NULL",
            (action.run_id, action.part_id, action.id),
        )
        return found[::-1]

    def undone(self, db: str, part_ids: list[str]) -> dict[str, Undone]:
        """The last `undo` that restored each of these parts of `db` (parts never undone are left out)."""
        out: dict[str, Undone] = {}
        for start in range(0, len(part_ids), 500):
            chunk = part_ids[start : start + 500]
            sql = (
                "SELECT part_id, id, time, part_after, part_after_updated FROM actions WHERE db = ? AND route = "
                f"'undo' AND outcome = 'done' AND part_after IS NOT NULL AND part_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY id"
            )
            rows = self._write(sql, (db, *chunk)).fetchall()
            for part_id, action_id, when, data, updated in rows:  # the last undo of a part wins
                out[part_id] = Undone(action_id, datetime.fromtimestamp(when, UTC), data, updated)
        return out

    def planned(self) -> list[Action]:
        return self._select("outcome = 'planned'")

    def _last_write_run_id(self) -> int | None:
        row = self.conn.execute(
            "SELECT run_id FROM actions WHERE outcome IN ('done','undone') AND undo_of IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return row[0] if row else None

    def last_write_run(self) -> list[Action]:
        """The actions that wrote (or were undone) in the most recent run that wrote anything."""
        run_id = self._last_write_run_id()
        if run_id is None:
            return []
        return self._select("run_id = ? AND undo_of IS NULL AND outcome IN ('done','undone')", (run_id,))

    # -- retention (journal.keep) ---------------------------------------------------------------
    def prune(self, keep: float, now: float | None = None) -> int:
        """Delete settled actions older than `keep` seconds, except what an allowed undo still needs; return
        how many went. Kept whatever their age: `planned` rows (crash reconciliation settles them), every
        row of the last run that wrote (`undo --last`), and each part's last `undo` that restored it (it
        keeps the part left alone while its row holds that image). Runs left without actions go too."""
        if keep == math.inf:
            return 0
        cutoff = (time.time() if now is None else now) - keep
        try:
            with self.conn:
                self.conn.execute("BEGIN IMMEDIATE")
                pruned = self.conn.execute(_PRUNE, (cutoff, self._last_write_run_id())).rowcount
                self.conn.execute(
                    "DELETE FROM runs WHERE id NOT IN (SELECT run_id FROM actions) AND id IS NOT ?",
                    (self.run_id,),
                )
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from None
        return pruned

    # -- backup copies this journal's owner wrote (rotation deletes only these) ---------------------
    def record_backup(self, db: str, path: str) -> None:
        self._write("INSERT OR REPLACE INTO backups(path, db, time) VALUES (?,?,?)", (path, db, time.time()))

    def backups(self, db: str) -> list[str]:
        """Recorded copies of `db`, oldest first."""
        return [
            row[0]
            for row in self.conn.execute("SELECT path FROM backups WHERE db=? ORDER BY time, path", (db,))
        ]

    def forget_backup(self, path: str) -> None:
        self._write("DELETE FROM backups WHERE path=?", (path,))

    # -- sightings -----------------------------------------------------------------------------
    def sightings(self, db: str) -> dict[str, tuple[float, float | None]]:
        """part id -> (first seen, last seen with an owner), as any command of this state dir saw them."""
        rows = self._write("SELECT part_id, first_seen, owner_seen FROM part_sightings WHERE db=?", (db,))
        return {pid: (first, owner) for pid, first, owner in rows.fetchall()}

    def record_sightings(self, db: str, seen: dict[str, tuple[float, float | None]]) -> None:
        """Replace this DB's sightings with `seen` (candidates no longer live are forgotten)."""
        try:
            with self.conn:
                self.conn.execute("BEGIN")
                self.conn.execute("DELETE FROM part_sightings WHERE db=?", (db,))
                self.conn.executemany(
                    "INSERT INTO part_sightings VALUES (?,?,?,?)",
                    [(db, pid, first, owner) for pid, (first, owner) in seen.items()],
                )
        except sqlite3.Error as exc:
            raise journal_error(self.path, exc) from None
