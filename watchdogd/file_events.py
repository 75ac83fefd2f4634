"""File events on the DB directories, reduced to what the daemon cares about.

Commits show up as writes to `-wal`; a process that held the DB exits → close events on the DB
files (also after kill -9), which is how holder exit is noticed without polling /proc.
`-shm` churn (every reader's locking) is ignored.

A DB whose directory does not exist yet is waited for by watching its nearest existing ancestor:
a directory created (or moved in) on the way down, or the watched directory itself deleted, is a
`lifecycle` event, and the next pass moves the watch (`sync`) to where the path now ends.

While a pass is due the watcher does not listen (see watchdogd/inotify.py): a stream of commits
costs one wake-up per pass. The pass calls `drain()` before it reads anything; what it drains is
covered by that pass.
"""

from __future__ import annotations

import errno
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from watchdogd.inotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    Inotify,
    RawEvent,
)

CHANGE, CLOSE, LIFECYCLE = "change", "close", "lifecycle"
NEW_DB_PATTERN = "opencode*.db"  # a DB discovery would pick up (see opencode/discovery.py)
_ENTRY_LIFECYCLE = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
_FOLDER_GONE = IN_DELETE_SELF | IN_MOVE_SELF


def nearest_existing(folder: Path) -> Path:
    """The folder itself if it is a directory, else its closest ancestor that is one."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder


def classify(event: RawEvent, db: Path) -> str | None:
    """change | close | lifecycle | None for an event about `db`'s files."""
    if event.overflow:
        return LIFECYCLE  # the kernel dropped events: assume anything happened
    if event.folder != db.parent:
        return None
    if not event.name:
        return LIFECYCLE if event.mask & _FOLDER_GONE else None
    if event.mask & IN_ISDIR:
        return None
    if event.name == db.name:
        if event.mask & _ENTRY_LIFECYCLE:
            return LIFECYCLE
        if event.mask & IN_CLOSE_WRITE:
            return CLOSE
        if event.mask & IN_MODIFY:
            return CHANGE
    elif event.name == db.name + "-wal":
        if event.mask & IN_CLOSE_WRITE:
            return CLOSE
        if event.mask & (IN_MODIFY | IN_CREATE):
            return CHANGE
    return None


def on_the_way(event: RawEvent, db: Path) -> bool:
    """An event in an ancestor watched for `db` that may bring `db`'s directory closer (or take it away)."""
    if not event.name:
        return bool(event.mask & _FOLDER_GONE)
    if not (event.mask & IN_ISDIR and event.mask & _ENTRY_LIFECYCLE):
        return False
    entry = event.folder / event.name
    return entry == db.parent or entry in db.parent.parents


def new_db(event: RawEvent) -> Path | None:
    """A file that discovery would add, created or moved into a watched directory."""
    if event.mask & IN_ISDIR or not event.mask & (IN_CREATE | IN_MOVED_TO) or not event.name:
        return None
    return event.folder / event.name if fnmatch.fnmatch(event.name, NEW_DB_PATTERN) else None


@dataclass(frozen=True)
class _Watch:
    wd: int
    dbs: tuple[Path, ...]  # DBs in this folder, and DBs waiting for a directory below it
    by_name: dict[str, Path] = field(default_factory=dict, compare=False)  # the DBs in it, by file name

    @classmethod
    def of(cls, wd: int, folder: Path, dbs: tuple[Path, ...]) -> _Watch:
        return cls(wd, dbs, {db.name: db for db in dbs if db.parent == folder})


