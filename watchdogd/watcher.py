"""File events on the DB directories, reduced to what the daemon cares about.

Commits show up as writes to `-wal`; a process that held the DB exits → close events on the DB
files (also after kill -9), which is how holder exit is noticed without polling /proc.
`-shm` churn (every reader's locking) is ignored.

A DB whose directory does not exist yet is waited for by watching its nearest existing ancestor:
a directory created (or moved in) on the way down, or the watched directory itself deleted, is a
`lifecycle` event, and the next pass moves the watch (`sync`) to where the path now ends.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

CHANGE, CLOSE, LIFECYCLE = "change", "close", "lifecycle"
# The inotify mask: no IN_OPEN or IN_CLOSE_NOWRITE, so read-only openers (the daemon itself, a
# `scan`) cause no events at all. Writers, opencode included, open the DB read-write.
EVENT_FILTER = [FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent,
                DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
NEW_DB_PATTERN = "opencode*.db"  # a DB discovery would pick up (see opencode/discovery.py)


def nearest_existing(folder: Path) -> Path:
    """The folder itself if it is a directory, else its closest ancestor that is one."""
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    return folder


def _event_paths(event: FileSystemEvent) -> list[str]:
    paths = [os.fsdecode(event.src_path)]
    if isinstance(event, (FileMovedEvent, DirMovedEvent)):
        paths.append(os.fsdecode(event.dest_path))
    return paths


def classify(event: FileSystemEvent, db: Path) -> str | None:
    """change | close | lifecycle | None for an event about `db`'s files."""
    base = str(db)
    for path in _event_paths(event):
        if path == base:
            if isinstance(event, (FileCreatedEvent, FileDeletedEvent, FileMovedEvent)):
                return LIFECYCLE
            if isinstance(event, FileClosedEvent):
                return CLOSE
            if isinstance(event, FileModifiedEvent):
                return CHANGE
        elif path == base + "-wal":
            if isinstance(event, FileClosedEvent):
                return CLOSE
            if isinstance(event, (FileModifiedEvent, FileCreatedEvent)):
                return CHANGE
    return None


def on_the_way(event: FileSystemEvent, folder: Path, db: Path) -> bool:
    """A directory event in `folder` (an ancestor being watched) that may bring `db`'s directory closer."""
    if not isinstance(event, (DirCreatedEvent, DirMovedEvent, DirDeletedEvent)):
        return False
    target = str(db.parent)
    for path in _event_paths(event):
        if path == str(folder) or target == path or target.startswith(path.rstrip("/") + "/"):
            return True
    return False


def new_db(event: FileSystemEvent) -> Path | None:
    """A file that discovery would add, created or moved into a watched DB directory."""
    if not isinstance(event, (FileCreatedEvent, FileMovedEvent)):
        return None
    path = _event_paths(event)[-1]
    return Path(path) if fnmatch.fnmatch(os.path.basename(path), NEW_DB_PATTERN) else None


class _Handler(FileSystemEventHandler):
    def __init__(self, folder: Path, dbs: list[Path], on_event: Callable[[Path, str], None]):
        self.folder = folder
        self.dbs = dbs
        self.on_event = on_event

    def _tell(self, db: Path, kind: str) -> None:
        try:
            self.on_event(db, kind)
        except Exception:  # noqa: BLE001 (an escaped error would end the observer thread: no events, ever)
            structlog.get_logger("watchdogd").exception("file event handler failed", db=str(db), kind=kind)

    def on_any_event(self, event: FileSystemEvent) -> None:
        for db in self.dbs:
            if db.parent != self.folder:  # waiting for its directory: watched from an ancestor
                if on_the_way(event, self.folder, db):
                    self._tell(db, LIFECYCLE)
                continue
            if event.is_directory:
                if os.fsdecode(event.src_path) == str(self.folder):  # the directory itself went away
                    self._tell(db, LIFECYCLE)
                continue
            kind = classify(event, db)
            if kind:
                self._tell(db, kind)
        found = new_db(event)
        if found is not None and found not in self.dbs and found.parent == self.folder:
            self._tell(found, LIFECYCLE)


class DBWatcher:
    """Watches the directory of each DB (non-recursive), or its nearest existing ancestor until it exists."""

    def __init__(self, on_event: Callable[[Path, str], None]):
        self.on_event = on_event
        self._observer = Observer()
        self._watched: dict[Path, tuple[object, list[Path]]] = {}
        self._started = False

    def sync(self, dbs: list[Path]) -> dict[Path, Path]:
        """(Re)place the watches; return each DB whose directory is missing -> the ancestor watched for it."""
        for _attempt in range(8):  # a directory created while the watches were placed: place them again
            wanted: dict[Path, list[Path]] = {}
            for db in dbs:
                wanted.setdefault(nearest_existing(db.parent), []).append(db)
            self._place(wanted)
            if all(nearest_existing(db.parent) in self._watched for db in dbs):
                break
        if not self._started:
            self._observer.start()
            self._started = True
        return {db: folder for folder, (_w, members) in self._watched.items() for db in members if db.parent != folder}

    def _place(self, wanted: dict[Path, list[Path]]) -> None:
        for folder, (watch, members) in list(self._watched.items()):
            if wanted.get(folder) != members or not folder.is_dir():
                self._observer.unschedule(watch)
                del self._watched[folder]
        for folder, members in wanted.items():
            if folder in self._watched or not folder.is_dir():
                continue
            try:
                watch = self._observer.schedule(_Handler(folder, members, self.on_event), str(folder),
                                                recursive=False, event_filter=EVENT_FILTER)
            except OSError:
                continue  # gone (or unreadable) meanwhile: the next sync places it again
            self._watched[folder] = (watch, members)

    def alive(self) -> bool:
        """The thread that delivers file events still runs (systemd's watchdog is fed only while it does)."""
        return not self._started or self._observer.is_alive()

    def stop(self) -> None:
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=2)
