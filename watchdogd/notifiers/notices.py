"""What a person is told, decided from a pass result (pure): freed sessions, stuck ones, repaired orphans.

Only ids, titles, directories, tool names, ages and the daemon's own reasons: never conversation content.
Titles and directories come from a DB others write, so they are neutralised like log values, and escaped
for the notification body (freedesktop servers may render a subset of HTML there).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from enum import StrEnum

from watchdogd.models import ActionResult, Outcome, OwnerKind
from watchdogd.notifiers.result import (
    LIVE_FREES,
    NEEDS_USER_OWNERS,
    ORPHAN_REPAIRS,
    PassResult,
)
from watchdogd.opencode.processes import advice
from watchdogd.present.text import safe

LISTED = 3  # sessions named in a coalesced notification; the rest are counted


class NoticeKind(StrEnum):
    FREED = "freed"  # a live session freed through its server
    STUCK = "stuck"  # an expired part the daemon cannot free: the user has to act
    ORPHANS = "orphans"  # rows left by an opencode that exited, repaired (only with notify.orphans)


@dataclass(frozen=True)
class Event:
    kind: NoticeKind
    session_id: str
    part_id: str
    title: str
    directory: str
    tool: str
    age: str  # "question unanswered for 2h", "bash running for 1h5m without a result"
    advice: str = ""  # for STUCK: why it cannot be freed and what to do


@dataclass(frozen=True)
class Rendered:
    summary: str
    body: str
    urgency: int  # freedesktop: 0 low, 1 normal, 2 critical


def rough_age(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{int(seconds)}s"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    units = [(days, "d"), (hours, "h"), (minutes, "m")]
    return "".join(f"{n}{u}" for n, u in units if n) or "1m"


def _age(outcome: ActionResult) -> str:
    cand, age = outcome.item.candidate, rough_age(outcome.item.verdict.age_s)
    if cand.status == "pending":
        return f"{safe(cand.tool, 60)} pending for {age}"
    if cand.tool == "question":
        return f"question unanswered for {age}"
    return f"{safe(cand.tool, 60)} running for {age} without a result"


def _advice(outcome: ActionResult) -> str:
    owner = outcome.item.ownership
    pids = ", ".join(map(str, owner.pids)) or "?"
    if outcome.outcome is Outcome.FAILED:
        return (
            f"freeing it failed ({safe(outcome.detail, 160)}); it is tried again at the next pass. "
            "See `opencode-watchdogd history`."
        )
    if owner.kind is OwnerKind.UNREACHABLE and owner.process is not None and len(owner.pids) == 1:
        # An opencode TUI or `opencode run` without an API: the verified keys for it (docs/tui.md).
        what = safe(owner.detail, 160)
        return f"{what}: {advice(owner.process, outcome.item.candidate.tool, owner.pids[0])}."
    if owner.kind is OwnerKind.UNREACHABLE:
        why = safe(owner.detail, 160) or f"pid {pids}: no reachable API"
        return (
            f"the opencode that may run it cannot be asked ({why}). Answer or cancel it in that opencode "
            "(a TUI without --port has no API), or quit it: the watchdog then repairs the rows."
        )
    if owner.kind is OwnerKind.HELD:
        return (
            f"an opencode process (pid {pids}) may still run it and cannot be asked. Answer or cancel it "
            "there, or quit that process: the watchdog then repairs the rows."
        )
    return (
        f"the watchdog may not write this DB ({safe(outcome.plan.why or outcome.plan.label, 160)}). "
        "Run `opencode-watchdogd scan` for details."
    )


def _kind(outcome: ActionResult, orphans: bool) -> NoticeKind | None:
    if outcome.outcome is Outcome.DONE and outcome.route in LIVE_FREES:
        return NoticeKind.FREED
    if outcome.outcome is Outcome.DONE and outcome.route in ORPHAN_REPAIRS:
        return NoticeKind.ORPHANS if orphans else None
    if outcome.outcome is Outcome.FAILED:
        return NoticeKind.STUCK
    if outcome.outcome is Outcome.REPORTED:
        owner = outcome.item.ownership
        # not "busy with a newer run": that one heals itself
        if owner.kind in NEEDS_USER_OWNERS or owner.orphan:
            return NoticeKind.STUCK
    return None


def events(result: PassResult, orphans: bool, told: set[tuple[str, str]]) -> list[Event]:
    """The events of one pass. A stuck part is told once (`told` holds (db, part) already told and is
    pruned to the parts still listed), not at every pass that reports it again."""
    listed = {(str(r.path), a.candidate.part_id) for r in result.reports for a in r.assessments}
    if result.evaluated:
        told.intersection_update(listed)
    out = []
    for outcome in result.outcomes:
        kind = _kind(outcome, orphans)
        cand = outcome.item.candidate
        key = (str(cand.db), cand.part_id)
        if kind is None or (kind is NoticeKind.STUCK and key in told):
            continue
        if kind is NoticeKind.STUCK:
            told.add(key)
        advice = _advice(outcome) if kind is NoticeKind.STUCK else ""
        out.append(
            Event(
                kind,
                cand.session_id,
                cand.part_id,
                safe(cand.title or cand.session_id, 80),
                safe(cand.directory or "?", 120),
                safe(cand.tool, 60),
                _age(outcome),
                advice,
            )
        )
    return out


def _where(event: Event) -> str:
    return f"“{event.title}” in {event.directory}"


def render(kind: NoticeKind, batch: list[Event]) -> Rendered:
    """One notification for one or many events of a kind (a burst of 10 orphans is one notification)."""
    first = batch[0]
    if len(batch) == 1:
        summary, line = {
            NoticeKind.FREED: ("opencode session freed", f"Freed session {_where(first)}: {first.age}"),
            NoticeKind.STUCK: (
                "opencode session stuck",
                f"Session {_where(first)} is stuck ({first.age}): {first.advice}",
            ),
            NoticeKind.ORPHANS: (
                "opencode rows repaired",
                f"Repaired {first.tool} in {_where(first)}: left running by an opencode that exited",
            ),
        }[kind]
        return Rendered(summary, html.escape(line, quote=False), 2 if kind is NoticeKind.STUCK else 1)
    places: dict[str, set[str]] = {}  # "“title” in directory" -> its sessions (titles repeat: "New session")
    for e in batch:
        places.setdefault(_where(e), set()).add(e.session_id)
    sessions = [f"{where} ({len(ids)} sessions)" if len(ids) > 1 else where for where, ids in places.items()]
    total = sum(len(ids) for ids in places.values())
    summary = {
        NoticeKind.FREED: f"opencode: {len(batch)} stuck tool calls freed",
        NoticeKind.STUCK: f"opencode: {len(batch)} stuck tool calls need you",
        NoticeKind.ORPHANS: f"opencode: {len(batch)} abandoned tool calls repaired",
    }[kind]
    lines = [f"in {total} session{'s' if total != 1 else ''}:", *sessions[:LISTED]]
    if len(sessions) > LISTED:
        lines.append(f"and {len(sessions) - LISTED} more")
    if kind is NoticeKind.STUCK:
        lines.append("Run `opencode-watchdogd scan` to see why and what to do.")
    return Rendered(summary, html.escape("\n".join(lines), quote=False), 2 if kind is NoticeKind.STUCK else 1)
