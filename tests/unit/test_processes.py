"""Which opencode process holds a DB, from its argv, and the advice for a part stuck in it (docs/tui.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from watchdogd.models import ProcessKind
from watchdogd.opencode.processes import advice, classify, describe, process_kind

NPM = "/home/u/.npm-global/lib/node_modules/opencode-ai"


@pytest.mark.parametrize(
    "argv, kind",
    [
        (["/usr/bin/opencode"], ProcessKind.TUI),
        (["/usr/bin/opencode", "--port", "0"], ProcessKind.TUI),
        (["/usr/bin/opencode", "-m", "fake/m", "/home/u/proj"], ProcessKind.TUI),
        (["/usr/bin/opencode", "pr", "12"], ProcessKind.TUI),
        ([f"{NPM}/bin/.opencode", "--port", "0"], ProcessKind.TUI),  # npm 1.14: the child that holds the DB
        (["node", f"{NPM}/bin/opencode", "run", "hello"], ProcessKind.RUN),
        ([f"{NPM}/bin/.opencode", "run", "SCRIPT:mcp"], ProcessKind.RUN),
        (["/usr/bin/opencode", "--print-logs", "run", "--port", "0", "x"], ProcessKind.RUN),
        (["/usr/bin/opencode", "--session", "run", "x"], ProcessKind.TUI),  # "run" is --session's value here
        (["/usr/bin/opencode", "serve", "--port", "4096"], ProcessKind.SERVER),
        (["/usr/bin/opencode", "web"], ProcessKind.SERVER),
        (["/usr/bin/opencode-cli", "serve"], ProcessKind.SERVER),
        (["/usr/bin/opencode", "acp"], ProcessKind.OTHER),
        (["/usr/bin/opencode", "attach", "http://127.0.0.1:4096"], ProcessKind.OTHER),
    ],
)
def test_classify_reads_the_subcommand_as_opencode_does(argv, kind) -> None:
    assert classify(argv) is kind


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["python3", "holder.py"],
        ["/usr/bin/opencode-watchdogd", "run"],
        ["node", "server.js", "run"],
        ["sqlite3", "opencode.db"],
    ],
)
def test_a_process_not_named_opencode_is_not_classified(argv) -> None:
    assert classify(argv) is None


def test_process_kind_reads_the_real_command_line(tmp_path) -> None:
    named = tmp_path / "opencode"
    named.symlink_to(sys.executable)  # a process whose argv[0] says opencode, as the real one's does
    procs = [
        subprocess.Popen([str(named), "-c", "import time; time.sleep(30)"]),
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]),
    ]
    try:
        assert process_kind(procs[0].pid) is ProcessKind.TUI
        assert process_kind(procs[1].pid) is None  # python, whatever it runs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert process_kind(procs[0].pid) is None  # gone


def test_the_words_a_user_knows() -> None:
    assert describe(ProcessKind.TUI, 123) == "opencode TUI, pid 123, no HTTP API"
    assert describe(ProcessKind.RUN, 9) == "opencode run, pid 9, no HTTP API"


def test_advice_is_the_verified_key_sequence() -> None:
    assert advice(ProcessKind.TUI, "question", 1).startswith("press Esc on the question in that TUI")
    assert advice(ProcessKind.TUI, "ghost_lookup", 1).startswith("press Esc twice in that TUI")
    assert "opencode --port 0" in advice(ProcessKind.TUI, "question", 1)
    assert "opencode --port 0" not in advice(ProcessKind.TUI, "question", 1, recipe=False)
    assert advice(ProcessKind.RUN, "bash", 42) == (
        "press Ctrl+C in its terminal (or `kill -INT 42`); the rows are repaired when it exits"
    )
    assert advice(None, "question", 1) == "quit it and start it again; the rows are repaired when it exits"
