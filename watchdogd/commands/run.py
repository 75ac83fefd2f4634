"""`run`: the main job — watch the DBs and free what expires, until stopped."""

from __future__ import annotations

import sys

from watchdogd.config import Settings


def add_parser(subparsers, common) -> None:
    subparsers.add_parser("run", parents=[common], help="run the daemon in the foreground (systemd: Type=notify)")


def run(args, settings: Settings) -> int:
    from watchdogd.cli import overrides
    from watchdogd.daemon import Daemon
    from watchdogd.notifiers import MetricsError

    try:
        return Daemon(settings, args.config, args.db, overrides(args), config_used=args.config_used).serve()
    except MetricsError as exc:
        print(f"opencode-watchdogd: error: {exc}", file=sys.stderr)
        return 2
