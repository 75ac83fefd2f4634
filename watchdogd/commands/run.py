"""`run`: the main job — watch the DBs and free what expires, until stopped."""

from __future__ import annotations

from watchdogd.config import Settings


def add_parser(subparsers, common) -> None:
    subparsers.add_parser("run", parents=[common], help="run the daemon in the foreground (systemd: Type=notify)")


def run(args, settings: Settings) -> int:
    from watchdogd.cli import overrides
    from watchdogd.daemon import Daemon

    return Daemon(settings, args.config, args.db, overrides(args), config_used=args.config_used).serve()
