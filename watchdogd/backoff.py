"""Per-part back-off: an action whose outcome does not change is retried later and later, not every pass.

A server that never frees, a row shape the repair refuses, a backup that cannot be written: acting again
at every debounce changes nothing and costs a request, a journal row and a log line each time. One small
frozen `Backoff` per (DB, part) says when to try again; the pure functions here compute it. The daemon
keeps a `BackoffBook` across passes (a one-shot `reap` starts with an empty one). Any change to the part
row, or another plan for it, drops the entry: the next pass acts at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIRST_MIN_S = 1.0  # the first retry waits the debounce, at least this long
CAP_S = 3600.0  # then twice as long each time, up to an hour (or the poll interval, when that is longer)


@dataclass(frozen=True)
class Backoff:
    """What the last attempt on one part ended with, and when to try again."""

    row: str  # the part row acted on: any change to it resets the back-off
    plan: str  # the plan acted on (its label): another plan resets it too
    run: tuple[str, str]  # (session id, message id): the run a live request went to
    reason: str  # how the last attempt ended (logged once per change)
    attempts: int
    retry_at: datetime
    action_id: int | None = None  # the journal row of this decision: retries add none
    sent: bool = False  # a reject/abort went to this run: never sent again inside the back-off

    def applies(self, row: str, plan: str) -> bool:
        return self.row == row and self.plan == plan

    def waiting(self, now: datetime) -> bool:
        return now < self.retry_at


def delay_s(attempts: int, first_s: float, cap_s: float) -> float:
    """The wait after `attempts` attempts in a row: `first_s`, doubled each time, at most `cap_s`."""
    return min(cap_s, first_s * 2 ** min(max(attempts, 1) - 1, 40))


def limits(debounce_s: float, poll_interval_s: float) -> tuple[float, float]:
    """(first wait, cap) for the daemon's settings."""
    return max(debounce_s, FIRST_MIN_S), max(poll_interval_s, CAP_S)


def after_attempt(
    prior: Backoff | None,
    *,
    row: str,
    plan: str,
    run: tuple[str, str],
    reason: str,
    action_id: int | None,
    sent: bool,
    now: datetime,
    first_s: float,
    cap_s: float,
) -> Backoff:
    """The back-off after one more attempt that did not free the part (`prior` applies to the same row/plan)."""
    attempts = (prior.attempts if prior else 0) + 1
    return Backoff(
        row,
        plan,
        run,
        reason,
        attempts,
        now + timedelta(seconds=delay_s(attempts, first_s, cap_s)),
        action_id if action_id is not None else (prior.action_id if prior else None),
        sent or bool(prior and prior.sent),
    )


def reason_changed(prior: Backoff | None, reason: str) -> bool:
    """Whether an outcome is news (logged as such) or the same as the last attempt's (not logged again)."""
    return prior is None or prior.reason != reason


Key = tuple[str, str]  # (DB path, part id)


class BackoffBook:
    """(DB, part) -> Backoff across passes; only the pass thread touches it."""

    def __init__(self) -> None:
        self._entries: dict[Key, Backoff] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def current(self, db: str, part_id: str, row: str, plan: str, run: tuple[str, str]) -> Backoff | None:
        """The back-off that applies to this row and plan; a stale one is dropped.

        A part with none of its own whose run (session + message) another part with the same plan already
        sent its request to inherits that: the same run is never aborted twice inside the back-off."""
        state = self._entries.get((db, part_id))
        if state is not None and not state.applies(row, plan):
            del self._entries[(db, part_id)]
            state = None
        if state is not None:
            return state
        sibling = next(
            (
                s
                for (d, _p), s in self._entries.items()
                if d == db and s.run == run and s.sent and s.plan == plan
            ),
            None,
        )
        if sibling is None:
            return None
        return Backoff(row, plan, run, sibling.reason, 0, sibling.retry_at, sibling.action_id, True)

    def record(self, db: str, part_id: str, state: Backoff | None) -> None:
        if state is None:
            self._entries.pop((db, part_id), None)
        else:
            self._entries[(db, part_id)] = state

    def keep_only(self, db: str, part_ids: set[str]) -> None:
        """Forget the parts of `db` that are no longer running or pending."""
        for key in [k for k in self._entries if k[0] == db and k[1] not in part_ids]:
            del self._entries[key]

    def next_retry(self, now: datetime) -> datetime | None:
        """The earliest retry still ahead (one already due waits for the pass that reads its DB)."""
        ahead = [s.retry_at for s in self._entries.values() if s.retry_at > now]
        return min(ahead) if ahead else None
