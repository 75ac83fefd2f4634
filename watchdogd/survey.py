"""One look at the DBs: candidates, ownership evidence and a verdict for each. Reads only."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.models import (
    Assessment,
    Candidate,
    ChildState,
    DBReport,
    Holder,
    Ownership,
    Sighting,
    Verdict,
)
from watchdogd.opencode.rows import BadRow, SessionInfo
from watchdogd.opencode.store import OpencodeStore, StoreError
from watchdogd.opencode.writegate import write_refusal
from watchdogd.policy import classify_child, evaluate, ownership_from_holders


# Owner sightings are journaled to the second, not at every pass (a held part is seen at each DB change).
OWNER_SEEN_STEP_S = 1.0


class LiveEvidence(Protocol):
    """What reachable opencode servers say (the live layer); absent, holders alone decide."""

    def ownership(self, candidate: Candidate, base: Ownership, holders: list[Holder]) -> Ownership: ...

    def child_busy(self, candidate: Candidate) -> bool | None:
        """Whether a `task` part's child session is busy on its server; None when unknown."""
        ...


def _epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def assess(
    path: Path,
    candidates: list[Candidate],
    sessions: dict[str, SessionInfo],
    holders: list[Holder],
    journal: Journal,
    settings: Settings,
    now: datetime,
    live: LiveEvidence | None = None,
) -> list[Assessment]:
    """Verdicts for one DB's candidates; sightings (first seen, owner last seen) persist in the journal."""
    known = journal.sightings(str(path))
    stamp = now.timestamp()
    sightings: dict[str, tuple[float, float | None]] = {}
    owners: dict[str, Ownership] = {}
    for cand in candidates:
        owner = ownership_from_holders(cand.start_ms, holders)
        if live is not None:
            owner = live.ownership(cand, owner, holders)
        owners[cand.part_id] = owner
        first, owner_seen = known.get(cand.part_id, (stamp, None))
        if not owner.orphan and (owner_seen is None or stamp - owner_seen >= OWNER_SEEN_STEP_S):
            owner_seen = stamp  # an owner now: the orphan grace will count from here
        sightings[cand.part_id] = (first, owner_seen)
    if sightings != known:
        journal.record_sightings(str(path), sightings)

    def judge(cand: Candidate, child: ChildState = ChildState.NONE) -> Assessment:
        first, owner_seen = sightings[cand.part_id]
        sighting = Sighting(_epoch(first), _epoch(owner_seen))
        info = sessions.get(cand.session_id)
        verdict = evaluate(cand, owners[cand.part_id], sighting, settings.policy, now, child)
        return Assessment(cand, owners[cand.part_id], verdict, sighting, info)

    # Subagents first: a `task` part's fate depends on how its child session is doing.
    plain = {c.part_id: judge(c) for c in candidates if not c.child_session_id}
    by_session: dict[str, list[Verdict]] = {}
    for item in plain.values():
        by_session.setdefault(item.candidate.session_id, []).append(item.verdict)
    results = dict(plain)
    for cand in candidates:
        if cand.child_session_id:
            busy = live.child_busy(cand) if live is not None else None
            child = classify_child(by_session.get(cand.child_session_id, []), busy)
            # The live plan must not abort this session while its subagent works (or may: unknown).
            at_work = live is not None and bool(cand.directory) and busy is not False
            results[cand.part_id] = replace(judge(cand, child), child_at_work=at_work)
    return [results[c.part_id] for c in candidates]


def survey_db(
    path: Path,
    store: OpencodeStore,
    holders: list[Holder],
    journal: Journal,
    settings: Settings,
    now: datetime | None = None,
    live: LiveEvidence | None = None,
    candidates: tuple[list[Candidate], list[BadRow]] | None = None,
) -> DBReport:
    """Full read of one DB (or the given candidates, from an incremental tracker)."""
    report = DBReport(path, holders=holders)
    now = now or datetime.now(UTC)
    if not path.exists():
        report.error = "database does not exist (yet)"
        return report
    report.refusal = write_refusal(path, store.rules)
    try:
        report.schema = store.schema()
        found, report.bad_rows = candidates if candidates is not None else store.scan()
        sessions = store.sessions(c.session_id for c in found)
    except StoreError as exc:
        report.error = str(exc).removeprefix(f"{path}: ")
        if report.schema is not None and not report.schema.writable:  # e.g. "no such column": say why first
            report.error = f"{report.schema.reason} ({report.error})"
        if report.refusal:  # e.g. "unable to open database file" on a read-only mount: say why
            report.error += f" ({report.refusal})"
        return report
    found = [_with_session(c, sessions.get(c.session_id)) for c in found]
    report.assessments = [_with_queued(a, store) for a in assess(path, found, sessions, holders, journal, settings, now, live)]
    return report


def _with_queued(item: Assessment, store: OpencodeStore) -> Assessment:
    """Prompts queued behind a live stuck run: opencode drops them once the run is freed, so list them."""
    if item.ownership.orphan:
        return item
    try:
        queued = store.queued_user_messages(item.candidate.session_id, item.candidate.start_ms or 0)
    except StoreError:
        return item
    return replace(item, queued=tuple(queued)) if queued else item


def _with_session(cand: Candidate, info: SessionInfo | None) -> Candidate:
    if info is None:
        return cand
    return replace(cand, directory=info.directory, title=info.title)
