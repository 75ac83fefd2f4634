"""The only code that speaks SQL to opencode's DB: read-only reads, schema gate, compare-and-set writes."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from watchdogd.opencode.db_files import FD_HEADROOM, fd_limit_problem, special_file_kind
from watchdogd.opencode.rows import BadRow, Candidate, SessionInfo, is_utf8, lenient_text, parse_candidate
from watchdogd.opencode.schema import SchemaVerdict, check_schema
from watchdogd.opencode.writegate import WriteRules, write_refusal

DEFAULT_RULES = WriteRules()  # frozen: one shared default

# SQLite filters before Python parses JSON: opencode writes compact JSON, so a live tool state
# always contains one of these byte strings; the Python parse confirms each hit. GLOB is about
# 2.5x faster than instr() here (benchmarks/README.md).
_PREFILTER = '(data GLOB \'*"status":"running"*\' OR data GLOB \'*"status":"pending"*\')'
_PART_COLUMNS = "rowid, id, message_id, session_id, time_created, data"


class StoreError(Exception):
    """The DB cannot be read or written right now; the message says why, in one line."""


@dataclass(frozen=True)
class RowChange:
    """One compare-and-set: the row must still hold `before` for `after` to be written."""

    table: str  # "part" or "message"
    row_id: str
    before: str
    after: str
    session_id: str | None = None  # when given, the row must also still belong to this session
    # The row's time_updated column: when `before_updated` is given the row must still carry it; the row is
    # given `after_updated` (an undo puts the old value back: the row is then byte-identical), else now.
    before_updated: object = None
    after_updated: object = None


@dataclass(frozen=True)
class RowImage:
    """The columns of a part or message row that a write changes: `data` and `time_updated`."""

    data: str
    updated: object  # as stored (an integer in ms as opencode writes it; kept as it is, whatever it is)


def _describe(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "file is not a database" in text:
        return "not an SQLite database"
    if "locked" in text or "busy" in text:
        return "database is locked by another writer (busy timeout reached)"
    return text


class OpencodeStore:
    """One opencode DB. Reads go through one read-only connection with no transaction left open."""

    def __init__(self, path: Path, busy_timeout: float = 5.0, *, rules: WriteRules = DEFAULT_RULES):
        self.path = path
        self.busy_timeout = max(busy_timeout, 5.0)
        self.rules = rules  # see writegate.write_refusal
        self._ro: sqlite3.Connection | None = None
        self._rw: sqlite3.Connection | None = None
        self._columns: str | None = None  # the part columns read, with time_updated when the layout has it

    # -- connections ---------------------------------------------------------------------------
    def _connect(self, mode: str) -> sqlite3.Connection:
        kind = special_file_kind(self.path)
        if kind:
            raise StoreError(f"{self.path}: cannot open: it is {kind}, not a database file")
        limit = fd_limit_problem(FD_HEADROOM if mode == "ro" else 4)
        if limit:  # a reader more would leave a pass without the fds a write and everything else need
            raise StoreError(f"{self.path}: cannot open: {limit}")
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode={mode}"
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            limit = fd_limit_problem()
            raise StoreError(f"{self.path}: cannot open: {limit or _describe(exc)}") from None
        return conn

    @property
    def reader(self) -> sqlite3.Connection:
        if self._ro is None:
            self._ro = self._connect("ro")
            self._ro.text_factory = lenient_text
        return self._ro

    def interrupt(self) -> None:
        """Abort a statement in flight (e.g. waiting on a lock) from another thread; it rolls back."""
        for conn in (self._rw, self._ro):
            if conn is not None:
                conn.interrupt()

    @property
    def connected(self) -> bool:
        """The read connection is open (it holds the DB, `-wal` and `-shm` files)."""
        return self._ro is not None

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
            self._ro = None
        self._columns = None

    def _part_columns(self) -> str:
        if self._columns is None:
            names = {row[1] for row in self._read("PRAGMA table_info(part)")}
            self._columns = _PART_COLUMNS + (", time_updated" if "time_updated" in names else "")
        return self._columns

    def _iterate(self, sql: str, params: Iterable = ()) -> Iterator[tuple]:
        try:
            yield from self.reader.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None

    def _read(self, sql: str, params: Iterable = ()) -> list[tuple]:
        try:
            return self.reader.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None

    # -- reads ---------------------------------------------------------------------------------
    def schema(self) -> SchemaVerdict:
        try:
            return check_schema(self.reader)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None

    def data_version(self) -> int:
        """Changes when another connection commits: tells real commits from our own file events."""
        return self._read("PRAGMA data_version")[0][0]

    def max_rowid(self) -> int:
        return self._read("SELECT coalesce(max(rowid), 0) FROM part")[0][0]

    # -- incremental tracking (see watchdogd/opencode/tracker.py) ------------------------------
    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One short read transaction: every read inside sees the same commit. Always ended on exit."""
        conn = self.reader
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {_describe(exc)}") from None
        try:
            yield
        finally:
            if conn.in_transaction:
                try:
                    conn.execute("COMMIT")  # read-only: nothing to write, just drops the snapshot
                except sqlite3.Error:
                    # e.g. a corrupt file: SQLite already ended the transaction; the error above is raised
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")

    def part_ids_at(self, rowids: list[int]) -> dict[int, str]:
        """The id of the part row at each given rowid; rowids with no row are left out."""
        out: dict[int, str] = {}
        for start in range(0, len(rowids), 500):
            chunk = rowids[start : start + 500]
            out.update(
                self._read(f"SELECT rowid, id FROM part WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)
            )
        return out

    def part_checkpoints(self, targets: list[int]) -> list[tuple[int, str]]:
        """(rowid, id) of the nearest part row at or below each target rowid, highest first (one query)."""
        if not targets:
            return []
        values = ",".join("(?)" for _ in targets)
        return self._read(
            f"WITH t(x) AS (VALUES {values}) SELECT DISTINCT p.rowid, p.id FROM t JOIN part p ON p.rowid = "
            "(SELECT rowid FROM part WHERE rowid <= t.x ORDER BY rowid DESC LIMIT 1) ORDER BY p.rowid DESC",
            targets,
        )

    def scan(self, after_rowid: int = 0) -> tuple[list[Candidate], list[BadRow]]:
        """Live tool parts with rowid > after_rowid, in time order (ids wrap: never order by id)."""
        # Rows are parsed as the cursor yields them: most prefilter hits are not candidates (todo
        # lists say "status":"pending" too), so holding them all would cost tens of MB on big DBs.
        found, bad = self._parse(
            self._iterate(
                f"SELECT {self._part_columns()} FROM part WHERE rowid > ? AND {_PREFILTER}", (after_rowid,)
            )
        )
        found.sort(key=lambda c: (c.created_ms or 0, c.part_id))
        return found, bad

    def parts_by_id(self, part_ids: list[str]) -> tuple[list[Candidate], list[BadRow]]:
        rows: list[tuple] = []
        for chunk in _chunks(part_ids):
            rows += self._read(
                f"SELECT {self._part_columns()} FROM part WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
        rows.sort(key=lambda r: (r[4] or 0, r[1]))
        return self._parse(rows)

    def part_times(self, part_ids: list[str]) -> dict[str, object]:
        """time_updated of each given part that still exists (a cheap look: `data` is not read).

        Empty when the layout has no time_updated column (the tracker then cannot watch rows that left)."""
        if "time_updated" not in self._part_columns():
            return {}
        out: dict[str, object] = {}
        for chunk in _chunks(part_ids):
            marks = ",".join("?" * len(chunk))
            out.update(self._read(f"SELECT id, time_updated FROM part WHERE id IN ({marks})", chunk))
        return out

    def _parse(self, rows: Iterable[tuple]) -> tuple[list[Candidate], list[BadRow]]:
        found: list[Candidate] = []
        bad: list[BadRow] = []
        for row in rows:
            item = parse_candidate(self.path, row)
            if isinstance(item, Candidate):
                found.append(item)
            elif isinstance(item, BadRow):
                bad.append(item)
        return found, bad

    def sessions(self, session_ids: Iterable[str]) -> dict[str, SessionInfo]:
        ids = sorted(set(session_ids))
        out: dict[str, SessionInfo] = {}
        for chunk in _chunks(ids):
            for sid, directory, title, parent in self._read(
                f"SELECT id, directory, title, parent_id FROM session WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                if directory is not None and not is_utf8(directory):
                    directory = None  # unknown: never ask a server about a mangled directory
                if title is not None and not is_utf8(title):
                    title = title.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                out[sid] = SessionInfo(sid, directory, title, parent)
        return out

    def newer_messages(self, session_id: str, message_id: str) -> int:
        """How many messages of the session were created after `message_id` (0 when it is gone)."""
        rows = self._read(
            "SELECT count(*) FROM message WHERE session_id = ? AND time_created > "
            "(SELECT time_created FROM message WHERE id = ?)",
            (session_id, message_id),
        )
        return rows[0][0] if rows else 0

    def row_session(self, table: str, row_id: str) -> str | None:
        """The session a part or message row belongs to (None: no such row)."""
        assert table in ("part", "message")
        rows = self._read(f"SELECT session_id FROM {table} WHERE id = ?", (row_id,))
        return rows[0][0] if rows else None

    def row_data(self, table: str, row_id: str) -> str | None:
        assert table in ("part", "message")
        rows = self._read(f"SELECT data FROM {table} WHERE id = ?", (row_id,))
        return rows[0][0] if rows else None

    def row_image(self, table: str, row_id: str) -> RowImage | None:
        """`data` and `time_updated` of a part or message row (None: no such row): a write's before-image."""
        assert table in ("part", "message")
        rows = self._read(f"SELECT data, time_updated FROM {table} WHERE id = ?", (row_id,))
        return RowImage(*rows[0]) if rows else None

    def queued_user_messages(self, session_id: str, after_ms: int) -> list[tuple[str, int]]:
        """User messages written after `after_ms`: prompts opencode queued behind a stuck run."""
        rows = self._read(
            "SELECT id, time_created, data FROM message WHERE session_id = ? AND time_created > ?"
            " ORDER BY time_created, id",
            (session_id, after_ms),
        )
        out = []
        for mid, created, data in rows:
            try:
                if json.loads(data).get("role") == "user":
                    out.append((mid, created))
            except (ValueError, AttributeError, RecursionError):
                continue
        return out

    # -- writes --------------------------------------------------------------------------------
    def compare_and_set(self, changes: list[RowChange]) -> str | None:
        """Apply all changes in one BEGIN IMMEDIATE transaction, or none.

        Returns None on success, or the table whose row no longer held `before` (opencode moved on).
        Raises StoreError when the DB cannot be written (locked, read-only, gone), or must not be
        (network filesystem, another user's DB: writegate.write_refusal).
        """
        refusal = write_refusal(self.path, self.rules)
        if refusal:
            raise StoreError(f"{self.path}: not written: {refusal}")
        conn = self._rw = self._connect("rw")
        try:
            conn.execute("BEGIN IMMEDIATE")
            now_ms = int(time.time() * 1000)
            for change in changes:
                if not _set_row(conn, change, now_ms):
                    conn.execute("ROLLBACK")
                    return change.table
            conn.execute("COMMIT")
            return None
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{self.path}: write failed: {_describe(exc)}") from None
        finally:
            self._rw = None
            conn.close()


def _set_row(conn: sqlite3.Connection, change: RowChange, now_ms: int) -> bool:
    """One row of a compare-and-set (inside its transaction): whether the row still held the before-image."""
    assert change.table in ("part", "message")
    where, params = "id = ? AND data = ?", [change.row_id, change.before]
    if change.session_id is not None:
        where, params = where + " AND session_id = ?", [*params, change.session_id]
    if change.before_updated is not None:
        where, params = where + " AND time_updated IS ?", [*params, change.before_updated]
    updated = now_ms if change.after_updated is None else change.after_updated
    cursor = conn.execute(
        f"UPDATE {change.table} SET data = ?, time_updated = ? WHERE {where}",
        (change.after, updated, *params),
    )
    return cursor.rowcount == 1


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
