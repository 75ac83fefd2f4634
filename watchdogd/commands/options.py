"""Parser pieces every verb module uses: the option groups a verb may take (only those that mean something
for it), and help that says what the verb reads, what it writes, an example and its exit status."""

from __future__ import annotations

import argparse
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import shtab

PROG = "opencode-watchdogd"
# One scheme for every verb (README "Exit status"): 1 only where a verb documents what needs attention.
EXIT_OK, EXIT_ATTENTION, EXIT_ERROR = 0, 1, 2
ERRORS = "2 usage, config or I/O error"


@dataclass(frozen=True)
class Options:
    """Parent parsers, one per group of options; a verb takes the groups that mean something for it."""

    config: argparse.ArgumentParser
    db: argparse.ArgumentParser
    state: argparse.ArgumentParser
    log: argparse.ArgumentParser
    overrides: argparse.ArgumentParser  # config values a flag may set: --state-dir, --log-format


def state_dir_flag(text: str) -> Path | str:
    """A flag's relative path is the shell's: resolved against the current directory. "" stays "" (refused by
    the config check) instead of becoming "." (Path("") is "."): that would be the current directory, $HOME."""
    return Path(os.path.abspath(Path(text).expanduser())) if text.strip() else text


def file_flag(text: str) -> Path:
    """--db and --config: "" is an error of its own, not "." (Path("") is the current directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (give a file)")
    return Path(text)


MAX_INT = 2**63 - 1  # SQLite's integers: a larger id or count is an OverflowError in the query


def positive_int(text: str) -> int:
    """An action id or a count: 1 to MAX_INT (0 and negative ones mean nothing; larger ones cannot be asked)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 1 <= value <= MAX_INT:
        raise argparse.ArgumentTypeError(f"{text} is out of range (accepted: from 1 to {MAX_INT})")
    return value


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def build_options() -> Options:
    config = _parent()
    config.add_argument(
        "-c",
        "--config",
        type=file_flag,
        metavar="FILE",
        help="config file (default: $OPENCODE_WATCHDOGD_CONFIG, else "
        "$XDG_CONFIG_HOME/opencode-watchdogd/config.toml)",
    )
    db = _parent()
    db.add_argument(
        "--db",
        type=file_flag,
        action="append",
        metavar="FILE",
        help="an opencode DB to use (repeatable; replaces discovery)",
    )
    state = _parent()
    state.add_argument(
        "--state-dir",
        type=state_dir_flag,
        metavar="DIR",
        help="journal, backups and status file (default: $XDG_STATE_HOME/opencode-watchdogd)",
    )
    log = _parent()
    log.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeat for debug)")
    log.add_argument("-q", "--quiet", action="count", default=0, help="less log output")
    log.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        help="log lines on stderr: readable text (auto, console) or JSON lines (default: auto)",
    )
    overrides = _parent()
    overrides.add_argument("--state-dir", type=state_dir_flag, metavar="DIR", help="override state_dir")
    overrides.add_argument("--log-format", choices=["auto", "console", "json"], help="override log_format")
    for parent in (config, db, state, overrides):
        for action in parent._actions:
            if action.metavar in ("FILE", "DIR"):  # shell completion (shtab) offers paths there
                action.complete = shtab.FILE if action.metavar == "FILE" else shtab.DIRECTORY
    return Options(config, db, state, log, overrides)


def add_verb(
    subparsers,
    name: str,
    summary: str,
    *,
    reads: str,
    writes: str,
    example: str,
    exits: str,
    parents: tuple[argparse.ArgumentParser, ...] = (),
) -> argparse.ArgumentParser:
    """A verb whose --help gives a one-line description, what it reads and writes, an example and exit codes."""
    fields = [("reads:", reads), ("writes:", writes), ("example:", example), ("exit:", f"{exits}; {ERRORS}")]
    epilog = "\n".join(
        textwrap.fill(
            text, 100, initial_indent=f"{label:9}", subsequent_indent=" " * 9, break_on_hyphens=False
        )
        for label, text in fields
    )
    return subparsers.add_parser(
        name,
        parents=list(parents),
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
