"""Help that teaches and one exit-code scheme: every verb explains itself and takes only options that mean
something for it."""

from __future__ import annotations

import argparse

import pytest

from tests import dbfactory as f
from watchdogd.cli import build_parser, main


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every verb, nested ones as "config check", with its parser."""
    out = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        walk(sub, f"{prefix}{name} ")
                    else:
                        out[prefix + name] = sub

    walk(build_parser(), "")
    return out


VERBS = [
    "run",
    "scan",
    "reap",
    "undo",
    "history",
    "status",
    "config check",
    "config show",
    "service install",
    "service uninstall",
    "service show",
    "completion",
]


def test_every_verb_is_covered():
    assert sorted(verb_parsers()) == sorted(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_help_says_what_a_verb_reads_writes_and_returns(verb):
    text = verb_parsers()[verb].format_help()
    description = text.split("\n\n")[1]
    assert "\n" not in description.strip() and description.strip().endswith(".")
    for label in ("reads:", "writes:", "example:", "exit:"):
        assert f"\n{label}" in text, (verb, label)
    assert f"example: opencode-watchdogd {verb}" in text
    assert "2 usage, config or I/O error" in " ".join(text.split())
    assert all(len(line) <= 100 for line in text.splitlines())


OPTIONS = {
    "run": {"--config", "--db", "--state-dir", "-v", "-q", "--log-format"},
    "scan": {"--config", "--db", "--state-dir", "-v", "-q", "--log-format", "--json"},
    "reap": {"--config", "--db", "--state-dir", "-v", "-q", "--log-format", "--json", "--dry-run"},
    "undo": {"--config", "--state-dir", "-v", "-q", "--log-format", "--last", "--force", "--json"},
    "history": {"--config", "--state-dir", "--json", "--limit", "--with-content"},
    "status": {"--config", "--state-dir", "--json"},
    "config check": {"--config", "--state-dir", "--log-format"},
    "config show": {"--config", "--state-dir", "--log-format", "--json"},
    "service install": {"--config", "--db", "--state-dir", "--now", "--unit-dir", "--force"},
    "service uninstall": {"--now", "--unit-dir", "--force"},
    "service show": {"--config", "--db", "--state-dir", "--system"},
    "completion": set(),
}


@pytest.mark.parametrize("verb", VERBS)
def test_only_options_that_mean_something(verb):
    offered = set()
    for action in verb_parsers()[verb]._actions:
        offered |= {s for s in action.option_strings if s.startswith("--") or s in ("-v", "-q")}
    offered -= {"--help", "--verbose", "--quiet"}
    assert offered == OPTIONS[verb]


@pytest.mark.parametrize(
    "argv", [["history", "--db", "x.db"], ["status", "-v"], ["config", "check", "--db", "x"]]
)
def test_an_option_a_verb_does_not_take_is_a_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--db", "x.db", "scan", "--json"], "opencode-watchdogd scan --db x.db --json"),
        (["-c", "my.toml", "config", "show"], "opencode-watchdogd config show -c my.toml"),
        (["-v", "run"], "opencode-watchdogd run -v"),
    ],
)
def test_options_before_the_verb_say_where_they_go(capsys, argv, hint):
    assert main(argv) == 2
    assert capsys.readouterr().err == f"opencode-watchdogd: options go after the verb: {hint}\n"


def test_options_before_a_verb_that_does_not_take_them(capsys):
    assert main(["--db", "x.db", "history"]) == 2
    assert capsys.readouterr().err == (
        "opencode-watchdogd: options go after the verb, and only those it takes: see "
        "`opencode-watchdogd history --help`\n"
    )


def test_db_that_is_a_directory(capsys, tmp_path):
    assert main(["scan", "--db", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"opencode-watchdogd: error: --db {tmp_path}: is a directory; give the DB file "
        f"(e.g. {tmp_path / 'opencode.db'})\n"
    )


@pytest.mark.parametrize("verb", ["scan", "reap"])
def test_db_that_does_not_exist(capsys, tmp_path, verb):
    assert main([verb, "--db", str(tmp_path / "typo.db")]) == 2
    assert (
        capsys.readouterr().err == f"opencode-watchdogd: error: --db {tmp_path / 'typo.db'}: no such file\n"
    )


def test_an_existing_db_is_fine(capsys, tmp_path):
    db = f.make_db(tmp_path / "opencode.db")
    assert main(["scan", "--db", str(db)]) == 0


def test_status_without_a_daemon_needs_attention(capsys):
    assert main(["status"]) == 1
    assert "not running" in capsys.readouterr().out


def test_top_level_help_documents_the_exit_scheme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit status (every verb): 0 ok; 1 something needs attention" in out
    assert "Options go after the verb" in out
