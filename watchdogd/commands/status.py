"""`status`: what the running daemon published — pid, last pass, DBs, candidates, recent actions."""

from __future__ import annotations

import json
from datetime import datetime

from watchdogd.commands.options import EXIT_ATTENTION, EXIT_OK, PROG, Options, add_verb
from watchdogd.commands.scan import notes
from watchdogd.config import Settings
from watchdogd.durations import format_duration
from watchdogd.journal import read_recent
from watchdogd.output import safe, table, when
from watchdogd.statefile import daemon_alive, read_status


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "status",
        "show what the running daemon published: pid, last pass, DBs, candidates, actions",
        reads="status.json and the journal in the state dir (never creates either)",
        writes="nothing",
        example=f"{PROG} status --json",
        exits="0 the daemon is running, 1 it is not",
        parents=(opts.config, opts.state),
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args, settings: Settings) -> int:
    data = read_status(settings.state_dir)
    actions = read_recent(settings.state_dir, 5)
    alive = bool(data) and daemon_alive(int(data.get("pid", 0)))
    if args.json:
        print(
            json.dumps(
                {
                    "running": alive,
                    "status": data,
                    "recent_actions": [
                        {
                            "id": a.id,
                            "time": a.when.isoformat(),
                            "outcome": a.outcome,
                            "route": a.route,
                            "session_id": a.session_id,
                            "part_id": a.part_id,
                            "tool": a.tool,
                            "detail": a.detail,
                        }
                        for a in actions
                    ],
                },
                indent=2,
            )
        )
        return EXIT_OK if alive else EXIT_ATTENTION
    if not data:
        print(f"opencode-watchdogd is not running (no status in {settings.state_dir})")
        return EXIT_ATTENTION
    state = f"running (pid {data['pid']})" if alive else f"not running (last pid {data['pid']})"
    print(f"opencode-watchdogd {state}, version {data.get('version')}")
    print(f"  status:      {safe(data.get('status_line'), 300)}")
    last = data.get("last_pass") or {}
    print(
        f"  last pass:   {when(_dt(last.get('at')))} ({', '.join(last.get('reasons', []))}); "
        f"{data.get('passes')} passes"
    )
    print(f"  next due:    {when(_dt(data.get('next_deadline')))}")
    counts = data.get("counts", {})
    print("  actions:     " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    print("  databases:")
    for db in data.get("databases", []):
        refusal = f"read-only: {db['write_refusal']}" if db.get("write_refusal") else None
        verdict = db.get("error") or refusal or db.get("schema_reason") or "-"
        print(
            f"    {safe(db['path'])}: {db.get('schema') or 'n/a'}; {db.get('candidates', 0)} candidates; "
            f"{safe(verdict, 200)}"
        )
    cands = data.get("candidates", [])
    if cands:
        rows = [
            [
                c["session_id"],
                c["part_id"],
                c["tool"],
                c["status"],
                format_duration(c["age_s"]),
                c["owner"],
                c["verdict"],
                when(_dt(c.get("expires_at"))),
                c.get("route") or "-",
            ]
            for c in cands
        ]
        print(
            table(["SESSION", "PART", "TOOL", "STATUS", "AGE", "OWNER", "VERDICT", "EXPIRES", "ROUTE"], rows)
        )
        for c in cands:
            for line in notes(c):
                print(f"    {safe(c['part_id'])}: {line}")
    if actions:
        print("  recent actions:")
        for a in actions:
            print(
                f"    #{a.id} {when(a.when)} {a.outcome} {safe(a.route, 40)} {safe(a.session_id)} {safe(a.part_id)}: "
                f"{safe(a.detail or a.reason, 200)}"
            )
    return EXIT_OK if alive else EXIT_ATTENTION


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
