"""`status`: what the running daemon published — pid, last pass, DBs, candidates, recent actions."""

from __future__ import annotations

import json
import sys

from watchdogd.commands.options import EXIT_ATTENTION, EXIT_ERROR, EXIT_OK, PROG, Options, add_verb
from watchdogd.config import Settings
from watchdogd.journal import JournalDamaged, read_recent
from watchdogd.present.actions import recent_action_record
from watchdogd.present.status import status_text
from watchdogd.present.text import safe
from watchdogd.status_file import daemon_alive, read_status, status_path


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
    try:
        actions, damaged = read_recent(settings.state_dir, 5), None
    except JournalDamaged as exc:  # the daemon runs read-only then: say so, with the fix, and show the rest
        actions, damaged = [], str(exc)
    try:
        return show(args, settings, data, actions, damaged)
    except (AttributeError, KeyError, TypeError, ValueError):  # a document of another shape than ours
        print(
            f"{PROG}: error: {safe(status_path(settings.state_dir), 300)}: not a status this version can read "
            "(damaged, or written by another version); a running daemon rewrites it after its next pass",
            file=sys.stderr,
        )
        return EXIT_ERROR


def show(args, settings: Settings, data: dict | None, actions: list, damaged: str | None) -> int:
    alive = bool(data) and daemon_alive(int(data.get("pid", 0)))
    if args.json:
        recent = [recent_action_record(a) for a in actions]
        out = {"running": alive, "status": data, "recent_actions": recent, "journal_damaged": damaged}
        print(json.dumps(out, indent=2))
    elif data:
        print(status_text(data, alive, actions))
    else:
        print(f"opencode-watchdogd is not running (no status in {settings.state_dir})")
    if damaged and not args.json and not (data and alive and data.get("read_only")):
        print(f"  journal:     {safe(damaged, 600)}")
    return EXIT_OK if alive else EXIT_ATTENTION
