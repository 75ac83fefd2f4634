"""The daemon's hold on its state dir: the lock (one daemon per state dir) and the journal.

A damaged journal makes the daemon read-only until it is moved aside or replaced (`journal_health`);
settled rows older than `journal.keep` are pruned at the first pass, then at most once a day; a
reload may move the hold to another state dir, which is locked and opened before the old one goes.
"""

from __future__ import annotations

import time
from pathlib import Path

from watchdogd.durations import format_duration
from watchdogd.journal import Journal, JournalError
from watchdogd.journal_health import JournalDamaged, ReadOnlyJournal, file_signature
from watchdogd.statedir import StateDirError, StateLock

PRUNE_EVERY_S = 86400.0  # journal retention runs at start, then at most this often


def _lock_state_dir(state_dir: Path) -> StateLock:
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except StateDirError as exc:
        raise JournalError(str(exc)) from None
    return lock


def _open_journal(state_dir: Path, log) -> Journal | ReadOnlyJournal:
    try:
        return Journal(state_dir)
    except JournalDamaged as exc:
        log.error("journal damaged: read-only, nothing is written", error=str(exc))
        return ReadOnlyJournal(exc)


class StateHold:
    """The journal the passes write to, and the state dir's lock; raises JournalError in one line."""

    def __init__(self, state_dir: Path, log):
        self.state_dir = state_dir
        self.log = log
        # A JournalError here leaves nothing to clean up; a damaged journal makes the daemon read-only.
        self.journal = _open_journal(state_dir, log)
        self.lock = _lock_state_dir(state_dir)  # one daemon per state dir: else exit 2 at once
        self.journal.next_run("run")
        self._pruned_at: float | None = None  # monotonic time the journal was last pruned (journal.keep)

    @property
    def read_only(self) -> str | None:
        """Why the daemon writes nothing (its journal is damaged), or None."""
        return self.journal.problem if isinstance(self.journal, ReadOnlyJournal) else None

    def check(self, thorough: bool = False) -> None:
        """Before each pass (and `thorough`ly after one that failed): a journal that became damaged makes the
        daemon read-only; one moved aside or changed is opened again (a new one is started), and writing resumes."""
        journal = self.journal
        if isinstance(journal, ReadOnlyJournal):
            if file_signature(journal.damaged.path) == journal.signature:
                return
        elif not journal.moved():
            damaged = journal.damage(thorough)
            if damaged is None:
                return
            self.log.error("journal damaged: read-only, nothing is written", error=str(damaged))
            self.journal = ReadOnlyJournal(damaged, stale=journal)
            return
        journal.close()  # before opening what is there now: SQLite removes `-wal` by name when it closes
        self.journal = _open_journal(self.state_dir, self.log)
        if isinstance(self.journal, Journal):
            self.log.warning("journal opened again; writing resumes", journal=str(self.journal.path))
        self.journal.next_run("run")

    def prune(self, keep: float) -> None:
        """Settled journal rows older than `keep` go: at the first pass, then at most once a day (never while
        read-only)."""
        if self.read_only is not None:
            return
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            pruned = self.journal.prune(keep)
        except JournalError as exc:
            self.log.warning("journal not pruned", error=str(exc))
            return
        if pruned:
            self.log.info("journal pruned", actions=pruned, older_than=format_duration(keep))

    def move(self, state_dir: Path) -> None:
        """Lock and open the new state dir first; only then let go of the old one."""
        journal = Journal(state_dir)
        try:
            lock = _lock_state_dir(state_dir)
        except JournalError:
            journal.close()
            raise
        journal.next_run("run")
        self.close()
        self.journal, self.lock, self.state_dir = journal, lock, state_dir

    def close(self) -> None:
        self.journal.close()
        self.lock.release()
