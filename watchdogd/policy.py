"""Staleness policy and the plan: pure functions of a candidate, its evidence and the clock. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from watchdogd.config import PolicyConfig
from watchdogd.durations import NEVER, format_duration
from watchdogd.models import (
    Assessment,
    Candidate,
    ChildState,
    DBReport,
    Decision,
    OwnerKind,
    Ownership,
    Plan,
    Route,
    Sighting,
    Undone,
    Verdict,
)

_ORPHAN_WHY = {
    OwnerKind.NONE: "no process holds the DB",
    OwnerKind.RESTARTED: "every process holding the DB started after it (opencode never adopts old runs)",
    OwnerKind.LIVE_IDLE: "its server reports the session idle",
}


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def effective_start(candidate: Candidate, sighting: Sighting, now: datetime) -> tuple[datetime, str]:
    """When the call started, falling back to the first sighting when times are missing or in the future."""
    start_ms = candidate.start_ms
    if start_ms is None:
        return sighting.first_seen, " (no start time recorded; counting from first sighting)"
    start = _from_ms(start_ms)
    if start > now:
        return min(
            sighting.first_seen, now
        ), " (start time is in the future, clock skew; counting from first sighting)"
    return start, ""


def orphan_anchor(candidate: Candidate, sighting: Sighting, now: datetime) -> tuple[datetime, str]:
    """Where the orphan grace starts: the later of the row's last change and the last owner sighting.

    A row with no usable time (missing, or in the future: clock skew) counts from its first sighting;
    an owner sighting in the future (the clock went back) counts as now.
    """
    changed_ms = candidate.changed_ms
    if changed_ms is None:
        changed, note = sighting.first_seen, "the part was first seen (its row has no time)"
    elif _from_ms(changed_ms) > now:
        changed, note = (
            min(sighting.first_seen, now),
            "the part was first seen (its row's time is in the future)",
        )
    else:
        changed, note = _from_ms(changed_ms), "the part last changed"
    if sighting.owner_seen is not None and sighting.owner_seen > changed:
        return min(sighting.owner_seen, now), "an owner was last seen"
    return changed, note


def evaluate(
    candidate: Candidate,
    ownership: Ownership,
    sighting: Sighting,
    policy: PolicyConfig,
    now: datetime,
    child: ChildState = ChildState.NONE,
) -> Verdict:
    start, note = effective_start(candidate, sighting, now)
    age = max(0.0, (now - start).total_seconds())
    what = f"{candidate.tool} {candidate.status} for {format_duration(age)}{note}"

    if child is ChildState.ACTIVE:
        return Verdict(
            Decision.NEVER,
            f"{what}; its subagent session {candidate.child_session_id} is still active",
            None,
            age,
        )
    if child is ChildState.STUCK:
        return Verdict(
            Decision.KEEP,
            f"{what}; its subagent session {candidate.child_session_id} is stuck: free the child, not the parent",
            None,
            age,
        )

    if ownership.orphan:
        since, anchor = orphan_anchor(candidate, sighting, now)
        deadline = since + timedelta(seconds=policy.orphan_grace)
        why = f"orphan: {_ORPHAN_WHY[ownership.kind]}"
        if now >= deadline:
            return Verdict(Decision.EXPIRED, f"{what}; {why}", deadline, age)
        left = format_duration((deadline - now).total_seconds())
        grace = format_duration(policy.orphan_grace)
        return Verdict(
            Decision.KEEP,
            f"{what}; {why}; repair in {left} (policy.orphan_grace = {grace} after {anchor})",
            deadline,
            age,
        )

    if candidate.status == "pending":
        threshold, key = policy.pending, "policy.pending"
    else:
        threshold, key = policy.threshold_for(candidate.tool)
    rule = f"{key} = {format_duration(threshold)}"
    if threshold == NEVER:
        return Verdict(Decision.NEVER, f"{what}; {rule}", None, age)
    deadline = start + timedelta(seconds=threshold)
    if now >= deadline:
        return Verdict(Decision.EXPIRED, f"{what}, over {rule}", deadline, age)
    left = format_duration((deadline - now).total_seconds())
    return Verdict(Decision.KEEP, f"{what}; expires in {left} ({rule})", deadline, age)


def undone_verdict(
    candidate: Candidate, undone: Undone | None, sighting: Sighting, now: datetime
) -> Verdict | None:
    """KEEP for a part that `undo` put back and that still holds exactly the image undo restored (`data`,
    and `time_updated` when the undo recorded it): the user asked for it back, so neither the daemon nor
    `reap` touches it until its row changes again. None: not undone, or changed since (the usual rules)."""
    if undone is None or candidate.data != undone.part_data:
        return None
    if undone.part_updated is not None and candidate.updated_ms != undone.part_updated:
        return None
    start, note = effective_start(candidate, sighting, now)
    age = max(0.0, (now - start).total_seconds())
    at = undone.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    what = f"{candidate.tool} {candidate.status} for {format_duration(age)}{note}"
    why = f"undone at {at} (undo #{undone.action_id}): left alone until its row changes"
    return Verdict(Decision.KEEP, f"{what}; {why}", None, age)


def classify_child(child_verdicts: list[Verdict], child_busy: bool | None) -> ChildState:
    """How a `task` part's subagent is doing, from its own candidates and (when known) its server status."""
    if child_busy or any(not v.expired for v in child_verdicts):
        return ChildState.ACTIVE
    if child_verdicts:
        return ChildState.STUCK
    return ChildState.NONE


