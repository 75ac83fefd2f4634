"""`run`: the main job — watch the DBs and free what expires, until stopped."""

from __future__ import annotations

import sys

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.config import Settings


def add_parser(subparsers, opts: Options) -> None:
    add_verb(
        subparsers,
        "run",
        "run the daemon in the foreground until stopped (systemd: Type=notify)",
        reads="the opencode DBs (discovered or --db), /proc, local opencode servers' HTTP API",
        writes="repairs in the DBs (journaled first), journal, backups and status.json in the state dir; "
        "log lines on stderr",
        example=f"{PROG} run --config ~/my.toml -v",
        exits="0 after a clean stop (SIGTERM, SIGINT)",
        parents=(opts.config, opts.db, opts.state, opts.log),
    )


def run(args, settings: Settings) -> int:
    # Imported here, so the other verbs do not load the daemon and its scheduler.
    from watchdogd.daemon import Daemon
    from watchdogd.notifiers import MetricsError

    try:
        return Daemon(settings, args.config, args.db, args.overrides, config_used=args.config_used).serve()
    except MetricsError as exc:
        print(f"opencode-watchdogd: error: {exc}", file=sys.stderr)
        return 2
