"""Two stages of a pass for one DB: gather the evidence once, then judge and plan (pure).

`gather` asks the holders, the live servers and the store everything the later stages need, once
per candidate; `sightings` merges what the journal remembers with what this pass saw (recorded at the
pass's end); `judge` turns candidates and their evidence into assessments with a verdict and a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from watchdogd.config import PolicyConfig
from watchdogd.models import (
    Assessment,
    Candidate,
    ChildState,
    DBReport,
    Holder,
    Ownership,
    Sighting,
    Undone,
    Verdict,
)
from watchdogd.opencode.rows import SessionInfo
from watchdogd.opencode.store import OpencodeStore, StoreError
from watchdogd.policy import classify_child, evaluate, ownership_from_holders, plan_route, undone_verdict

# Owner sightings are journaled to the second, not at every pass (a held part is seen at each DB change).
OWNER_SEEN_STEP_S = 1.0

SightingTimes = dict[str, tuple[float, float | None]]  # part id -> (first seen, owner last seen), epoch s


class LiveEvidence(Protocol):
    """What reachable opencode servers say (watchdogd/live_evidence.py); absent, holders alone decide."""

    def ownership(self, candidate: Candidate, base: Ownership, holders: list[Holder]) -> Ownership: ...

    def child_busy(self, candidate: Candidate) -> bool | None:
        """Whether a `task` part's child session is busy on its server; None when unknown."""
        ...

    def servers_reached(self) -> list[tuple[str, str]]:
        """(url, opencode version) of the servers this pass reached."""
        ...


@dataclass(frozen=True)
class Evidence:
    """Everything later stages need about one candidate, asked once per pass."""

    ownership: Ownership
    child_busy: bool | None = None  # a `task` part's subagent, as its server reports it
    child_at_work: bool = False  # the subagent is busy, or its server could not tell: never abort the parent
    queued: tuple[tuple[str, int], ...] = ()  # prompts sent while a live run holds the session
    # the part's last `undo` (journal): left alone while its row holds that image
    undone: Undone | None = None


def with_sessions(candidates: list[Candidate], sessions: dict[str, SessionInfo]) -> list[Candidate]:
    """Candidates with their session's directory and title (what the live servers are asked with)."""
    out = []
    for cand in candidates:
        info = sessions.get(cand.session_id)
        out.append(cand if info is None else replace(cand, directory=info.directory, title=info.title))
    return out


def gather(
    candidates: list[Candidate],
    holders: list[Holder],
    live: LiveEvidence | None,
    store: OpencodeStore,
    undone: dict[str, Undone] | None = None,
) -> dict[str, Evidence]:
    """Ownership (holders, then live servers), subagent state, queued prompts and the last undo (from
    `undone`, the journal's) for each candidate."""
    undone = undone or {}
    out: dict[str, Evidence] = {}
    for cand in candidates:
        owner = ownership_from_holders(cand.start_ms, holders)
        if live is not None:
            owner = live.ownership(cand, owner, holders)
        busy, at_work = None, False
        if cand.child_session_id and live is not None:
            busy = live.child_busy(cand)
            at_work = bool(cand.directory) and busy is not False
        queued = () if owner.orphan else _queued(cand, store)
        out[cand.part_id] = Evidence(owner, busy, at_work, queued, undone.get(cand.part_id))
    return out


def _queued(cand: Candidate, store: OpencodeStore) -> tuple[tuple[str, int], ...]:
    """Prompts queued behind a live stuck run: opencode drops them once the run is freed, so list them."""
    try:
        return tuple(store.queued_user_messages(cand.session_id, cand.start_ms or 0))
    except StoreError:
        return ()


def sightings(known: SightingTimes, evidence: dict[str, Evidence], now: datetime) -> SightingTimes:
    """This pass's sightings: first seen kept, owner last seen moved on when an owner holds it now."""
    stamp = now.timestamp()
    out: SightingTimes = {}
    for part_id, found in evidence.items():
        first, owner_seen = known.get(part_id, (stamp, None))
        if not found.ownership.orphan and (owner_seen is None or stamp - owner_seen >= OWNER_SEEN_STEP_S):
            owner_seen = stamp  # an owner now: the orphan grace will count from here
        out[part_id] = (first, owner_seen)
    return out


def _epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def judge(
    report: DBReport,
    candidates: list[Candidate],
    evidence: dict[str, Evidence],
    seen: SightingTimes,
    sessions: dict[str, SessionInfo],
    policy: PolicyConfig,
    now: datetime,
) -> list[Assessment]:
    """Verdicts, then plans, for one DB's candidates (pure). Subagents first: a `task` part's fate
    depends on how its child session is doing."""

    def one(cand: Candidate, child: ChildState = ChildState.NONE) -> Assessment:
        first, owner_seen = seen[cand.part_id]
        sighting = Sighting(_epoch(first), _epoch(owner_seen))
        found = evidence[cand.part_id]
        kept = undone_verdict(cand, found.undone, sighting, now)
        verdict = kept or evaluate(cand, found.ownership, sighting, policy, now, child)
        return Assessment(
            cand,
            found.ownership,
            verdict,
            sighting,
            sessions.get(cand.session_id),
            found.queued,
            found.child_at_work,
            undone=found.undone if kept else None,
        )

    judged = {c.part_id: one(c) for c in candidates if not c.child_session_id}
    by_session: dict[str, list[Verdict]] = {}
    for item in judged.values():
        by_session.setdefault(item.candidate.session_id, []).append(item.verdict)
    for cand in candidates:
        if cand.child_session_id:
            child = classify_child(
                by_session.get(cand.child_session_id, []), evidence[cand.part_id].child_busy
            )
            judged[cand.part_id] = one(cand, child)
    items = [judged[c.part_id] for c in candidates]
    report.assessments = items  # the plan of one candidate may depend on its siblings (a working subagent)
    return [replace(item, plan=plan_route(item, report)) for item in items]
