"""Log lines in the form their reader expects: journald priorities, colour only on a terminal, JSON when asked."""

from __future__ import annotations

import json
import os
import re
import select
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from watchdogd.log import effective_level, on_journal, readable, setup_logging, wants_colour

ANSI = "\x1b["
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def journal_env(path: Path) -> dict[str, str]:
    """What systemd sets when it connects stderr to journald: JOURNAL_STREAM=<st_dev>:<st_ino> of that stream."""
    st = os.stat(path)
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def log_all_levels(stream, env: dict[str, str], fmt: str = "auto") -> None:
    setup_logging("debug", fmt, stream=stream, env=env)
    log = structlog.get_logger("watchdogd")
    log.debug("a debug line", deadline=datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC))
    log.info("an info line")
    log.warning("a warning line")
    log.error("an error line")
    stream.flush()


def test_journal_stream_must_name_this_very_file(tmp_path):
    mine, other = tmp_path / "stderr", tmp_path / "other"
    mine.touch()
    other.touch()
    with open(mine, "a") as stream:
        assert on_journal(stream, journal_env(mine))
        assert not on_journal(
            stream, journal_env(other)
        )  # inherited from a parent whose stderr went elsewhere
        assert not on_journal(stream, {})
        assert not on_journal(stream, {"JOURNAL_STREAM": "garbage"})


def test_under_journald_every_line_carries_its_syslog_priority(tmp_path):
    path = tmp_path / "stderr"
    path.touch()
    with open(path, "a") as stream:
        log_all_levels(stream, journal_env(path))
    lines = path.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    assert "a warning line" in lines[2]
    assert not any(TIMESTAMP.match(line[3:]) for line in lines)  # the journal stamps lines itself
    assert ANSI not in path.read_text()
    assert "deadline=2026-11-25T12:00:05+00:00" in lines[0]  # ISO 8601, not datetime.datetime(...)


def test_a_traceback_keeps_the_priority_on_every_line(tmp_path):
    path = tmp_path / "stderr"
    path.touch()
    with open(path, "a") as stream:
        setup_logging("info", "auto", stream=stream, env=journal_env(path))
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            structlog.get_logger().exception("pass failed")
    lines = path.read_text().splitlines()
    assert lines and all(line.startswith("<3>") for line in lines)
    assert "RuntimeError" in path.read_text()


def test_json_lines_under_journald_keep_the_prefix_and_parse(tmp_path):
    path = tmp_path / "stderr"
    path.touch()
    with open(path, "a") as stream:
        log_all_levels(stream, journal_env(path), fmt="json")
    lines = path.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>"]
    records = [json.loads(line[3:]) for line in lines]
    assert [r["level"] for r in records] == ["debug", "info", "warning", "error"]
    assert records[0]["deadline"] == "2026-11-25T12:00:05+00:00"


def test_a_file_or_pipe_gets_readable_text_without_colour(tmp_path):
    path = tmp_path / "cron-mail"
    with open(path, "w") as stream:
        log_all_levels(stream, {})
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(TIMESTAMP.match(line) for line in lines)
    assert "[warning] a warning line" in lines[2]
    assert ANSI not in path.read_text() and not path.read_text().startswith("{")


def test_json_when_asked(tmp_path):
    path = tmp_path / "log.jsonl"
    with open(path, "w") as stream:
        log_all_levels(stream, {}, fmt="json")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == [
        "a debug line",
        "an info line",
        "a warning line",
        "an error line",
    ]
    assert records[0]["deadline"] == "2026-11-25T12:00:05+00:00"


@pytest.fixture
def terminal():
    """A real pseudo-terminal: (the stream the program writes to, a function reading what the terminal got)."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w")

    def received() -> str:
        """Everything up to the last line logged (a terminal hands output over in pieces)."""
        stream.flush()
        got = b""
        while b"an error line" not in got and select.select([master], [], [], 30)[0]:
            got += os.read(master, 65536)
        return got.decode()

    yield stream, received
    stream.close()
    os.close(master)


def test_colour_on_a_terminal(terminal):
    stream, received = terminal
    log_all_levels(stream, {"TERM": "xterm"})
    assert ANSI in received()


@pytest.mark.parametrize("env", [{"NO_COLOR": "1", "TERM": "xterm"}, {"TERM": "dumb"}])
def test_no_color_and_dumb_terminals_get_none(terminal, env):
    stream, received = terminal
    assert not wants_colour(stream, env)
    log_all_levels(stream, env)
    text = received()
    assert "a warning line" in text and ANSI not in text


def test_empty_no_color_does_not_count(terminal):
    stream, _ = terminal
    assert wants_colour(stream, {"NO_COLOR": "", "TERM": "xterm"})  # no-color.org: set and not empty


def test_readable_values():
    assert readable(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05+00:00"
    assert readable(Path("/a/b")) == "/a/b"
    assert readable({"b", "a"}) == ["a", "b"]


@pytest.mark.parametrize(
    "configured, verbose, quiet, level",
    [
        ("info", 0, 0, "info"),
        ("info", 1, 0, "debug"),
        ("info", 0, 1, "warning"),
        ("info", 0, 5, "error"),
        ("warning", 3, 0, "debug"),
    ],
)
def test_effective_level(configured, verbose, quiet, level):
    assert effective_level(configured, verbose, quiet) == level
