"""A journal that cannot be used, and what the daemon does then: nothing written, only looking and saying so.

DESIGN.md's safety rule is "no journal, no write": the journal holds the before-image that makes every
write undoable. So a damaged `journal.db` (garbage bytes, truncated, a directory in its place) makes
the daemon READ-ONLY: it keeps scanning, judging and reporting (status, STATUS=, logs), remembers
sightings in memory only, writes nothing to any opencode DB, and says in one line how to fix it. Once
the file is moved aside, the next pass starts a new journal and writing resumes.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import stat
from datetime import datetime
from pathlib import Path

from watchdogd.models import Undone

SQLITE_MAGIC = b"SQLite format 3\x00"
_DAMAGE_CODES = {
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOTADB,
}  # primary result codes: the file, not the system


class JournalError(Exception):
    """The state dir or journal cannot be used; nothing is written to opencode without it."""


class JournalDamaged(JournalError):
    """`journal.db` is there but is not a usable SQLite file: the daemon goes read-only, one-shot verbs stop."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why
        super().__init__(
            f"journal {path} is damaged ({why}): nothing is written without it; {fix_line(path)}"
        )


def fix_line(path: Path) -> str:
    """The one shell line that moves a damaged journal (and its -wal/-shm) aside; a new one is then started."""
    aside = f"journal.damaged-{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    return f"move it aside: cd {shlex.quote(str(path.parent))} && mkdir {aside} && mv {path.name}* {aside}/"


def damage_of(exc: sqlite3.Error) -> str | None:
    """What is wrong with the file when SQLite says it is corrupt or not a database; None for other errors."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _DAMAGE_CODES:
        return str(exc)
    return None


def file_damage(path: Path) -> str | None:
    """Why `path` cannot be a journal by its type or first bytes (a missing or empty file is a new journal).

    A symlink is not judged here: the state dir check refuses it (never followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return None
    if stat.S_ISDIR(st.st_mode):
        return "a directory is in its place"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return None if head == SQLITE_MAGIC else "file is not a database"


def file_signature(path: Path) -> tuple | None:
    """Identity and size of `path` (None: missing): a damaged journal is tried again only once it changed."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)


def journal_error(path: Path, exc: sqlite3.Error, hint: str = "") -> JournalError:
    """JournalDamaged when SQLite finds the file corrupt or not a database, else a JournalError."""
    why = damage_of(exc)
    return JournalDamaged(path, why) if why else JournalError(f"journal {path}: {exc}{hint}")


def file_ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def check_integrity(path: Path, conn: sqlite3.Connection) -> None:
    """SQLite's quick_check (O(size); a journal of 100 MB takes about 0.3 s): a truncated or overwritten
    journal is found at open, not half-way through a write."""
    found = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if found != "ok":
        raise JournalDamaged(path, f"integrity check: {found}")


def why_unwritable(folder: Path) -> str:
    """A hint for SQLite's "unable to open database file" about the state dir."""
    try:
        vfs = os.statvfs(folder)
    except OSError:
        return ""
    if vfs.f_flag & os.ST_RDONLY:
        return " (the state dir is on a read-only mount)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return " (the state dir is not writable by this user)"
    if vfs.f_bavail == 0:
        return " (no space left where the state dir is)"
    return ""


class ReadOnlyJournal:
    """Stands in for a damaged journal: sightings in memory (the orphan grace still counts from the first
    sighting), no undo history, and every other use — a write above all — raises JournalDamaged."""

    def __init__(self, damaged: JournalDamaged, stale=None):
        self.damaged = damaged
        self.signature = file_signature(damaged.path)
        # The connection of a journal that became damaged under us, left untouched (its -wal still holds the
        # last writes) until the file is moved aside: closing it could let SQLite checkpoint into the damage.
        self._stale = stale
        self._sightings: dict[str, dict[str, tuple[float, float | None]]] = {}

    @property
    def problem(self) -> str:
        return str(self.damaged)

    def sightings(self, db: str) -> dict[str, tuple[float, float | None]]:
        return dict(self._sightings.get(db, {}))

    def record_sightings(self, db: str, seen: dict[str, tuple[float, float | None]]) -> None:
        self._sightings[db] = dict(seen)

    def undone(self, db: str, part_ids: list[str]) -> dict[str, Undone]:
        return {}

    def next_run(self, command: str) -> None:
        pass

    def close(self) -> None:
        if self._stale is not None:
            self._stale.close()
            self._stale = None

    def __getattr__(self, name: str):
        raise self.damaged
