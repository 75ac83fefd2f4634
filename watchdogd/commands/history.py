"""`history`: the journal's actions, newest first — ids and reasons, never row content."""

from __future__ import annotations

import json
import os

from watchdogd.commands.options import PROG, Options, add_verb, positive_int
from watchdogd.config import Settings
from watchdogd.journal import Journal, check_state_dir
from watchdogd.present.actions import history_records, history_text
from watchdogd.statedir import JOURNAL_FILE


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "history",
        "list journaled actions, newest first: ids, routes, outcomes, reasons",
        reads="the journal in the state dir",
        writes="nothing",
        example=f"{PROG} history -n 5 --with-content",
        exits="0",
        parents=(opts.config, opts.state),
    )
    parser.add_argument(
        "-n", "--limit", type=positive_int, default=20, metavar="N", help="how many actions (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--with-content", action="store_true", help="include the rows before and after (conversation content)"
    )


def run(args, settings: Settings) -> int:
    actions = []
    # No journal yet: nothing to list, and a command that only reads creates no state dir. Otherwise the
    # journal proper (not read_recent): its start checks and tightens the state dir, as every writer's does.
    check_state_dir(settings.state_dir)  # another user's, or a symlink: refused even with no journal in it
    if os.path.lexists(settings.state_dir / JOURNAL_FILE):
        journal = Journal(settings.state_dir)
        try:
            actions = journal.recent(args.limit)
        finally:
            journal.close()
    if args.json:
        print(json.dumps(history_records(actions, args.with_content), indent=2))
    else:
        print(history_text(actions, args.with_content) if actions else "no actions journaled yet")
    return 0
