"""Command line: `opencode-watchdogd VERB [options]`; options go after the verb."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shlex
import sys

from watchdogd import __version__
from watchdogd.commands import completion, config_cmd, history, reap, scan, service, status, undo
from watchdogd.commands import run as run_cmd
from watchdogd.commands.options import EXIT_ERROR, PROG, build_options
from watchdogd.config import ConfigError, load_config
from watchdogd.journal import JournalError
from watchdogd.log import effective_level, setup_logging
from watchdogd.opencode.db_files import special_file_kind
from watchdogd.opencode.endpoints import warn_shared_password_files

VERBS = {
    "run": run_cmd,
    "scan": scan,
    "reap": reap,
    "undo": undo,
    "history": history,
    "status": status,
    "config": config_cmd,
    "service": service,
    "completion": completion,
}
NESTED = {"config": {"check", "show"}, "service": {"install", "uninstall", "show"}}
NEEDS_EXISTING_DB = {"scan", "reap"}  # `run` and `service` may name a DB opencode has not created yet

EPILOG = f"""\
Options go after the verb: `{PROG} scan --db PATH`.
`{PROG} VERB --help` says what a verb reads, writes and returns.

exit status (every verb): 0 ok; 1 something needs attention, where the verb's
help says what (scan: something expired; reap: something not freed; undo:
something not restored; status: the daemon is not running); 2 usage, config or
I/O error (one line on stderr, no traceback). A verb whose reader goes away
(`| head`) ends quietly with 141, like other Unix tools."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Frees opencode sessions stuck busy on tool calls that never finish.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    opts = build_options()
    for module in VERBS.values():
        module.add_parser(subparsers, opts)
    return parser


def overrides(args: argparse.Namespace) -> dict:
    out: dict = {}
    if getattr(args, "state_dir", None) is not None:
        out["state_dir"] = args.state_dir
    if getattr(args, "log_format", None):
        out["log_format"] = args.log_format
    return out


def misplaced_options(argv: list[str]) -> str | None:
    """`opencode-watchdogd --db X scan`: say where the options go, with the command line that works."""
    if not argv or not argv[0].startswith("-") or argv[0] in ("-h", "--help", "--version"):
        return None
    at = next((i for i, word in enumerate(argv) if word in VERBS), None)
    if at is None:
        return None
    verb = argv[at : at + 1]
    if at + 1 < len(argv) and argv[at + 1] in NESTED.get(argv[at], ()):
        verb = argv[at : at + 2]
    rest = argv[:at] + argv[at + len(verb) :]
    if not _parses(verb + rest):  # e.g. `--db X history`: history takes no --db
        return f"options go after the verb, and only those it takes: see `{PROG} {' '.join(verb)} --help`"
    return f"options go after the verb: {PROG} {shlex.join(verb + rest)}"


def _parses(argv: list[str]) -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code == 0
    return True


def raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: each watched DB needs a few fds, and systemd's default soft
    limit (1024) is reached near 250 DBs while the hard limit is far higher."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass  # the limit stays; a DB that cannot be opened then says so (db_files.fd_limit_problem)


def db_problem(args: argparse.Namespace) -> str | None:
    for db in getattr(args, "db", None) or []:
        path = db.expanduser()
        if path.is_dir():
            return f"--db {db}: is a directory; give the DB file (e.g. {path / 'opencode.db'})"
        kind = special_file_kind(path)
        if kind:
            return f"--db {db}: is {kind}, not a database file"
        if args.verb in NEEDS_EXISTING_DB and not path.exists():
            return f"--db {db}: no such file"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except BrokenPipeError:
        return closed_pipe()


def _main(argv: list[str]) -> int:
    misplaced = misplaced_options(argv)
    if misplaced:
        print(f"{PROG}: {misplaced}", file=sys.stderr)
        return EXIT_ERROR
    parser = build_parser()
    args = parser.parse_args(argv)
    args.parser = parser  # `completion` prints a script for this whole command line
    raise_open_file_limit()
    problem = db_problem(args)
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    if args.verb == "completion":  # needs no config: works even while the config is being fixed
        return completion.run(args, None)
    try:
        settings, used = load_config(getattr(args, "config", None), overrides(args))
    except ConfigError as exc:
        print(f"{PROG}: config error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    # What the CLI knows that a verb passes on (`run` to the daemon, which re-applies the flags at reload).
    args.config_used, args.overrides = used, overrides(args)
    args.flags_used = ["--" + key.replace("_", "-") for key in args.overrides]
    # One-shot verbs print their result on stdout; their log shows warnings and errors unless -v.
    one_shot = 0 if args.verb == "run" else 1
    level = effective_level(
        settings.log_level, getattr(args, "verbose", 0), getattr(args, "quiet", 0) + one_shot
    )
    setup_logging(level, settings.log_format)
    warn_shared_password_files(server.password_file for server in settings.servers)
    try:
        code = VERBS[args.verb].run(args, settings)
        sys.stdout.flush()  # inside the try: a reader gone (`| head`) shows here, not as a traceback at exit
        return code
    except JournalError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
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
