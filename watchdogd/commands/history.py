"""`history`: the journal's actions, newest first — ids and reasons, never row content."""

from __future__ import annotations

import json

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.config import Settings
from watchdogd.journal import Journal
from watchdogd.output import safe, table, when


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "history",
        "list journaled actions, newest first: ids, routes, outcomes, reasons",
        reads="the journal in the state dir",
        writes="nothing (a first use creates the empty journal)",
        example=f"{PROG} history -n 5 --with-content",
        exits="0",
        parents=(opts.config, opts.state),
    )
    parser.add_argument(
        "-n", "--limit", type=int, default=20, metavar="N", help="how many actions (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--with-content", action="store_true", help="include the rows before and after (conversation content)"
    )


def run(args, settings: Settings) -> int:
    # The journal proper (not read_recent): its start checks and tightens the state dir, as every writer's
    # does.
    journal = Journal(settings.state_dir)
    try:
        actions = journal.recent(args.limit)
    finally:
        journal.close()
    if args.json:
        keep = None if args.with_content else {"part_before", "part_after", "message_before", "message_after"}
        print(
            json.dumps(
                [
                    {k: v for k, v in a.__dict__.items() if not keep or k not in keep}
                    | {"time": a.when.isoformat()}
                    for a in actions
                ],
                indent=2,
            )
        )
        return 0
    if not actions:
        print("no actions journaled yet")
        return 0
    rows = [
        [str(a.id), when(a.when), a.outcome, a.route[:40], a.session_id, a.part_id, a.tool] for a in actions
    ]
    print(table(["ID", "TIME", "OUTCOME", "ROUTE", "SESSION", "PART", "TOOL"], rows))
    for a in actions:
        print(f"  #{a.id}: {safe(a.detail or a.reason, 300)}")
        if args.with_content:
            print("\n".join(content_lines(a)))
    return 0


def content_lines(action) -> list[str]:
    """The journaled rows, each labelled with its table: the part, and the message when it was written too."""
    lines = []
    for table_name, before, after in (
        ("part", action.part_before, action.part_after),
        ("message", action.message_before, action.message_after),
    ):
        if before is None and after is None:
            continue
        lines.append(f"    {table_name + ' before:':16}{safe(before, 2000)}")
        lines.append(f"    {table_name + ' after:':16}{safe(after, 2000)}")
    return lines