def ownership_from_holders(start_ms: int | None, holders: list, margin_s: float = 1.0) -> Ownership:
    """Ownership evidence from the processes that hold the DB open (the live-server layer refines HELD)."""
    if not holders:
        return Ownership(OwnerKind.NONE)
    if start_ms is not None and all(h.started_at > start_ms / 1000 + margin_s for h in holders):
        return Ownership(OwnerKind.RESTARTED, tuple(h.pid for h in holders))
    possible = tuple(h.pid for h in holders if start_ms is None or h.started_at <= start_ms / 1000 + margin_s)
    return Ownership(OwnerKind.HELD, possible)


def plan_route(item: Assessment, report: DBReport) -> Plan | None:
    """How `reap` frees this candidate now (None: not due). Pure: the evidence is on the assessment.

    Orphans are repaired in the DB (through their idle server when one holds the DB); a busy session
    only through the server that holds it; anything else is reported with why nothing is written.
    """
    if not item.verdict.expired:
        return None
    owner = item.ownership
    pids = ",".join(map(str, owner.pids))
    if owner.kind is OwnerKind.LIVE_IDLE:
        return Plan(Route.PATCH_PART)
    if owner.kind is OwnerKind.LIVE:
        return _live_plan(item, report)
    if owner.kind in (OwnerKind.NONE, OwnerKind.RESTARTED):
        return (
            Plan(Route.DB_REPAIR)
            if report.ok
            else Plan(Route.REPORT, f"DB not writable ({report.not_writable})")
        )
    if owner.kind is OwnerKind.HELD:
        return Plan(Route.REPORT, f"live owner may hold it (pid {pids}); needs live recovery, no DB write")
    if owner.kind is OwnerKind.UNREACHABLE:  # the evidence layer says what it is and what can be done
        return owner.live_plan or Plan(
            Route.REPORT, f"live owner has no reachable API (pid {pids}); no DB write"
        )
    return Plan(Route.REPORT, f"live owner {owner.label}")


def _live_plan(item: Assessment, report: DBReport) -> Plan:
    plan = item.ownership.live_plan
    if plan is None:
        return Plan(Route.REPORT, f"live owner {item.ownership.label}; not asked in this pass")
    session = item.candidate.session_id
    if plan.route is Route.ABORT and any(
        a.child_at_work for a in report.assessments if a.candidate.session_id == session
    ):
        return Plan(
            Route.REPORT,
            "an abort would cancel a subagent of this session that is busy or in an "
            "unknown state; free the child instead",
        )
    return plan
