"""Triggers: when the next pass runs. Injected clocks; nothing here waits or measures time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdogd.file_events import CHANGE, CLOSE
from watchdogd.triggers import AFTER_ACTION, DEADLINE, POLL, RELOAD, START, Triggers

T0 = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
DB = Path("/home/me/.local/share/opencode/opencode.db")
OTHER = Path("/home/me/.local/share/opencode/opencode-beta.db")


class Clocks:
    """A wall clock and a monotonic clock that move only when told to; a step moves the wall clock alone."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)


def make() -> tuple[Triggers, Clocks, list[tuple[datetime, bool]]]:
    clocks, armed = Clocks(), []
    triggers = Triggers(
        lambda at, force: armed.append((at, force)), now=clocks.now, monotonic=clocks.monotonic
    )
    return triggers, clocks, armed


def test_a_file_event_arms_the_pass_after_the_debounce_and_the_stream_that_follows_coalesces():
    triggers, clocks, armed = make()
    triggers.note(CHANGE, DB)
    triggers.wake(CHANGE, delay=0.5)
    assert armed == [(T0 + timedelta(seconds=0.5), False)]
    for _ in range(5):  # opencode streams: a commit every 50 ms, the pass already due sooner
        clocks.advance(0.05)
        triggers.note(CHANGE, DB)
        triggers.wake(CHANGE, delay=0.5)
    assert len(armed) == 1


def test_a_sooner_request_re_arms_and_a_forced_one_re_arms_even_when_armed_sooner():
    triggers, clocks, armed = make()
    triggers.wake(CHANGE, delay=0.5)
    triggers.wake(RELOAD)  # now: sooner than the armed pass
    assert armed[-1] == (T0, False) and len(armed) == 2
    triggers.wake("clock-jump", force=True)
    assert armed[-1] == (T0, True) and len(armed) == 3


def test_a_later_request_than_the_armed_one_is_kept_for_the_pass_without_arming():
    triggers, clocks, armed = make()
    triggers.wake(CHANGE, delay=0.5)
    clocks.advance(0.6)  # past the armed time: the scheduler owns it now, a new request arms again
    triggers.wake(CLOSE, delay=0.5)
    assert len(armed) == 2
    assert triggers.begin().reasons == {CHANGE, CLOSE}


def test_begin_takes_every_request_since_the_last_pass_and_defaults_to_the_poll():
    triggers, clocks, armed = make()
    triggers.note(START)
    triggers.note(CHANGE, DB)
    triggers.note(CLOSE, OTHER)
    due = triggers.begin()
    assert due.reasons == {START, CHANGE, CLOSE} and due.changed == {DB, OTHER}
    assert due.everything
    triggers.finish()
    again = triggers.begin()  # nothing asked since: the scheduler's interval ran it
    assert again.reasons == {POLL} and again.changed == frozenset()


def test_only_plain_commits_let_a_pass_read_just_the_changed_dbs():
    triggers, clocks, armed = make()
    triggers.note(CHANGE, DB)
    due = triggers.begin()
    assert due.reasons == {CHANGE} and not due.everything
    triggers.finish()
    triggers.note(CHANGE, DB)
    triggers.note(CLOSE, DB)  # a holder may have exited: look at everything
    assert triggers.begin().everything


def test_requests_during_a_pass_are_armed_only_when_it_ends_at_the_earliest_of_them():
    triggers, clocks, armed = make()
    triggers.begin()
    clocks.advance(1.0)
    triggers.wake(AFTER_ACTION, delay=0.5)
    triggers.wake(CHANGE, delay=0.2)
    assert armed == []  # a pass is running: never a second one on top
    assert triggers.running_for() == 1.0
    assert triggers.finish() == 1.0
    triggers.wake(CHANGE, delay=0.5)  # the job has not returned yet (publishing): still held back
    assert armed == [] and triggers.running_for() == 1.0
    triggers.arm_next()  # the scheduler let go of the job
    assert triggers.running_for() is None
    assert armed == [(T0 + timedelta(seconds=1.2), False)]
    assert triggers.begin().reasons == {AFTER_ACTION, CHANGE}


def test_the_next_deadline_is_armed_after_a_pass_and_marks_the_pass_that_reaches_it():
    triggers, clocks, armed = make()
    triggers.begin()
    triggers.deadline = T0 + timedelta(minutes=10)
    triggers.finish()
    triggers.arm_next()
    assert armed == [(T0 + timedelta(minutes=10), False)]
    clocks.advance(60)
    assert DEADLINE not in triggers.begin().reasons  # a poll before the deadline
    triggers.finish()
    clocks.advance(540)
    assert triggers.begin().reasons == {POLL, DEADLINE}


def test_a_request_during_a_pass_sooner_than_the_deadline_wins():
    triggers, clocks, armed = make()
    triggers.deadline = T0 + timedelta(minutes=10)
    triggers.begin()
    triggers.wake(RELOAD)
    triggers.finish()
    triggers.arm_next()
    assert armed == [(T0, False)]
    # The armed pass is the earliest: a file event due later than it does not re-arm.
    triggers.wake(CHANGE, delay=0.5)
    assert len(armed) == 1


def test_nothing_armed_after_a_pass_without_deadline_or_request():
    triggers, clocks, armed = make()
    triggers.begin()
    triggers.finish()
    triggers.arm_next()
    assert armed == []  # the scheduler's interval (the poll) stays in charge


def test_a_wall_clock_step_is_told_from_time_passing():
    triggers, clocks, armed = make()
    clocks.advance(3600)  # both clocks move: no step
    assert triggers.clock_step(2.0) is None
    clocks.step(1.5)  # NTP slews a little: not a step
    assert triggers.clock_step(2.0) is None
    clocks.step(-3600)  # set back an hour
    assert triggers.clock_step(2.0) == -3600
    assert triggers.clock_step(2.0) is None  # measured from the last look, not from the start
    clocks.step(86400)  # resumed after a day asleep
    assert triggers.clock_step(2.0) == 86400
