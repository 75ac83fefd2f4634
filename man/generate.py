"""Write the man page from the parser itself (argparse-manpage), so it says what `--help` says.

    python man/generate.py > man/opencode-watchdogd.1

The page is committed and shipped (pyproject: data-files share/man/man1); tests/unit/test_manpage.py
fails when it is not what this script prints for the current parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argparse_manpage.manpage import Manpage  # noqa: E402

from watchdogd import __version__  # noqa: E402
from watchdogd.cli import EPILOG, build_parser  # noqa: E402

ENVIRONMENT = [
    ("OPENCODE_WATCHDOGD_CONFIG", "the config file, when --config is not given"),
    (
        "OPENCODE_WATCHDOGD_<KEY>",
        "any config key, `__` for nesting (OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE=1s); "
        "overrides the file, flags override it",
    ),
    (
        "XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_DATA_HOME",
        "where the config, the state dir and opencode's DBs are",
    ),
    ("OPENCODE_DB", "one more opencode DB to watch, as opencode itself reads it"),
    ("NO_COLOR", "no colour in log lines, even on a terminal"),
    ("JOURNAL_STREAM", "set by systemd: when it names stderr, log lines carry syslog priorities <3>...<7>"),
]
FILES = [
    ("$XDG_CONFIG_HOME/opencode-watchdogd/config.toml", "the config file (see config.example.toml)"),
    ("$XDG_STATE_HOME/opencode-watchdogd/journal.db", "every action with the rows before and after (0600)"),
    ("$XDG_STATE_HOME/opencode-watchdogd/status.json", "what the running daemon last published (`status`)"),
    ("$XDG_STATE_HOME/opencode-watchdogd/backups/", "full DB copies taken before the first write"),
    ("$XDG_CONFIG_HOME/systemd/user/opencode-watchdogd.service", "the user unit `service install` writes"),
]


def roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def entries(pairs) -> str:
    return "\n".join(f".TP\n.B {roff(name)}\n{roff(text)}" for name, text in pairs)


def verb_parsers(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = verb_parsers(sub, f"{prefix}{name} ")
                found += nested or [(prefix + name, sub)]
    return found


def page() -> str:
    parser = build_parser()
    parser.epilog = None  # its text goes to EXIT STATUS below
    details = [(verb, sub.epilog.replace("\n         ", " ")) for verb, sub in verb_parsers(parser)]
    parser._manpage = [
        {
            "heading": "verbs: what they read and write",
            "content": "\n".join(
                f".TP\n.B {roff(verb)}\n" + "\n.br\n".join(roff(line) for line in text.splitlines())
                for verb, text in details
            ),
        },
        {"heading": "exit status", "content": roff(EPILOG.split("\n\n", 1)[1].replace("\n", " "))},
        {"heading": "environment", "content": entries(ENVIRONMENT)},
        {"heading": "files", "content": entries(FILES)},
        {
            "heading": "see also",
            "content": roff("systemctl(1), journalctl(1), systemd.service(5), README.md"),
        },
    ]
    return str(
        Manpage(
            parser,
            _data={
                "project_name": "opencode-watchdogd",
                "version": __version__,
                "manual_title": "opencode-watchdogd manual",
                "description": "free opencode sessions stuck busy on tool calls that never finish",
            },
        )
    )


if __name__ == "__main__":
    sys.stdout.write(page())
