"""What the daemon publishes and `status` shows: systemd's one-line `STATUS=`, the status document (one
schema, filled in `status_document` only) and its text."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypedDict

from watchdogd import __version__
from watchdogd.durations import format_duration
from watchdogd.models import ActionResult, Assessment, DBReport, OwnerKind
from watchdogd.opencode.processes import advice
from watchdogd.present.candidates import CandidateRecord, candidate_record, candidate_table, notes
from watchdogd.present.text import local, plural, safe, when, when_iso


class WatchedView(Protocol):
    """A watched DB as the daemon holds it: its path, whether the file exists, the last pass's report."""

    path: Path
    ident: tuple[int, int] | None
    report: DBReport | None


@dataclass(frozen=True)
class DaemonFacts:
    """What the daemon knows beyond the reports: its config file, its passes and what it did."""

    config: Path | None
    passes: int
    reasons: tuple[str, ...]  # what triggered the last pass (file event, poll, deadline, …)
    counts: tuple[tuple[str, int], ...]  # ("repaired", 3), … in the order `status` shows them
    read_only: str | None = None  # why nothing is written (a damaged journal) and the fix, in one line


class DatabaseStatus(TypedDict):
    path: str
    exists: bool
    schema: str | None
    schema_reason: str | None
    error: str | None
    write_refusal: str | None
    candidates: int
    bad_rows: int


class LastPass(TypedDict):
    at: str  # ISO 8601
    reasons: list[str]


class StatusDocument(TypedDict):
    """`status.json`: what `status` and `status --json` read (written by the daemon after each pass)."""

    pid: int
    version: str
    updated: str
    status_line: str
    next_deadline: str | None
    databases: list[DatabaseStatus]
    candidates: list[CandidateRecord]
    config: str | None
    passes: int
    last_pass: LastPass
    counts: dict[str, int]
    read_only: str | None  # the daemon writes nothing: why, and the fix (a damaged journal)


def status_line(
    watched: Iterable[WatchedView], deadline: datetime | None, last_action: str, read_only: str | None = None
) -> str:
    """systemd's one-line STATUS=: read-only and why, DBs, candidates, errors, the next deadline, the last action."""
    watched = list(watched)
    reports = [w.report for w in watched if w.report]
    items = [a for r in reports for a in r.assessments]
    expired = sum(a.verdict.expired for a in items)
    errors = sum(1 for r in reports if r.error and r.path.exists())
    parts = [f"READ-ONLY: {read_only}"] if read_only else []
    parts += [
        f"watching {len(watched)} DB{'s' if len(watched) != 1 else ''}",
        f"{plural(len(items), 'candidate')} ({expired} expired)",
    ]
    if errors:
        parts.append(plural(errors, "DB error"))
    stuck = [a for a in items if a.verdict.expired and a.ownership.kind is OwnerKind.UNREACHABLE]
    if stuck:
        more = f" (+{len(stuck) - 1} more)" if len(stuck) > 1 else ""
        parts.append(_stuck_text(stuck[0]) + more)
    if deadline:
        parts.append(f"next deadline {local(deadline).strftime('%H:%M:%S')}")
    if last_action:
        parts.append(f"last: {last_action}")
    return "; ".join(parts)


def last_action_text(result: ActionResult, at: datetime) -> str:
    """The `last:` of the STATUS= line: the route of the last write done, its part, the local time."""
    return f"{result.route.value} {result.item.candidate.part_id} at {at.strftime('%H:%M:%S')}"


def _stuck_text(item: Assessment) -> str:
    """An expired part the daemon cannot reach, and what its user can do (short: no recipe)."""
    owner = item.ownership
    pid = owner.pids[0] if owner.pids else 0
    return (
        f"{item.candidate.tool} stuck {format_duration(item.verdict.age_s)} in "
        f"{owner.detail or 'a process without an API'}: "
        f"{advice(owner.process, item.candidate.tool, pid, recipe=False)}"
    )


