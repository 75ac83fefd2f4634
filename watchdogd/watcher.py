"""File events on the DB directories, reduced to what the daemon cares about.

Commits show up as writes to `-wal`; a process that held the DB exits → close events on the DB
files (also after kill -9), which is how holder exit is noticed without polling /proc.
`-shm` churn (every reader's locking) is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import (
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
EVENT_FILTER = [FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent]


def classify(event: FileSystemEvent, db: Path) -> str | None:
    """change | close | lifecycle | None for an event about `db`'s files."""
    paths = [os.fsdecode(event.src_path)]
    if isinstance(event, FileMovedEvent):
        paths.append(os.fsdecode(event.dest_path))
    base = str(db)
    for path in paths:
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


class _Handler(FileSystemEventHandler):
    def __init__(self, dbs: list[Path], on_event: Callable[[Path, str], None]):
        self.dbs = dbs
        self.on_event = on_event

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        for db in self.dbs:
            kind = classify(event, db)
            if kind:
                try:
                    self.on_event(db, kind)
                except Exception:  # noqa: BLE001 (an escaped error would end the observer thread: no events, ever)
                    structlog.get_logger("watchdogd").exception("file event handler failed", db=str(db), kind=kind)


class DBWatcher:
    """Watches the directories of the given DBs (non-recursive); re-armed when directories appear."""

    def __init__(self, on_event: Callable[[Path, str], None]):
        self.on_event = on_event
        self._observer = Observer()
        self._watched: dict[Path, tuple[object, list[Path]]] = {}
        self._started = False

    def sync(self, dbs: list[Path]) -> list[Path]:
        """Watch each existing DB directory; return the directories still missing."""
        wanted: dict[Path, list[Path]] = {}
        for db in dbs:
            wanted.setdefault(db.parent, []).append(db)
        missing = []
        for folder, (watch, members) in list(self._watched.items()):
            if wanted.get(folder) != members or not folder.is_dir():
                self._observer.unschedule(watch)
                del self._watched[folder]
        for folder, members in wanted.items():
            if folder in self._watched:
                continue
            if not folder.is_dir():
                missing.append(folder)
                continue
            watch = self._observer.schedule(_Handler(members, self.on_event), str(folder), recursive=False,
                                            event_filter=EVENT_FILTER)
            self._watched[folder] = (watch, members)
        if not self._started:
            self._observer.start()
            self._started = True
        return missing

    def alive(self) -> bool:
        """The thread that delivers file events still runs (systemd's watchdog is fed only while it does)."""
        return not self._started or self._observer.is_alive()

    def stop(self) -> None:
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=2)
