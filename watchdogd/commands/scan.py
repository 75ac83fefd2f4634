"""`scan`: explain every running/pending tool part — why it is kept, or when it expires. Writes nothing to opencode."""

from __future__ import annotations

import json
import sys

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.config import Settings
from watchdogd.journal import Journal, JournalDamaged
from watchdogd.journal_health import ReadOnlyJournal
from watchdogd.opencode.discovery import discover_databases
from watchdogd.pipeline import PassOptions, one_shot
from watchdogd.present.candidates import Retry, candidate_record, db_problems, scan_text
from watchdogd.present.text import safe
from watchdogd.status_file import daemon_alive, read_status


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


def run(args, settings: Settings) -> int:
    dbs = discover_databases(settings.watch.databases, args.db)
    try:
        journal = Journal(settings.state_dir)
    except JournalDamaged as damaged:  # scan writes nothing: it still explains, as the daemon does meanwhile
        print(f"opencode-watchdogd: {safe(str(damaged), 600)}", file=sys.stderr)
        journal = ReadOnlyJournal(damaged)
    try:
        result = one_shot(settings, journal, dbs, PassOptions(act=False))
    finally:
        journal.close()
    records, failed = [], isinstance(journal, ReadOnlyJournal)
    for report in result.reports:
        for line in db_problems(report):
            print(f"opencode-watchdogd: {safe(line, 400)}", file=sys.stderr)
        failed |= report.failed or bool(report.schema and not report.schema.writable) or bool(report.refusal)
        records += [candidate_record(a) for a in report.assessments]
    retries = _daemon_retries(settings)
    for record in records:
        record["retry"] = record["retry"] or retries.get((record["db"], record["part_id"]))
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(
            scan_text(records) if records else f"no running or pending tool parts in {len(dbs)} database(s)"
        )
    if failed:
        return 2
    return 1 if any(r["verdict"] == "expired" for r in records) else 0


def _daemon_retries(settings: Settings) -> dict[tuple[str, str], Retry]:
    """The running daemon's back-off per (DB, part): this pass acts on nothing, the waits are the daemon's."""
    doc = read_status(settings.state_dir)
    if not doc or not daemon_alive(int(doc.get("pid") or 0)):
        return {}
    return {(c["db"], c["part_id"]): c["retry"] for c in doc.get("candidates") or [] if c.get("retry")}