def status_document(
    watched: Iterable[WatchedView], line: str, deadline: datetime | None, facts: DaemonFacts
) -> StatusDocument:
    """The status file's content: the DBs with their schema verdicts, and every candidate as `scan` lists it."""
    watched = list(watched)
    now = datetime.now(UTC).isoformat()
    return {
        "pid": os.getpid(),
        "version": __version__,
        "updated": now,
        "status_line": line,
        "next_deadline": deadline.isoformat() if deadline else None,
        "databases": [_db_status(w) for w in watched],
        "candidates": [candidate_record(a) for w in watched if w.report for a in w.report.assessments],
        "config": str(facts.config) if facts.config else None,
        "passes": facts.passes,
        "last_pass": {"at": now, "reasons": sorted(facts.reasons)},
        "counts": dict(facts.counts),
        "read_only": facts.read_only,
    }


def _db_status(watched: WatchedView) -> DatabaseStatus:
    report, schema = watched.report, watched.report.schema if watched.report else None
    return {
        "path": str(watched.path),
        "exists": watched.ident is not None,
        "schema": schema.label if schema else None,
        "schema_reason": schema.reason if schema else None,
        "error": report.error if report else None,
        "write_refusal": report.refusal if report else None,
        "candidates": len(report.assessments) if report else 0,
        "bad_rows": len(report.bad_rows) if report else 0,
    }


def status_text(data: StatusDocument, alive: bool, actions: Sequence) -> str:
    """`status`: the daemon, its last pass, its DBs, its candidates (table and notes), recent actions."""
    pid = data["pid"]
    state = f"running (pid {pid})" if alive else f"not running (last pid {pid})"
    last = data.get("last_pass") or {}
    counts = data.get("counts", {})
    lines = [
        f"opencode-watchdogd {state}, version {data.get('version')}",
        f"  status:      {safe(_status_line(data), 300)}",
        *([f"  READ-ONLY:   {safe(data['read_only'], 600)}"] if data.get("read_only") else []),
        f"  last pass:   {when_iso(last.get('at'))} ({', '.join(last.get('reasons', []))}); "
        f"{plural(data.get('passes') or 0, 'pass', 'passes')}",
        f"  next due:    {when_iso(data.get('next_deadline'))}",
        "  actions:     " + ", ".join(f"{v} {k}" for k, v in counts.items()),
        "  databases:",
    ]
    lines += [_db_line(db) for db in data.get("databases", [])]
    candidates = data.get("candidates", [])
    if candidates:
        lines.append(candidate_table(candidates))
        lines += [f"    {safe(c['part_id'])}: {line}" for c in candidates for line in notes(c)]
        lines += [
            f"    {safe(c['part_id'])}: undone at {when_iso(u['at'])} (undo #{u['undo']}): left alone until its "
            "row changes"
            for c in candidates
            if (u := c.get("undone"))
        ]
    if actions:
        lines.append("  recent actions:")
        lines += [_action_line(a) for a in actions]
    return "\n".join(lines)


def _status_line(data: StatusDocument) -> str:
    """STATUS= as sent, less the read-only text it starts with (the READ-ONLY: line below says it whole)."""
    line, read_only = str(data.get("status_line") or ""), data.get("read_only")
    return line.removeprefix(f"READ-ONLY: {read_only}; ") if read_only else line


def _db_line(db: DatabaseStatus) -> str:
    refusal = f"read-only: {db['write_refusal']}" if db.get("write_refusal") else None
    verdict = db.get("error") or refusal or db.get("schema_reason") or "-"
    return (
        f"    {safe(db['path'])}: {db.get('schema') or 'n/a'}; {plural(db.get('candidates', 0), 'candidate')}; "
        f"{safe(verdict, 200)}"
    )


def _action_line(action) -> str:
    return (
        f"    #{action.id} {when(action.when)} {action.outcome} {safe(action.route, 40)} "
        f"{safe(action.session_id)} {safe(action.part_id)}: {safe(action.detail or action.reason, 200)}"
    )
