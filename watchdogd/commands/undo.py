"""`undo`: restore rows the daemon wrote, where they still hold exactly what it wrote."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from watchdogd.commands.options import PROG, Options, add_verb, positive_int
from watchdogd.config import Settings
from watchdogd.durations import format_duration
from watchdogd.journal import Journal, check_state_dir
from watchdogd.opencode.store import OpencodeStore
from watchdogd.opencode.writegate import WriteRules
from watchdogd.present.actions import (
    request_undo_line,
    stop_undo_line,
    undo_lines,
    undo_record,
    undo_summary,
)
from watchdogd.statedir import JOURNAL_FILE
from watchdogd.stopping import STOP_PROCESS
from watchdogd.undo import undo_action, wrote_rows


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "undo",
        "restore the rows of the last run that wrote, or of one action from `history`",
        reads="the journal in the state dir (which DB and rows each action wrote)",
        writes="the before-images back into the opencode DBs, only where a row still holds exactly what the "
        "daemon wrote; an undo action in the journal",
        example=f"{PROG} undo --last   (or: {PROG} undo 12)",
        exits="0 all restored or nothing to undo, 1 some row not restored (listed; e.g. the session moved on: "
        "--force)",
        parents=(opts.config, opts.state, opts.log),
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "action_id", nargs="?", type=positive_int, metavar="ID", help="an action id from `history`"
    )
    which.add_argument("--last", action="store_true", help="every write of the last run that wrote (all DBs)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="restore even when the session has newer messages than the repaired one",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array, one object per action")


def run(args, settings: Settings) -> int:
    check_state_dir(settings.state_dir)  # another user's, or a symlink: refused even with no journal in it
    if not os.path.lexists(settings.state_dir / JOURNAL_FILE):  # nothing was ever written: create nothing
        if args.last:
            print("[]" if args.json else "nothing to undo")
            return 0
        print(f"opencode-watchdogd: error: no action {args.action_id} in the journal", file=sys.stderr)
        return 2
    journal = Journal(settings.state_dir)
    journal.start_run("undo")
    try:
        if args.last:
            actions = [a for a in journal.last_write_run() if a.outcome == "done"]
            if not actions:
                print("[]" if args.json else "nothing to undo")
                return 0
        else:
            action = journal.action(args.action_id)
            if action is None:
                print(
                    f"opencode-watchdogd: error: {_missing(journal, args.action_id, settings)}",
                    file=sys.stderr,
                )
                return 2
            refusal = _not_undoable(action)
            if refusal:
                print(f"opencode-watchdogd: error: {refusal}", file=sys.stderr)
                return 2
            # Undoing a stop also restores the rows repaired once the process was gone.
            actions = [action, *journal.followups(action)] if action.route == STOP_PROCESS else [action]
        failures = 0
        stores: dict[str, OpencodeStore] = {}
        results = []
        for action in actions:
            if action.route == STOP_PROCESS or not wrote_rows(action):
                # Nothing a row can bring back; with --json, stdout stays one JSON document.
                line = stop_undo_line(action) if action.route == STOP_PROCESS else request_undo_line(action)
                print(line, file=sys.stderr if args.json else sys.stdout)
                continue
            store = stores.setdefault(
                action.db, OpencodeStore(Path(action.db), rules=WriteRules.from_settings(settings))
            )
            result = undo_action(journal, action, store, force=args.force)
            results.append(result)
            for line in [] if args.json else undo_lines(result):
                print(line)
            failures += len(result.not_restored)
        summary = undo_summary(results) or "nothing to undo"
        print(json.dumps([undo_record(r) for r in results], indent=2) if args.json else summary)
        for store in stores.values():
            store.close()
        return 1 if failures else 0
    finally:
        journal.close()


def _missing(journal: Journal, action_id: int, settings: Settings) -> str:
    """Why an action id is not in the journal: never journaled, or pruned by journal.keep."""
    newest = journal.recent(1)
    if newest and 0 < action_id < newest[0].id:
        keep = format_duration(settings.journal.keep)
        return f"action {action_id} is no longer in the journal (older than journal.keep = {keep}: pruned)"
    return f"no action {action_id} in the journal"


def _not_undoable(action) -> str:
    """Why `undo ID` cannot undo this action, or ""."""
    if action.route == "undo":
        return f"action {action.id} is itself an undo (of #{action.undo_of}): it cannot be undone"
    if action.outcome != "done":
        return f"action {action.id} is {action.outcome} ({action.route}); only done writes can be undone"
    if action.route != STOP_PROCESS and not wrote_rows(action):
        return (
            f"action {action.id} ({action.route}) was a request to the opencode server, not a DB write: "
            "there is nothing to restore"
        )
    return ""
