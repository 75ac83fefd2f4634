"""A full consistent copy of an opencode DB before the daemon first writes to it (small DBs only)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.statedir import private_dir, private_file


def backup_dir(settings: Settings, db: Path) -> Path:
    tag = hashlib.sha256(str(db).encode()).hexdigest()[:8]
    return settings.state_dir / "backups" / f"{db.stem}-{tag}"


def db_size(db: Path) -> int:
    return sum(os.path.getsize(p) for p in (db, Path(f"{db}-wal")) if p.exists())


def take_backup(
    settings: Settings, db: Path, source: sqlite3.Connection, journal: Journal | None = None
) -> tuple[Path | None, str]:
    """(path, why): the copy made, or None and the reason none was made.

    The SQLite online backup API copies a consistent snapshot page by page, so a copy never
    contains a torn page even while opencode writes. Multi-GB DBs are not copied: the journal's
    before-images are the row-level backup that undo uses. Each copy is recorded in the journal, and
    rotation deletes only recorded copies: a file someone else put in the folder is never removed.
    """
    size = db_size(db)
    limit = settings.backup.max_db_size
    if settings.backup.keep == 0:
        return None, "backups disabled (backup.keep = 0)"
    if size > limit:
        return (
            None,
            f"DB is {size // 1048576} MiB, over backup.max_db_size ({limit // 1048576} MiB): row before-images only",
        )
    folder = backup_dir(settings, db)
    private_dir(folder.parent, "backup dir")  # state_dir/backups: 0700, ours, never a symlink
    private_dir(folder, "backup dir")
    _remove_dead_partials(folder)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder / f"{db.stem}-{stamp}.db"
    # The pid in the name tells a copy in progress from one left by a killed process.
    partial = folder / f"{db.stem}-{stamp}.{os.getpid()}.partial"
    old_umask = os.umask(0o077)
    try:
        private_file(partial, "backup copy")  # O_EXCL|O_NOFOLLOW: SQLite writes into the file we made
        dest = sqlite3.connect(partial)
        try:
            source.backup(dest)
        finally:
            dest.close()
        fd = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(fd)  # on disk before it is named a backup: a crash never leaves a torn *.db
        finally:
            os.close(fd)
        os.replace(partial, target)
    finally:
        os.umask(old_umask)
        partial.unlink(missing_ok=True)
    if journal is not None:
        journal.record_backup(str(db), str(target))
        _rotate(journal, str(db), settings.backup.keep)
    return target, "ok"


def _rotate(journal: Journal, db: str, keep: int) -> None:
    """Delete the oldest copies the journal records as ours beyond `keep`; nothing else in the folder."""
    for stale in journal.backups(db)[:-keep]:
        path = Path(stale)
        try:
            if path.is_symlink() or not path.is_file():
                continue  # not the regular file we wrote: leave it
            path.unlink()
        except FileNotFoundError:
            pass
        journal.forget_backup(stale)


def _remove_dead_partials(folder: Path) -> None:
    """Copies left half-made by a killed process (`<stem>-<stamp>.<pid>.partial` whose pid is gone)."""
    for partial in folder.glob("*.partial"):
        pid = partial.name.rsplit(".", 2)[-2] if partial.name.count(".") >= 2 else ""
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # that process still runs: its copy may be in progress
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        elif pid.isdigit():
            continue
        partial.unlink(missing_ok=True)
