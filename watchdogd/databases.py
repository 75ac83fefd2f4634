"""The DBs the daemon watches: attached when they appear, re-attached when replaced, read incrementally."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from watchdogd.config import Settings
from watchdogd.file_events import CLOSE, LIFECYCLE
from watchdogd.models import DBReport
from watchdogd.opencode.store import OpencodeStore
from watchdogd.opencode.tracker import CandidateTracker
from watchdogd.opencode.writegate import WriteRules


@dataclass
class WatchedDB:
    path: Path
    store: OpencodeStore | None = None
    tracker: CandidateTracker | None = None
    ident: tuple[int, int] | None = None  # (st_dev, st_ino): a new inode means a replaced file
    signature: tuple = ()
    report: DBReport | None = None
    dirty: bool = True  # re-evaluate at the next pass even when the rows did not change

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        self.store = self.tracker = None

    def release(self) -> None:
        """Close the read connection of a DB with nothing running; its file events still wake the daemon.

        Hundreds of watched DBs would otherwise hold ~4 fds each for ever. A DB with candidates keeps its
        connection: closing it would look like a holder's close (see `listens_for_close`), and its passes
        stay cheap (`PRAGMA data_version` on the connection the tracker remembers)."""
        if self.tracker is not None and not self.tracker.running:
            self.tracker.release()

    @property
    def listens_for_close(self) -> bool:
        """Whether a close event on the DB's files means something: a holder exiting matters only while
        something runs, and with nothing running the close events are our own connection's."""
        return self.store is not None and self.store.connected


class WatchedDBs(dict[Path, WatchedDB]):
    """Path → WatchedDB, plus which files this process has backed up (one copy per file per lifetime)."""

    def __init__(self) -> None:
        super().__init__()
        self.backed_up: set[Path] = set()
        self.log = structlog.get_logger("watchdogd")

    def sync(self, paths: list[Path], settings: Settings, announce: bool = True) -> None:
        """Attach new DBs and notice deleted or replaced files (a restored backup is a new inode)."""
        wanted = set(paths)  # hundreds of DBs: no list membership in this loop
        for path in list(self):
            if path not in wanted:
                self.pop(path).close()
        for path in paths:
            watched = self.setdefault(path, WatchedDB(path))
            try:
                st = path.stat()
                ident = (st.st_dev, st.st_ino)
            except OSError:
                ident = None
            if ident != watched.ident:
                if watched.ident is not None:
                    self.log.warning(
                        "database replaced" if ident else "database gone; waiting for it", db=str(path)
                    )
                elif ident is not None and announce:
                    self.log.info("database appeared", db=str(path))
                watched.close()
                watched.ident, watched.dirty, watched.signature = ident, True, ()
                self.backed_up.discard(path)  # a new file: back it up before its first write
            if ident is not None and watched.store is None:
                watched.store = OpencodeStore(path, rules=WriteRules.from_settings(settings))
                watched.tracker = CandidateTracker(watched.store, settings.watch.full_rescan_interval)

    def note_event(self, path: Path, kind: str) -> bool:
        """Whether a file event on `path` matters. A close or lifecycle event: a holder may have exited, or
        the file was replaced, so the DB is looked at again."""
        watched = self.get(path)
        if kind == CLOSE and watched is not None and not watched.listens_for_close:
            return False  # our own connection let go of a DB with nothing running (WatchedDB.release)
        if watched is not None and kind in (CLOSE, LIFECYCLE):
            watched.dirty = True
        return True

    def reconfigure(self, settings: Settings) -> None:
        """After a reload: every DB is evaluated again, and written under the new rules."""
        for watched in self.values():
            watched.dirty = True
            if watched.store is not None:
                watched.store.rules = WriteRules.from_settings(settings)

    def interrupt(self) -> None:
        """Abort the statement in flight on every DB (from another thread; its transaction rolls back)."""
        for watched in list(self.values()):
            if watched.store is not None:
                watched.store.interrupt()

    def close(self) -> None:
        for watched in self.values():
            watched.close()
