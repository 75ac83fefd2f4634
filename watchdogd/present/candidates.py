"""Candidates as `scan`, `status` and the status file show them: one record per assessment, the table,
the notes under it, and the DB problems printed on stderr."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypedDict

from watchdogd.durations import format_duration
from watchdogd.models import Assessment, DBReport, OwnerKind
from watchdogd.opencode.processes import advice
from watchdogd.present.text import safe, table, when_iso

HEADERS = ["SESSION", "PART", "TOOL", "STATUS", "AGE", "OWNER", "VERDICT", "EXPIRES", "ROUTE"]


class QueuedPrompt(TypedDict):
    message_id: str
    time: str  # ISO 8601


class Retry(TypedDict):
    """The back-off on a part whose last attempts did not free it (watchdogd/backoff.py)."""

    at: str  # ISO 8601: when the daemon tries again
    reason: str  # how the last attempt ended
    attempts: int


class UndoneRecord(TypedDict):
    """A part `undo` put back, left alone until its row changes (the daemon and `reap` do not touch it)."""

    at: str  # ISO 8601: when the undo ran
    undo: int  # the undo's journal action id


class CandidateRecord(TypedDict):
    """One candidate in `scan --json` and in the status file's `candidates`."""

    db: str
    session_id: str
    message_id: str
    part_id: str
    call_id: str | None
    tool: str
    status: str
    started_ms: int | None
    age_s: float
    owner: str
    owner_detail: str | None
    owner_process: str | None
    advice: str | None
    verdict: str
    reason: str
    expires_at: str | None
    route: str | None
    child_session_id: str | None
    directory: str | None
    title: str | None
    retry: Retry | None
    undone: UndoneRecord | None
    queued_prompts: list[QueuedPrompt]


def candidate_record(item: Assessment) -> CandidateRecord:
    """The record of one assessment; its route is the plan the pass made (None: not due)."""
    cand, verdict, owner = item.candidate, item.verdict, item.ownership
    return {
        "db": str(cand.db),
        "session_id": cand.session_id,
        "message_id": cand.message_id,
        "part_id": cand.part_id,
        "call_id": cand.call_id,
        "tool": cand.tool,
        "status": cand.status,
        "started_ms": cand.start_ms,
        "age_s": round(verdict.age_s, 1),
        "owner": owner.label,
        "owner_detail": owner.detail or None,
        "owner_process": owner.process.value if owner.process else None,
        "advice": user_advice(item),
        "verdict": verdict.decision.value,
        "reason": verdict.reason,
        "expires_at": verdict.expires_at.isoformat() if verdict.expires_at else None,
        "route": item.plan.label if item.plan else None,
        "child_session_id": cand.child_session_id,
        "directory": cand.directory,
        "title": cand.title,
        "retry": retry_record(item),
        "undone": {"at": item.undone.at.isoformat(), "undo": item.undone.action_id} if item.undone else None,
        "queued_prompts": [
            {"message_id": mid, "time": datetime.fromtimestamp(ms / 1000, UTC).isoformat()}
            for mid, ms in item.queued
        ],
    }


def retry_record(item: Assessment) -> Retry | None:
    """The back-off on this part: when the daemon tries again, and why (None: acted on at the next pass)."""
    backoff = item.backoff
    if backoff is None or not backoff.attempts:
        return None
    return {"at": backoff.retry_at.isoformat(), "reason": backoff.reason, "attempts": backoff.attempts}


def user_advice(item: Assessment) -> str | None:
    """For an expired part in a process the daemon cannot reach: how long, and what the user can do."""
    owner = item.ownership
    if owner.kind is not OwnerKind.UNREACHABLE or not item.verdict.expired:
        return None
    pid = owner.pids[0] if owner.pids else 0
    stuck = format_duration(item.verdict.age_s)
    where = owner.detail or "a process without an API"
    return f"stuck for {stuck} in {where}: {advice(owner.process, item.candidate.tool, pid)}"


def db_problems(report: DBReport) -> list[str]:
    """Why a DB is not writable or not read, and its bad rows: one line each, for stderr."""
    problems = []
    if report.error:
        problems.append(f"{report.path}: {report.error}")
    elif report.schema and not report.schema.writable:
        problems.append(f"{report.path}: {report.schema.reason}")
    elif report.refusal:
        problems.append(f"{report.path}: read-only: {report.refusal}")
    problems += [f"{report.path}: part {safe(b.part_id)} skipped: {b.problem}" for b in report.bad_rows]
    return problems


def candidate_table(records: list[CandidateRecord]) -> str:
    """The table `scan` and `status` print, one row per candidate (records of an older status file too)."""
    rows = [
        [
            r["session_id"],
            r["part_id"],
            r["tool"],
            r["status"],
            format_duration(r["age_s"]),
            r["owner"],
            r["verdict"],
            when_iso(r.get("expires_at")),
            r.get("route") or "-",
        ]
        for r in records
    ]
    return table(HEADERS, rows)


def scan_text(records: list[CandidateRecord]) -> str:
    """`scan`: the table, then each part's reason and notes."""
    reasons = []
    for r in records:
        reasons.append(f"  {safe(r['part_id'])}: {safe(r['reason'], 300)}")
        reasons += [f"    {line}" for line in notes(r)]
    return candidate_table(records) + "\n\n" + "\n".join(reasons)


def notes(record: CandidateRecord) -> list[str]:
    """The owner's evidence, the back-off after attempts that did not free it, and prompts opencode will drop
    (the user must re-send them)."""
    out = [f"owner: {safe(record['owner_detail'], 300)}"] if record.get("owner_detail") else []
    retry = record.get("retry")
    if retry:
        wait = (datetime.fromisoformat(retry["at"]) - datetime.now(UTC)).total_seconds()
        due = f"retry in {format_duration(wait)}" if wait > 0 else "retry due"
        out.append(f"{due} (attempt {retry['attempts']} did not free it): {safe(retry['reason'], 300)}")
    if record.get("advice"):
        out.append(f"what you can do: {safe(record['advice'], 400)}")
    queued = record.get("queued_prompts") or []
    if queued:
        listed = ", ".join(f"{safe(q['message_id'])} ({when_iso(q['time'])})" for q in queued)
        out.append(
            f"{len(queued)} prompt(s) sent while stuck; opencode drops them once freed, re-send them: {listed}"
        )
    return out
