"""`scan`: explain every running/pending tool part — why it is kept, or when it expires. Writes nothing to opencode."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.config import Settings
from watchdogd.durations import format_duration
from watchdogd.journal import Journal
from watchdogd.models import Assessment, DBReport, OwnerKind, Plan
from watchdogd.opencode.discovery import discover_databases
from watchdogd.opencode.processes import advice
from watchdogd.output import safe, table, when
from watchdogd.pipeline import PassOptions, one_shot


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "scan",
        "list running/pending tool parts: owner, verdict, reason, deadline, route",
        reads="the opencode DBs (discovered or --db), /proc, local opencode servers' HTTP API",
        writes="only the journal in the state dir (when an orphan was first seen); never an opencode DB",
        example=f"{PROG} scan --db ~/.local/share/opencode/opencode.db --json",
        exits="0 nothing expired, 1 something expired (`reap` would act)",
        parents=(opts.config, opts.db, opts.state, opts.log),
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array, one object per candidate")


def candidate_record(item: Assessment, report: DBReport, plan: Plan | None) -> dict:
    cand, verdict = item.candidate, item.verdict
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
        "owner": item.ownership.label,
        "owner_detail": item.ownership.detail or None,
        "owner_process": item.ownership.process.value if item.ownership.process else None,
        "advice": user_advice(item),
        "verdict": verdict.decision.value,
        "reason": verdict.reason,
        "expires_at": verdict.expires_at.isoformat() if verdict.expires_at else None,
        "route": plan.label if plan else None,
        "child_session_id": cand.child_session_id,
        "directory": cand.directory,
        "title": cand.title,
        "queued_prompts": [
            {"message_id": mid, "time": datetime.fromtimestamp(ms / 1000, UTC).isoformat()}
            for mid, ms in item.queued
        ],
    }


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
    problems = []
    if report.error:
        problems.append(f"{report.path}: {report.error}")
    elif report.schema and not report.schema.writable:
        problems.append(f"{report.path}: {report.schema.reason}")
    elif report.refusal:
        problems.append(f"{report.path}: read-only: {report.refusal}")
    problems += [f"{report.path}: part {safe(b.part_id)} skipped: {b.problem}" for b in report.bad_rows]
    return problems


def run(args, settings: Settings) -> int:
    dbs = discover_databases(settings, args.db)
    journal = Journal(settings.state_dir)
    try:
        result = one_shot(settings, journal, dbs, PassOptions(act=False))
    finally:
        journal.close()
    records, failed = [], False
    for report in result.reports:
        for line in db_problems(report):
            print(f"opencode-watchdogd: {safe(line, 400)}", file=sys.stderr)
        failed |= report.failed or bool(report.schema and not report.schema.writable) or bool(report.refusal)
        records += [candidate_record(a, report, a.plan) for a in report.assessments]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(render(records) if records else f"no running or pending tool parts in {len(dbs)} database(s)")
    if failed:
        return 2
    return 1 if any(r["verdict"] == "expired" for r in records) else 0


def render(records: list[dict]) -> str:
    rows = [
        [
            r["session_id"],
            r["part_id"],
            r["tool"],
            r["status"],
            format_duration(r["age_s"]),
            r["owner"],
            r["verdict"],
            when_iso(r["expires_at"]),
            r["route"] or "-",
        ]
        for r in records
    ]
    out = table(["SESSION", "PART", "TOOL", "STATUS", "AGE", "OWNER", "VERDICT", "EXPIRES", "ROUTE"], rows)
    reasons = []
    for r in records:
        reasons.append(f"  {safe(r['part_id'])}: {safe(r['reason'], 300)}")
        reasons += [f"    {line}" for line in notes(r)]
    return out + "\n\n" + "\n".join(reasons)


def notes(record: dict) -> list[str]:
    """The owner's evidence, and prompts opencode will drop (the user must re-send them)."""
    out = [f"owner: {safe(record['owner_detail'], 300)}"] if record.get("owner_detail") else []
    if record.get("advice"):
        out.append(f"what you can do: {safe(record['advice'], 400)}")
    queued = record.get("queued_prompts") or []
    if queued:
        listed = ", ".join(f"{safe(q['message_id'])} ({when_iso(q['time'])})" for q in queued)
        out.append(
            f"{len(queued)} prompt(s) sent while stuck; opencode drops them once freed, re-send them: {listed}"
        )
    return out


def when_iso(value: str | None) -> str:
    return when(datetime.fromisoformat(value)) if value else "-"