class DBWatcher:
    """Watches the directory of each DB (non-recursive), or its nearest existing ancestor until it exists."""

    def __init__(self, on_event: Callable[[Path, str], None]):
        self.on_event = on_event
        self.log = structlog.get_logger("watchdogd")
        self._watched: dict[Path, _Watch] = {}
        self._warned: set[Path] = set()
        self._started = False
        try:
            self._inotify: Inotify | None = Inotify(self._on_batch)
        except OSError as exc:  # e.g. fs.inotify.max_user_instances reached: the poll still finds everything
            self._inotify = None
            self.log.warning("no file events; changes are noticed at the next poll", error=str(exc))

    def sync(self, dbs: list[Path]) -> dict[Path, Path]:
        """(Re)place the watches; return each DB whose directory is missing -> the ancestor watched for it."""
        if self._inotify is None:
            return {db: nearest_existing(db.parent) for db in dbs if not db.parent.is_dir()}
        for _attempt in range(8):  # a directory created while the watches were placed: place them again
            wanted: dict[Path, list[Path]] = {}
            for db in dbs:
                wanted.setdefault(nearest_existing(db.parent), []).append(db)
            self._place({folder: tuple(members) for folder, members in wanted.items()})
            if all(nearest_existing(db.parent) in self._watched for db in dbs):
                break
        if not self._started:
            self._inotify.start()
            self._started = True
        return {
            db: folder for folder, watch in self._watched.items() for db in watch.dbs if db.parent != folder
        }

    def _place(self, wanted: dict[Path, tuple[Path, ...]]) -> None:
        assert self._inotify is not None
        for folder, watch in list(self._watched.items()):
            if (
                wanted.get(folder) != watch.dbs
                or not self._inotify.is_watched(watch.wd)
                or not folder.is_dir()
            ):
                self._inotify.unwatch(watch.wd)
                del self._watched[folder]
        for folder, members in wanted.items():
            if folder in self._watched or not folder.is_dir():
                continue
            try:
                self._watched[folder] = _Watch.of(self._inotify.watch(folder), folder, members)
            except OSError as exc:  # gone (or unreadable) meanwhile: the next sync places it again
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and folder not in self._warned:
                    self._warned.add(folder)  # e.g. ENOSPC: fs.inotify.max_user_watches reached
                    self.log.warning(
                        "cannot watch the DB folder; changes are noticed at the next poll",
                        folder=str(folder),
                        error=exc.strerror,
                    )

    def _kinds(self, events: list[RawEvent]) -> set[tuple[Path, str]]:
        watched = dict(self._watched)  # sync() may change it from the pass thread
        found: set[tuple[Path, str]] = set()
        for event in events:
            if event.overflow:
                return {(db, LIFECYCLE) for watch in watched.values() for db in watch.dbs}
            watch = watched.get(event.folder)
            if watch is None:
                continue
            named = watch.by_name.get(event.name.removesuffix("-wal")) if event.name else None
            if named is not None:  # the hot path: one lookup by name, hundreds of DBs may share a folder
                kind = classify(event, named)
                if kind:
                    found.add((named, kind))
                continue
            for db in watch.dbs if not event.name or event.mask & IN_ISDIR else ():
                if db.parent == event.folder:
                    kind = classify(event, db)  # the folder itself went away
                elif on_the_way(event, db):
                    kind = LIFECYCLE
                else:
                    kind = None
                if kind:
                    found.add((db, kind))
            appeared = new_db(event)
            # Only where discovery looks (a DB's own folder), not in an ancestor watched while waiting.
            in_db_folder = any(d.parent == event.folder for d in watch.dbs)
            if appeared is not None and appeared not in watch.dbs and in_db_folder:
                found.add((appeared, LIFECYCLE))
        return found

    def _on_batch(self, events: list[RawEvent]) -> bool:
        """Tell the daemon; True (the reader pauses) only if every call went through and one asked for a pass.

        `on_event` returns False for an event that asks for nothing (e.g. our own connection's close)."""
        told, asked = True, False
        for db, kind in sorted(self._kinds(events)):
            try:
                asked |= self.on_event(db, kind) is not False
            except Exception:  # one failing call must not hide the other events of the batch
                told = False
                self.log.exception("file event handler failed", db=str(db), kind=kind)
        return asked and told

    def alive(self) -> bool:
        """The thread that delivers file events still runs (systemd's watchdog is fed only while it does)."""
        return not self._started or self._inotify is None or self._inotify.alive()

    def drain(self) -> set[tuple[Path, str]]:
        """(db, kind) of the events queued since the reader paused; the reader listens again."""
        return self._kinds(self._inotify.drain()) if self._inotify is not None else set()

    def stop(self) -> None:
        if self._inotify is not None:
            self._inotify.stop()
