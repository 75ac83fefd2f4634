"""Staleness policy: every branch under a frozen clock."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time

from watchdogd.config import PolicyConfig
from watchdogd.models import (
    Candidate,
    ChildState,
    Decision,
    Holder,
    OwnerKind,
    Ownership,
    Sighting,
    Undone,
    Verdict,
)
from watchdogd.policy import classify_child, effective_start, evaluate, ownership_from_holders, undone_verdict

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
POLICY = PolicyConfig()
NONE = Ownership(OwnerKind.NONE)
HELD = Ownership(OwnerKind.HELD, (4242,))
LIVE = Ownership(OwnerKind.LIVE, (4242,), "http://127.0.0.1:4096")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def cand(
    tool: str = "question",
    status: str = "running",
    started: datetime | None = T0,
    created: datetime | None = None,
    child: str | None = None,
) -> Candidate:
    return Candidate(
        db=Path("/tmp/opencode.db"),
        part_id="prt_1",
        message_id="msg_1",
        session_id="ses_1",
        tool=tool,
        status=status,
        call_id="call_1",
        started_ms=ms(started) if started else None,
        created_ms=ms(created) if created else None,
        data="{}",
        child_session_id=child,
    )


@pytest.fixture
def clock():
    with freeze_time(T0, ignore=["_pytest"]) as frozen:  # keep pytest's own timing real
        yield frozen


def now() -> datetime:
    return datetime.now(UTC)


def seen(first: datetime = T0, owner: datetime | None = None) -> Sighting:
    return Sighting(first, owner)


def row(
    changed: datetime | None, *, started: datetime | None = None, created: datetime | None = None
) -> Candidate:
    """A candidate whose row last changed at `changed` (the time_updated column)."""
    base = cand(started=started, created=created)
    return Candidate(**{**base.__dict__, "updated_ms": ms(changed) if changed else None})


# -- orphans: the grace counts from the later of the row's last change and the last owner sighting ---


def test_an_orphan_untouched_for_a_week_is_due_at_once(clock):
    week_ago = T0 - timedelta(days=7)
    verdict = evaluate(row(week_ago, started=week_ago), NONE, seen(first=T0), POLICY, now())
    assert verdict.decision is Decision.EXPIRED and verdict.expired
    assert verdict.expires_at == week_ago + timedelta(seconds=30)
    assert verdict.reason == "question running for 7d; orphan: no process holds the DB"


def test_an_orphan_whose_owner_was_seen_a_second_ago_still_waits_the_grace(clock):
    week_ago = T0 - timedelta(days=7)
    verdict = evaluate(
        row(week_ago, started=week_ago), NONE, seen(week_ago, T0 - timedelta(seconds=1)), POLICY, now()
    )
    assert verdict.decision is Decision.KEEP
    assert verdict.expires_at == T0 + timedelta(seconds=29)
    assert "repair in 29s (policy.orphan_grace = 30s after an owner was last seen)" in verdict.reason
    clock.tick(29)
    assert evaluate(
        row(week_ago, started=week_ago), NONE, seen(week_ago, T0 - timedelta(seconds=1)), POLICY, now()
    ).expired


def test_a_row_changed_after_the_last_owner_sighting_counts_from_the_change(clock):
    change = T0 - timedelta(seconds=10)
    verdict = evaluate(
        row(change, started=T0 - timedelta(hours=1)),
        NONE,
        seen(T0 - timedelta(hours=1), T0 - timedelta(minutes=5)),
        POLICY,
        now(),
    )
    assert verdict.decision is Decision.KEEP and verdict.expires_at == change + timedelta(seconds=30)
    assert "repair in 20s" in verdict.reason and "after the part last changed" in verdict.reason


def test_without_time_updated_the_start_time_is_the_last_change(clock):
    start = T0 - timedelta(seconds=5)
    verdict = evaluate(row(None, started=start), NONE, seen(), POLICY, now())
    assert verdict.decision is Decision.KEEP and verdict.expires_at == start + timedelta(seconds=30)


def test_without_any_start_time_time_created_is_the_last_change(clock):
    created = T0 - timedelta(hours=2)
    verdict = evaluate(row(None, started=None, created=created), NONE, seen(), POLICY, now())
    assert verdict.expired and verdict.expires_at == created + timedelta(seconds=30)


def test_a_row_without_any_time_counts_from_its_first_sighting(clock):
    first = T0 - timedelta(seconds=12)
    verdict = evaluate(row(None, started=None, created=None), NONE, seen(first), POLICY, now())
    assert verdict.decision is Decision.KEEP and verdict.expires_at == first + timedelta(seconds=30)
    assert "after the part was first seen (its row has no time)" in verdict.reason
    clock.tick(18)
    assert evaluate(row(None, started=None, created=None), NONE, seen(first), POLICY, now()).expired


def test_a_row_time_in_the_future_counts_from_its_first_sighting(clock):
    future = T0 + timedelta(days=1)
    verdict = evaluate(row(future, started=future), NONE, seen(T0 - timedelta(seconds=10)), POLICY, now())
    assert verdict.decision is Decision.KEEP and verdict.expires_at == T0 + timedelta(seconds=20)
    assert "its row's time is in the future" in verdict.reason


def test_a_future_row_first_seen_in_the_future_counts_from_now(clock):
    future = T0 + timedelta(days=1)
    verdict = evaluate(row(future, started=future), NONE, seen(future), POLICY, now())
    assert verdict.expires_at == T0 + timedelta(seconds=30)


def test_an_owner_sighting_in_the_future_counts_as_now(clock):
    # the clock went back: a sighting "tomorrow" must not hold the orphan for a day
    week_ago = T0 - timedelta(days=7)
    verdict = evaluate(row(week_ago), NONE, seen(week_ago, T0 + timedelta(days=1)), POLICY, now())
    assert verdict.decision is Decision.KEEP and verdict.expires_at == T0 + timedelta(seconds=30)


def test_an_owner_sighting_older_than_the_row_is_ignored(clock):
    change = T0 - timedelta(minutes=10)
    verdict = evaluate(
        row(change), NONE, seen(T0 - timedelta(hours=1), T0 - timedelta(hours=1)), POLICY, now()
    )
    assert verdict.expired and verdict.expires_at == change + timedelta(seconds=30)


def test_orphan_grace_zero_expires_at_once_even_when_just_changed(clock):
    verdict = evaluate(row(T0), NONE, seen(T0, T0), PolicyConfig(orphan_grace=0), now())
    assert verdict.expired


def test_orphan_ignores_tool_threshold(clock):
    # `never` protects a call only while its owner may still finish it
    policy = PolicyConfig(tools={"question": "never"})
    clock.tick(31)
    assert evaluate(row(T0), NONE, seen(T0, T0), policy, now()).expired


def test_restarted_owner_is_an_orphan(clock):
    clock.tick(45)
    verdict = evaluate(row(T0), Ownership(OwnerKind.RESTARTED, (7,)), seen(T0, T0), POLICY, now())
    assert verdict.expired
    assert "every process holding the DB started after it" in verdict.reason


def test_live_idle_is_an_orphan(clock):
    clock.tick(5)
    owner = Ownership(OwnerKind.LIVE_IDLE, (7,), "http://127.0.0.1:4096")
    verdict = evaluate(row(T0), owner, seen(T0, T0), POLICY, now())
    assert verdict.decision is Decision.KEEP
    assert "its server reports the session idle" in verdict.reason and "repair in 25s" in verdict.reason
    clock.tick(25)
    assert evaluate(row(T0), owner, seen(T0, T0), POLICY, now()).expired


# -- owned calls: per-tool thresholds ----------------------------------------------------------------


@pytest.mark.parametrize("owner", [HELD, LIVE, Ownership(OwnerKind.UNREACHABLE, (1,))])
def test_owned_question_kept_until_threshold(clock, owner):
    clock.tick(3600)
    verdict = evaluate(cand(), owner, seen(), POLICY, now())
    assert verdict.decision is Decision.KEEP
    assert verdict.expires_at == T0 + timedelta(hours=2)
    assert verdict.reason == "question running for 1h; expires in 1h (policy.tools.question = 2h)"


def test_owned_question_expires_at_threshold(clock):
    clock.tick(7200)
    verdict = evaluate(cand(), HELD, seen(), POLICY, now())
    assert verdict.decision is Decision.EXPIRED
    assert verdict.reason == "question running for 2h, over policy.tools.question = 2h"
    assert verdict.age_s == 7200


def test_one_second_before_threshold_is_kept(clock):
    clock.tick(7199)
    assert evaluate(cand(), HELD, seen(), POLICY, now()).decision is Decision.KEEP


def test_pending_uses_pending_threshold(clock):
    clock.tick(599)
    pending = cand(tool="question", status="pending", started=None, created=T0)
    verdict = evaluate(pending, HELD, seen(), POLICY, now())
    assert verdict.decision is Decision.KEEP and "policy.pending = 10m" in verdict.reason
    clock.tick(1)
    verdict = evaluate(pending, HELD, seen(), POLICY, now())
    assert verdict.expired and verdict.reason == "question pending for 10m, over policy.pending = 10m"


@pytest.mark.parametrize(
    "tool, seconds, key",
    [
        ("bash", 3600, "policy.tools.bash"),
        ("task", 7200, "policy.tools.task"),
        ("github_create_issue", 1800, 'policy.tools."*_*"'),
        ("webfetch", 3600, "policy.default"),
    ],
)
def test_default_tool_thresholds(clock, tool, seconds, key):
    clock.tick(seconds - 1)
    assert evaluate(cand(tool=tool), HELD, seen(), POLICY, now()).decision is Decision.KEEP
    clock.tick(1)
    verdict = evaluate(cand(tool=tool), HELD, seen(), POLICY, now())
    assert verdict.expired and key in verdict.reason


def test_configured_globs(clock):
    policy = PolicyConfig(tools={"github_*": "5m", "github_merge*": "1m"})
    clock.tick(120)
    assert evaluate(cand(tool="github_merge_pr"), HELD, seen(), policy, now()).expired
    kept = evaluate(cand(tool="github_list"), HELD, seen(), policy, now())
    assert kept.decision is Decision.KEEP and 'policy.tools."github_*" = 5m' in kept.reason


def test_never_threshold(clock):
    clock.tick(10**8)
    verdict = evaluate(cand(), LIVE, seen(), PolicyConfig(tools={"question": "never"}), now())
    assert verdict.decision is Decision.NEVER and not verdict.expired
    assert verdict.expires_at is None
    assert "policy.tools.question = never" in verdict.reason


def test_never_default(clock):
    clock.tick(10**6)
    verdict = evaluate(cand(tool="webfetch"), HELD, seen(), PolicyConfig(default=math.inf), now())
    assert verdict.decision is Decision.NEVER and "policy.default = never" in verdict.reason


# -- task parts and their child sessions ----------------------------------------------------------------


def test_task_with_active_child_is_never_expired(clock):
    clock.tick(10**6)
    task = cand(tool="task", child="ses_child")
    for owner in (NONE, HELD):
        verdict = evaluate(task, owner, seen(T0, T0), POLICY, now(), ChildState.ACTIVE)
        assert verdict.decision is Decision.NEVER
        assert "subagent session ses_child is still active" in verdict.reason


def test_task_with_stuck_child_is_kept_to_free_the_child(clock):
    clock.tick(10**6)
    verdict = evaluate(
        cand(tool="task", child="ses_child"), NONE, seen(T0, T0), POLICY, now(), ChildState.STUCK
    )
    assert verdict.decision is Decision.KEEP and verdict.expires_at is None
    assert "free the child, not the parent" in verdict.reason


def test_task_without_child_state_follows_threshold(clock):
    clock.tick(7200)
    assert evaluate(
        cand(tool="task", child="ses_child"), HELD, seen(), POLICY, now(), ChildState.NONE
    ).expired


def _verdict(decision: Decision) -> Verdict:
    return Verdict(decision, "x")


@pytest.mark.parametrize(
    "verdicts, busy, state",
    [
        ([], None, ChildState.NONE),
        ([], False, ChildState.NONE),
        ([], True, ChildState.ACTIVE),
        ([_verdict(Decision.KEEP)], None, ChildState.ACTIVE),
        ([_verdict(Decision.NEVER)], False, ChildState.ACTIVE),
        ([_verdict(Decision.EXPIRED), _verdict(Decision.KEEP)], None, ChildState.ACTIVE),
        ([_verdict(Decision.EXPIRED)], None, ChildState.STUCK),
        ([_verdict(Decision.EXPIRED)], False, ChildState.STUCK),
        ([_verdict(Decision.EXPIRED)], True, ChildState.ACTIVE),
    ],
)
def test_classify_child(verdicts, busy, state):
    assert classify_child(verdicts, busy) is state


# -- clocks and missing times -------------------------------------------------------------------------


def test_start_in_the_future_counts_from_first_sighting(clock):
    part = cand(started=T0 + timedelta(hours=5))  # another machine's clock, or skew
    start, note = effective_start(part, seen(T0), now())
    assert start == T0 and "clock skew" in note
    clock.tick(7199)
    assert evaluate(part, HELD, seen(T0), POLICY, now()).decision is Decision.KEEP
    clock.tick(1)
    verdict = evaluate(part, HELD, seen(T0), POLICY, now())
    assert verdict.expired and verdict.age_s == 7200
    assert "start time is in the future" in verdict.reason


def test_future_first_sighting_never_gives_negative_age(clock):
    verdict = evaluate(
        cand(started=T0 + timedelta(hours=1)), HELD, seen(T0 + timedelta(minutes=5)), POLICY, now()
    )
    assert verdict.age_s == 0 and verdict.decision is Decision.KEEP
    assert verdict.expires_at == T0 + timedelta(hours=2)


def test_missing_start_falls_back_to_time_created(clock):
    clock.tick(7200)
    part = cand(started=None, created=T0)
    start, note = effective_start(part, seen(T0 + timedelta(hours=1)), now())
    assert start == T0 and note == ""
    assert evaluate(part, HELD, seen(T0 + timedelta(hours=1)), POLICY, now()).expired


def test_missing_all_times_counts_from_first_sighting(clock):
    part = cand(started=None, created=None)
    clock.tick(3600)
    start, note = effective_start(part, seen(T0), now())
    assert start == T0 and "no start time recorded" in note
    verdict = evaluate(part, HELD, seen(T0), POLICY, now())
    assert verdict.decision is Decision.KEEP and verdict.age_s == 3600
    assert verdict.expires_at == T0 + timedelta(hours=2)


def test_verdict_deadline_is_stable_as_time_passes(clock):
    first = evaluate(cand(), HELD, seen(), POLICY, now())
    clock.tick(1234)
    later = evaluate(cand(), HELD, seen(), POLICY, now())
    assert first.expires_at == later.expires_at == T0 + timedelta(hours=2)


# -- ownership from holders -----------------------------------------------------------------------------


def holder(pid: int, started: datetime) -> Holder:
    return Holder(pid, started.timestamp(), "opencode serve")


def test_no_holders_is_none():
    assert ownership_from_holders(ms(T0), []) == Ownership(OwnerKind.NONE)


def test_every_holder_started_after_the_call_is_restarted():
    owner = ownership_from_holders(
        ms(T0), [holder(1, T0 + timedelta(seconds=2)), holder(2, T0 + timedelta(hours=1))]
    )
    assert owner.kind is OwnerKind.RESTARTED and owner.pids == (1, 2) and owner.orphan


def test_holder_within_margin_may_own_it():
    # /proc start times are only good to about a second: a holder 0.5 s "after" may be the owner
    owner = ownership_from_holders(ms(T0), [holder(1, T0 + timedelta(seconds=0.5))])
    assert owner.kind is OwnerKind.HELD and owner.pids == (1,) and not owner.orphan


def test_margin_is_configurable():
    assert (
        ownership_from_holders(ms(T0), [holder(1, T0 + timedelta(seconds=3))], margin_s=5).kind
        is OwnerKind.HELD
    )
    assert (
        ownership_from_holders(ms(T0), [holder(1, T0 + timedelta(seconds=3))], margin_s=1).kind
        is OwnerKind.RESTARTED
    )


def test_older_holder_makes_it_held_and_lists_only_possible_owners():
    owner = ownership_from_holders(
        ms(T0), [holder(1, T0 - timedelta(hours=1)), holder(2, T0 + timedelta(hours=1))]
    )
    assert owner.kind is OwnerKind.HELD and owner.pids == (1,)
    assert owner.label == "held:1"


def test_unknown_start_with_holders_is_held_by_all():
    owner = ownership_from_holders(None, [holder(1, T0), holder(2, T0 + timedelta(days=1))])
    assert owner.kind is OwnerKind.HELD and owner.pids == (1, 2)


def test_ownership_labels():
    assert Ownership(OwnerKind.NONE).label == "none"
    assert Ownership(OwnerKind.LIVE, (1,), "http://h:1").label == "live:http://h:1"
    assert Ownership(OwnerKind.LIVE_IDLE, (1,), "http://h:1").label == "live-idle:http://h:1"
    assert Ownership(OwnerKind.UNREACHABLE, (3, 4)).label == "live-unreachable:3,4"
    assert Ownership(OwnerKind.RESTARTED, (3,)).label == "restarted"
    assert {k for k in OwnerKind if Ownership(k).orphan} == {
        OwnerKind.NONE,
        OwnerKind.RESTARTED,
        OwnerKind.LIVE_IDLE,
    }


# -- undone: a part `undo` put back is left alone until its row changes ------------------------------


def test_an_undone_part_is_kept_while_its_row_holds_the_restored_image(clock):
    week_ago = T0 - timedelta(days=7)
    part = row(week_ago, started=week_ago)
    undone = Undone(17, T0 - timedelta(minutes=5), part.data, ms(week_ago))
    clock.tick(timedelta(days=30))
    verdict = undone_verdict(part, undone, seen(), now())
    assert verdict is not None and verdict.decision is Decision.KEEP and verdict.expires_at is None
    assert "undone at 2026-11-25 11:55:00 UTC (undo #17): left alone until its row changes" in verdict.reason
    assert verdict.reason.startswith("question running for 37d")


def test_an_undone_part_whose_row_changed_is_judged_as_usual(clock):
    part = row(T0 - timedelta(hours=2), started=T0 - timedelta(hours=2))
    undone = Undone(17, T0, part.data, ms(T0 - timedelta(hours=2)))
    assert undone_verdict(part, replace(undone, part_data='{"other":1}'), seen(), now()) is None
    assert undone_verdict(part, replace(undone, part_updated=ms(T0)), seen(), now()) is None  # time moved
    assert undone_verdict(part, None, seen(), now()) is None
    # an undo journaled before time_updated was recorded: `data` alone decides
    assert undone_verdict(part, replace(undone, part_updated=None), seen(), now()) is not None
