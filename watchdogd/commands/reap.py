"""`reap`: act on every expired candidate — repair orphans in the DB, report what needs a live server."""

from __future__ import annotations

import json
import sys

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.opencode.discovery import discover_databases
from watchdogd.pipeline import PassOptions, one_shot
from watchdogd.present.actions import outcome_line, outcome_record
from watchdogd.present.candidates import db_problems
from watchdogd.present.text import safe


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
    dbs = discover_databases(settings.watch.databases, args.db)
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
        print(json.dumps([outcome_record(o) for o in outcomes], indent=2))
    else:
        print("\n".join(outcome_line(o) for o in outcomes) if outcomes else "nothing due")
    if failed:
        return 2
    return 0 if all(o.ok for o in outcomes) else 1
