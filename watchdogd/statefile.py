"""The status file the daemon publishes for `opencode-watchdogd status` (written atomically)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdogd import __version__
from watchdogd.commands.scan import candidate_record
from watchdogd.durations import format_duration
from watchdogd.models import OwnerKind
from watchdogd.opencode.holders import is_watchdogd
from watchdogd.opencode.processes import advice

STATUS_FILE = "status.json"


def status_path(state_dir: Path) -> Path:
    return state_dir / STATUS_FILE


def write_status(state_dir: Path, data: dict[str, Any]) -> None:
    target = status_path(state_dir)
    temp = target.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    os.replace(temp, target)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(state_dir).read_text())
    except (OSError, ValueError):
        return None


def daemon_alive(pid: int) -> bool:
    """The pid runs and is an opencode-watchdogd (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return is_watchdogd(cmdline)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def status_line(watched: Iterable, deadline: datetime | None, last_action: str) -> str:
    """systemd's one-line STATUS=: DBs, candidates, errors, the next deadline, the last action."""
    watched = list(watched)
    reports = [w.report for w in watched if w.report]
    items = [a for r in reports for a in r.assessments]
    expired = sum(a.verdict.expired for a in items)
    errors = sum(1 for r in reports if r.error and r.path.exists())
    parts = [
        f"watching {len(watched)} DB{'s' if len(watched) != 1 else ''}",
        f"{_plural(len(items), 'candidate')} ({expired} expired)",
    ]
    if errors:
        parts.append(_plural(errors, "DB error"))
    stuck = [a for a in items if a.verdict.expired and a.ownership.kind is OwnerKind.UNREACHABLE]
    if stuck:
        first = stuck[0]
        pid = first.ownership.pids[0] if first.ownership.pids else 0
        more = f" (+{len(stuck) - 1} more)" if len(stuck) > 1 else ""
        parts.append(
            f"{first.candidate.tool} stuck {format_duration(first.verdict.age_s)} in "
            f"{first.ownership.detail or 'a process without an API'}: "
            f"{advice(first.ownership.process, first.candidate.tool, pid, recipe=False)}{more}"
        )
    if deadline:
        parts.append(f"next deadline {deadline.astimezone().strftime('%H:%M:%S')}")
    if last_action:
        parts.append(f"last: {last_action}")
    return "; ".join(parts)


def status_document(watched: Iterable, line: str, deadline: datetime | None) -> dict[str, Any]:
    """What `status` shows: the DBs with their schema verdicts, and every candidate as `scan` lists it."""
    watched = list(watched)
    return {
        "pid": os.getpid(),
        "version": __version__,
        "updated": datetime.now(UTC).isoformat(),
        "status_line": line,
        "next_deadline": deadline.isoformat() if deadline else None,
        "databases": [_db_status(w) for w in watched],
        "candidates": [
            candidate_record(a, w.report, a.plan) for w in watched if w.report for a in w.report.assessments
        ],
    }


def _db_status(watched) -> dict[str, Any]:
    report = watched.report
    return {
        "path": str(watched.path),
        "exists": watched.ident is not None,
        "schema": report.schema.label if report and report.schema else None,
        "schema_reason": report.schema.reason if report and report.schema else None,
        "error": report.error if report else None,
        "write_refusal": report.refusal if report else None,
        "candidates": len(report.assessments) if report else 0,
        "bad_rows": len(report.bad_rows) if report else 0,
    }
