"""Command line: `opencode-watchdogd VERB [options]`; options go after the verb."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from watchdogd import __version__
from watchdogd.commands import config_cmd, history, reap, scan, service, status, undo
from watchdogd.commands import run as run_cmd
from watchdogd.config import ConfigError, load_config
from watchdogd.journal import JournalError
from watchdogd.log import effective_level, setup_logging

VERBS = {"run": run_cmd, "scan": scan, "reap": reap, "undo": undo, "history": history, "status": status,
         "config": config_cmd, "service": service}


def _state_dir_flag(text: str) -> Path | str:
    """A flag's relative path is the shell's: resolved against the current directory. "" stays "" (refused by
    the config check) instead of becoming "." (Path("") is "."): that would be the current directory, $HOME."""
    return Path(os.path.abspath(Path(text).expanduser())) if text.strip() else text


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", type=Path, help="config file (default: $OPENCODE_WATCHDOGD_CONFIG, "
                        "else $XDG_CONFIG_HOME/opencode-watchdogd/config.toml)")
    common.add_argument("--db", type=Path, action="append", help="an opencode DB to use (repeatable; replaces discovery)")
    common.add_argument("--state-dir", type=_state_dir_flag, help="journal, backups and status file (default: "
                        "$XDG_STATE_HOME/opencode-watchdogd)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    common.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    common.add_argument("--log-format", choices=["auto", "console", "json"], help="log format: readable text (auto, console) or JSON lines (default: auto)")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opencode-watchdogd",
                                     description="Frees opencode sessions stuck busy on tool calls that never finish.")
    parser.add_argument("--version", action="version", version=f"opencode-watchdogd {__version__}")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = common_options()
    for module in VERBS.values():
        module.add_parser(subparsers, common)
    return parser


def overrides(args: argparse.Namespace) -> dict:
    out: dict = {}
    if getattr(args, "state_dir", None) is not None:
        out["state_dir"] = args.state_dir
    if getattr(args, "log_format", None):
        out["log_format"] = args.log_format
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings, used = load_config(getattr(args, "config", None), overrides(args))
    except ConfigError as exc:
        print(f"opencode-watchdogd: config error: {exc}", file=sys.stderr)
        return 2
    args.config_used = used
    args.flags_used = ["--" + key.replace("_", "-") for key in overrides(args)]
    # One-shot verbs print their result on stdout; their log shows warnings and errors unless -v.
    one_shot = 0 if args.verb == "run" else 1
    setup_logging(effective_level(settings.log_level, getattr(args, "verbose", 0), getattr(args, "quiet", 0) + one_shot),
                  settings.log_format)
    try:
        code = VERBS[args.verb].run(args, settings)
        sys.stdout.flush()  # inside the try: a reader gone (`| head`) shows here, not as a traceback at exit
        return code
    except BrokenPipeError:
        return closed_pipe()
    except JournalError as exc:
        print(f"opencode-watchdogd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


CLOSED_PIPE = 141  # what a shell reports for a tool killed by SIGPIPE (`ls | head`): 128 + 13


def closed_pipe() -> int:
    """stdout's reader went away: end quietly, as other Unix tools do; nothing more is written to it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
    except (OSError, ValueError):
        pass
    return CLOSED_PIPE
