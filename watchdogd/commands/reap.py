"""`reap`: act on every expired candidate — repair orphans in the DB, report what needs a live server."""

from __future__ import annotations

import json
import sys

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.commands.scan import db_problems
from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.opencode.discovery import discover_databases
from watchdogd.output import safe
from watchdogd.pipeline import PassOptions, one_shot


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "reap",
        "free every expired tool part once: repair orphans in the DB, free live ones by API",
        reads="the opencode DBs (discovered or --db), /proc, local opencode servers' HTTP API",
        writes="repairs in the DBs (journaled first, a backup before the first), journal and backups in the "
        "state dir; with --dry-run nothing",
        example=f"{PROG} reap --dry-run",
        exits="0 all freed or nothing due, 1 something expired was not freed",
        parents=(opts.config, opts.db, opts.state, opts.log),
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, write nothing")
    parser.add_argument("--json", action="store_true", help="print a JSON array of outcomes")


def run(args, settings: Settings) -> int:
    dbs = discover_databases(settings, args.db)
    journal = Journal(settings.state_dir)
    journal.start_run("reap --dry-run" if args.dry_run else "reap")
    options = PassOptions(act=True, dry_run=args.dry_run)
    try:
        result = one_shot(settings, journal, dbs, options)
    finally:
        journal.close()
    for report in result.reports:
        for line in db_problems(report):
            print(f"opencode-watchdogd: {safe(line, 400)}", file=sys.stderr)
    failed = any(report.failed for report in result.reports)
    outcomes = list(result.outcomes)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "db": str(o.item.candidate.db),
                        "session_id": o.item.candidate.session_id,
                        "part_id": o.item.candidate.part_id,
                        "tool": o.item.candidate.tool,
                        "route": o.plan.label,
                        "outcome": o.outcome,
                        "detail": o.detail,
                        "action_id": o.action_id,
                    }
                    for o in outcomes
                ],
                indent=2,
            )
        )
    else:
        for o in outcomes:
            c = o.item.candidate
            tag = f"#{o.action_id} " if o.action_id else ""
            print(
                f"{tag}{o.outcome:9} {safe(c.session_id)} {safe(c.part_id)} {safe(c.tool)}: {safe(o.detail, 300)}"
            )
        if not outcomes:
            print("nothing due")
    if failed:
        return 2
    return 0 if all(o.ok for o in outcomes) else 1
