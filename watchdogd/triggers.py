"""When the next pass runs: file events, the poll, the next deadline and other requests coalesce here.

One APScheduler job runs the pass (`pass_scheduler`); `Triggers` only decides when. It keeps why a
pass is wanted and which DBs had commits, and arms the job (the `arm` callback) no later than the
earliest time asked for. A request made while a pass runs is kept and armed once the scheduler has
let go of that pass's job: passes never overlap and no request is lost. The clocks are injected so
that the decisions can be tested without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from watchdogd.file_events import CHANGE

# Why a pass runs (shown in the `pass` log line and the status file); file events add their kind.
START, POLL, DEADLINE, RELOAD = "start", "poll", "deadline", "reload"
CLOCK_JUMP, AFTER_ACTION = "clock-jump", "after-action"
PASS_JOB = "pass"


@dataclass(frozen=True)
class Due:
    """What one pass is for: why it runs, and which DBs had commits since the last pass began."""

    reasons: frozenset[str]
    changed: frozenset[Path]

    @property
    def everything(self) -> bool:
        """Only a pass woken by plain commits alone may read just the DBs that had them."""
        return bool(self.reasons - {CHANGE})


def _wall_now() -> datetime:
    return datetime.now(UTC)


class Triggers:
    """The requests for a pass since the last one began, and when the scheduler job is armed."""

    def __init__(
        self,
        arm: Callable[[datetime, bool], None],
        *,
        now: Callable[[], datetime] = _wall_now,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._arm = arm  # (at, force): run the pass job no later than `at`
        self._now = now
        self._monotonic = monotonic
        self._lock = threading.Lock()  # file events, signals and the pass thread all come here
        self._reasons: set[str] = set()
        self._changed: set[Path] = set()  # DBs with commits since the last pass began
        self._running_since: float | None = None
        self._rerun_at: datetime | None = None  # the earliest request made while a pass ran
        self._armed_at: datetime | None = None  # the earliest pass already asked of the scheduler
        self._clock_offset = self._offset()
        self.deadline: datetime | None = None  # the next one the last pass found (set by its caller)

    # -- requests ------------------------------------------------------------------------------
    def note(self, reason: str, db: Path | None = None) -> None:
        """A reason for the next pass, and the DB a file event was about; no pass is asked for (see `wake`)."""
        with self._lock:
            self._reasons.add(reason)
            if db is not None:
                self._changed.add(db)

    def wake(self, reason: str, delay: float = 0.0, force: bool = False) -> None:
        """Ask for a pass no later than `delay` from now; coalesces with anything already due.

        `force` re-arms the job even when its next run time looks earlier (after a wall-clock step
        that time is meaningless)."""
        at = self._now() + timedelta(seconds=delay)
        with self._lock:
            self._reasons.add(reason)
            if self._running_since is not None:
                self._rerun_at = min(self._rerun_at or at, at)
                return
            already = self._armed_at is not None and at - timedelta(seconds=delay) <= self._armed_at <= at
            if already and not force:
                return  # a pass is already due sooner: the common case while opencode streams
            self._armed_at = at
        self._arm(at, force)

    # -- the pass ------------------------------------------------------------------------------
    def begin(self) -> Due:
        """A pass starts: it takes every request so far (a poll when there was none)."""
        with self._lock:
            reasons, self._reasons = self._reasons or {POLL}, set()
            changed, self._changed = self._changed, set()
            self._running_since = self._monotonic()
            self._armed_at = None
        if self.deadline is not None and self._now() >= self.deadline:
            reasons.add(DEADLINE)
        return Due(frozenset(reasons), frozenset(changed))

    def finish(self) -> float:
        """The pass did its work (or failed): how long it took, in seconds. Requests still wait for `arm_next`."""
        started = self._running_since
        return self._monotonic() - started if started is not None else 0.0

    def arm_next(self) -> None:
        """The pass's job has returned: arm the earliest of a request made during it and the next deadline.

        Called by the scheduler once it has let go of the job (`pass_scheduler`), never from inside the job:
        APScheduler skips a run that comes due while the job still counts as running, and with the poll an
        hour away a pass asked for in that moment would be lost."""
        with self._lock:
            self._running_since = None
            due = [t for t in (self._rerun_at, self.deadline) if t is not None]
            self._rerun_at = None
            if due:
                self._armed_at = min(due)
        if due:
            self._arm(min(due), False)

    def running_for(self) -> float | None:
        """Seconds the current pass has run, None between passes."""
        started = self._running_since
        return None if started is None else self._monotonic() - started

    # -- the wall clock ------------------------------------------------------------------------
    def _offset(self) -> float:
        return self._now().timestamp() - self._monotonic()

    def clock_step(self, limit: float) -> float | None:
        """Seconds the wall clock moved against the monotonic clock since the last call, if more than `limit`.

        The scheduler sleeps on the monotonic clock toward wall-clock run times: after such a step
        its next run time means nothing (see `wake(force=True)`)."""
        offset = self._offset()
        step, self._clock_offset = offset - self._clock_offset, offset
        return step if abs(step) > limit else None


def pass_scheduler(run: Callable[[], None], poll_interval: float, triggers: Triggers) -> BackgroundScheduler:
    """One job runs `run`: at start, every `poll_interval` seconds, and whenever `triggers` arms it.

    One worker, one instance: passes never overlap. The next pass is armed from the scheduler's
    listener, after the job's instance is released (see `Triggers.arm_next`)."""
    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )
    scheduler.add_job(run, "interval", seconds=poll_interval, id=PASS_JOB, next_run_time=datetime.now(UTC))
    scheduler.add_listener(lambda _event: triggers.arm_next(), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    return scheduler


def arm_job(scheduler: BackgroundScheduler, at: datetime, force: bool) -> None:
    """Run the pass job no later than `at` (`force`: at `at`, even if it was due earlier)."""
    job = scheduler.get_job(PASS_JOB)
    if job is not None and (force or job.next_run_time is None or at < job.next_run_time):
        job.modify(next_run_time=at)
