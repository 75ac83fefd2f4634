"""`run`: serve → startup → main loop → shutdown.

Every reason for a pass (file events, the poll, the next deadline, SIGHUP, an action just taken)
goes through `Triggers`, which arms one APScheduler job, so a pass never overlaps another. The pass
itself is `pipeline.run_pass`. Signal handlers only set flags; the main thread waits for them, reloads
and feeds systemd's watchdog.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from watchdogd import __version__
from watchdogd.backoff import BackoffBook
from watchdogd.config import ConfigError, Settings, load_config
from watchdogd.daemon_state import StateHold
from watchdogd.databases import WatchedDBs
from watchdogd.durations import format_duration
from watchdogd.file_events import LIFECYCLE, DBWatcher
from watchdogd.journal import Journal, JournalError
from watchdogd.journal_health import ReadOnlyJournal
from watchdogd.models import Outcome, PassResult
from watchdogd.notifiers import Publishers
from watchdogd.notify import Notifier
from watchdogd.opencode.discovery import discover_databases
from watchdogd.pipeline import PassContext, PassOptions, run_pass
from watchdogd.present.status import DaemonFacts, last_action_text, status_document, status_line
from watchdogd.status_file import write_status
from watchdogd.triggers import (
    AFTER_ACTION,
    CLOCK_JUMP,
    PASS_JOB,
    RELOAD,
    START,
    Due,
    Triggers,
    arm_job,
    pass_scheduler,
)

HUNG_PASS_S = 120.0  # a pass this old means the loop is stuck: stop feeding systemd's watchdog
CLOCK_JUMP_S = 2.0  # wall clock moved this much against the monotonic clock: a step (NTP, suspend/resume)
ACTED = (Outcome.DONE, Outcome.SKIPPED, Outcome.FAILED)  # a write, or a miss: what we know changed


@dataclass
class Counters:
    passes: int = 0
    repaired: int = 0
    failed: int = 0
    skipped: int = 0
    reported: int = 0
    last_action: str = ""
    started: float = field(default_factory=time.monotonic)

    def add(self, result: PassResult) -> None:
        self.repaired += result.count(Outcome.DONE)
        self.failed += result.count(Outcome.FAILED)
        self.skipped += result.count(Outcome.SKIPPED)
        self.reported += result.count(Outcome.REPORTED)
        for outcome in result.outcomes:
            if outcome.outcome is Outcome.DONE:
                self.last_action = last_action_text(outcome, datetime.now())

    def counts(self) -> dict[str, int]:
        return {
            "repaired": self.repaired,
            "failed": self.failed,
            "skipped": self.skipped,
            "reported": self.reported,
        }

    def summary(self) -> str:
        return (
            f"stopped after {self.passes} passes: {self.repaired} repaired, {self.failed} failed, "
            f"{self.skipped} skipped, {self.reported} reported "
            f"(up {format_duration(time.monotonic() - self.started)})"
        )


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config_path: Path | None,
        db_args: list[Path] | None,
        overrides: dict,
        config_used: Path | None = None,
    ):
        self.settings = settings
        self.config_path = config_path  # as given on the command line: reloads resolve it again
        # The file in effect (from --config, $OPENCODE_WATCHDOGD_CONFIG or the default).
        self.config_used = config_used
        self.db_args = db_args
        self.overrides = overrides
        self.log = structlog.get_logger("watchdogd")
        self.counters = Counters()
        self.dbs = WatchedDBs()
        self.triggers = Triggers(self._arm)
        self.should_exit = threading.Event()  # set by SIGTERM/SIGINT, and by shutdown
        self._reload_requested = False  # set by SIGHUP
        self._wakeup = threading.Event()  # the main loop looks at the two flags above
        self._pass_lock = threading.Lock()  # held for the whole of a pass
        self._first_pass_done = threading.Event()
        self._told: set[tuple[str, str, str]] = set()  # report-only parts already logged (once per part)
        self._backoffs = BackoffBook()  # parts whose last attempts did not free them: retried later and later

    # -- serve ---------------------------------------------------------------------------------
    def serve(self) -> int:
        """Raises MetricsError (one line) when the metrics endpoint cannot be served."""
        self.publishers = Publishers(self.settings)
        try:
            self.publishers.start()
        except Exception:
            self.publishers.close()
            raise
        self.notifier = Notifier()
        self.state = StateHold(self.settings.state_dir, self.log)  # the journal, and the state dir's lock
        self.scheduler = pass_scheduler(self.run_pass, self.settings.watch.poll_interval, self.triggers)
        self.watcher = DBWatcher(self._on_file_event)
        try:
            self.startup()
            self.main_loop()
        finally:
            code = self.shutdown()
        return code

    def startup(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        self.triggers.note(START)
        waiting = self._sync_dbs()
        self.log.info(
            "starting",
            version=__version__,
            pid=os.getpid(),
            databases=[str(p) for p in self.dbs],
            config=str(self.config_used) if self.config_used else "none (defaults and environment)",
        )
        missing = [str(p) for p, w in self.dbs.items() if w.ident is None]
        if missing:  # once, at start: found by file events on the nearest existing directory, not by the poll
            self.log.info(
                "waiting for databases to appear",
                databases=missing,
                watching=sorted({str(folder) for folder in waiting.values()}) or None,
            )
        self.scheduler.start()
        # READY=1 only after the first pass (or a stop request during it).
        while not self._first_pass_done.wait(timeout=0.2) and not self.should_exit.is_set():
            pass
        self.notifier.ready(self.status_line())
        self._announce()

    def _announce(self) -> None:
        """Once, at info: what is watched, and what the daemon now waits for."""
        present = [str(w.path) for w in self.dbs.values() if w.ident is not None]
        missing = [str(w.path) for w in self.dbs.values() if w.ident is None]
        parts = [f"watching {len(present)} DB(s)"]
        if missing:
            parts.append(f"waiting for {len(missing)} to appear")
        deadline = self.triggers.deadline
        shown = deadline.isoformat(timespec="seconds") if deadline else "none"
        parts.append(
            f"next deadline {shown}; polling every {format_duration(self.settings.watch.poll_interval)}"
        )
        self.log.info(
            "ready: " + ", ".join(parts),
            watching=present,
            waiting_for_db=missing or None,
            next_deadline=deadline,
        )

    def main_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        while not self.should_exit.is_set():
            self._wakeup.wait(timeout=min(interval, 5.0) if interval else 5.0)
            self._wakeup.clear()
            if self.should_exit.is_set():
                break
            step = self.triggers.clock_step(CLOCK_JUMP_S)
            if step is not None:
                self._on_clock_jump(step)
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if interval and self._alive():
                self.notifier.watchdog()

    def _on_clock_jump(self, seconds: float) -> None:
        """The scheduler sleeps on the monotonic clock toward wall-clock run times: after a step back it would
        wait out the step (no poll, no deadline), after a step forward (resume) up to a poll late. Re-arm now."""
        self.log.warning(
            "wall clock jumped; passing now and re-arming the schedule", seconds=round(seconds, 1)
        )
        self.triggers.wake(CLOCK_JUMP, force=True)

    def shutdown(self) -> int:
        self.should_exit.set()  # also when start-up failed: a pass job that starts from now on does nothing
        self.notifier.stopping()
        self.log.info("stopping")
        self.watcher.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        # Let an action in flight finish; past 1 s, interrupt it (its transaction rolls back).
        finished = self._pass_lock.acquire(timeout=1.0)
        if not finished:
            self.dbs.interrupt()
            finished = self._pass_lock.acquire(timeout=0.8)
        if finished:
            self.dbs.close()
        self.log.info(self.counters.summary(), passes=self.counters.passes, **self.counters.counts())
        self.publishers.close()
        if finished:
            self.state.close()
            # A pass job the scheduler started just before it stopped may be waiting for this lock; interpreter
            # exit joins the job's thread, so a lock kept held here would hang the exit for good.
            self._pass_lock.release()
            return 0
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a pass is stuck in C code; its transaction is rolled back by SQLite

    # -- signals, file events and the scheduler ------------------------------------------------
    def _on_stop_signal(self, signum, _frame) -> None:
        if self.should_exit.is_set():
            os._exit(128 + signum)  # second signal: force
        self.should_exit.set()
        self._wakeup.set()

    def _on_hup(self, _signum, _frame) -> None:
        self._reload_requested = True
        self._wakeup.set()

    def _on_file_event(self, db: Path, kind: str) -> bool:
        """True when the event asks for a pass (the watcher then pauses until the pass drains it)."""
        if not self._note_event(db, kind):
            return False
        self.triggers.wake(kind, delay=self.settings.watch.debounce)
        return True

    def _note_event(self, db: Path, kind: str) -> bool:
        if not self.dbs.note_event(db, kind):
            return False
        self.triggers.note(kind, db)
        return True

    def _arm(self, at: datetime, force: bool) -> None:
        arm_job(self.scheduler, at, force)

    def _alive(self) -> bool:
        """Scheduler, a pass not hung, and the file watcher's thread: all needed for the daemon to do its job."""
        running = self.triggers.running_for()
        return self.scheduler.running and (running is None or running < HUNG_PASS_S) and self.watcher.alive()

    # -- reload --------------------------------------------------------------------------------
    def reload(self) -> None:
        self.notifier.reloading()
        try:
            settings, used = load_config(self.config_path, self.overrides)
        except ConfigError as exc:
            self._reload_failed(exc)
            return
        with self._pass_lock:
            if settings.state_dir != self.settings.state_dir:
                try:
                    self.state.move(settings.state_dir)
                except JournalError as exc:  # an unusable new state dir: the old config keeps running
                    self._reload_failed(exc)
                    return
            self.settings = settings
            self.publishers.reconfigure(settings)
            self._sync_dbs()
            self.dbs.reconfigure(settings)
        self.scheduler.reschedule_job(PASS_JOB, trigger="interval", seconds=settings.watch.poll_interval)
        self.config_used = used
        self.log.info("config reloaded", config=str(used) if used else None)
        self.triggers.wake(RELOAD)
        self.notifier.ready(self.status_line())

    def _reload_failed(self, exc: Exception) -> None:
        self.log.error("reload failed, keeping the previous config", error=str(exc))
        self.notifier.ready(f"config reload failed: {exc}; running with the previous config")

    # -- the state dir: its journal (read-only while damaged) and its lock -----------------------
    @property
    def journal(self) -> Journal | ReadOnlyJournal:
        return self.state.journal

    @property
    def read_only(self) -> str | None:
        """Why the daemon writes nothing (its journal is damaged), or None."""
        return self.state.read_only

    # -- the pass ------------------------------------------------------------------------------
    def _sync_dbs(self) -> dict[Path, Path]:
        """Attach the DBs and place the watches; returns DBs whose directory is missing -> the ancestor watched."""
        paths = discover_databases(self.settings.watch.databases, self.db_args)
        self.dbs.sync(paths, self.settings, announce=bool(self.counters.passes))
        waiting = self.watcher.sync(list(self.dbs))
        if self.counters.passes and any(w.ident is None and w.path.exists() for w in self.dbs.values()):
            # Created while the watch moved down to its directory: no event will come for it.
            self.triggers.wake(LIFECYCLE, delay=self.settings.watch.debounce)
        return waiting

    def run_pass(self) -> None:
        """The scheduler's job: one pass, then its result goes out. Never raises."""
        with self._pass_lock:
            if self.should_exit.is_set():
                return  # stopping: shutdown holds or has held this lock and closes the DBs and the journal
            # Events queued until now are covered by this pass (it reads after them); the watcher listens again.
            for db, kind in self.watcher.drain():
                self._note_event(db, kind)
            due = self.triggers.begin()
            started, result = datetime.now(UTC), None
            try:
                result = self._pass(due)
            except Exception:  # a pass must never kill the daemon
                self.log.exception("pass failed")
            finally:
                duration = self.triggers.finish()
                self._publish_result(result or self._failed_pass(started, duration))
                self._first_pass_done.set()  # the next pass is armed once the scheduler lets go of this job

    def _pass(self, due: Due) -> PassResult:
        self.counters.passes += 1
        self.state.check()
        self.journal.next_run("run")  # one run per pass that writes: what `undo --last` restores
        self.state.prune(self.settings.journal.keep)
        if due.everything:
            self._sync_dbs()
        context = PassContext(
            self.settings,
            self.journal,
            stopping=self.should_exit.is_set,
            log=self.log,
            told=self._told,
            backoffs=self._backoffs,
        )
        # Read-only (no usable journal): the pass looks and reports, as `scan` does; it never writes.
        options = PassOptions(act=self.read_only is None, everything=due.everything, changed=due.changed)
        result = run_pass(context, self.dbs, options)
        if not result.ok:
            self.state.check(thorough=True)  # an error mid-pass may be the journal's pages
        self.triggers.deadline = result.next_deadline
        self.counters.add(result)
        if any(o.outcome in ACTED for o in result.outcomes):
            # A write (or a miss) changes what we know: look again soon rather than at the next poll.
            self.triggers.wake(AFTER_ACTION, delay=self.settings.watch.debounce)
        self.log.debug(
            "pass",
            reasons=sorted(due.reasons),
            evaluated=result.evaluated,
            next_deadline=result.next_deadline,
        )
        if result.evaluated or due.everything:
            self._publish(due.reasons)
        return result

    def _failed_pass(self, started: datetime, duration: float) -> PassResult:
        reports = tuple(w.report for w in self.dbs.values() if w.report)
        return PassResult(started, duration, False, False, reports, (), self.triggers.deadline)

    # -- reporting -----------------------------------------------------------------------------
    def _publish_result(self, result: PassResult) -> None:
        """Hand the pass to the desktop notifier and the metrics; they never fail a pass."""
        try:
            self.publishers.publish(result)
        except Exception:
            self.log.exception("publishing the pass failed")

    def status_line(self) -> str:
        return status_line(
            self.dbs.values(), self.triggers.deadline, self.counters.last_action, self.read_only
        )

    def _publish(self, reasons: frozenset[str]) -> None:
        line = self.status_line()
        self.notifier.status(line)
        c = self.counters
        facts = DaemonFacts(
            self.config_used, c.passes, tuple(reasons), tuple(c.counts().items()), self.read_only
        )
        data = status_document(self.dbs.values(), line, self.triggers.deadline, facts)
        try:
            write_status(self.settings.state_dir, data)
        except OSError as exc:
            self.log.warning("cannot write status file", error=str(exc))
