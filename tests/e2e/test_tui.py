"""The opencode terminal UI, driven under a pseudo-terminal (docs/tui.md has what each version does).

A TUI started with `--port 0` is a live server: the running daemon frees its stuck question over HTTP
and the TUI goes on answering. A plain TUI serves no API: the daemon only says what it is and what
to press, and repairs the leftovers once the TUI is gone.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import require_node
from tests.support.fake_model import FakeModel
from tests.support.tui import OpencodeTui
from tests.support.watchdog import Watchdog, abandoned

pytestmark = pytest.mark.e2e

TUI_VERSIONS = ("1.14.41", "1.15.3", "1.18.33")


def _rows(db: Path, sql: str, *args) -> list[tuple]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return []  # not created yet
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # no tables yet
    finally:
        conn.close()


def tool_part(db: Path, tool: str = "question") -> tuple[str, str, dict] | None:
    """(part id, message id, data) of the newest `tool` part."""
    rows = _rows(db, "SELECT id, message_id, data FROM part ORDER BY time_created")
    for part_id, message_id, data in reversed(rows):
        data = json.loads(data)
        if data.get("type") == "tool" and data.get("tool") == tool:
            return part_id, message_id, data
    return None


def wait_until(predicate, what: str, timeout: float, context=lambda: "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s\n{context()}")


def running_part(tui: OpencodeTui, tool: str = "question") -> tuple[str, str, dict]:
    def running():
        found = tool_part(tui.db_path, tool)
        return found if found and found[2]["state"]["status"] == "running" else None

    return wait_until(running, f"a running {tool} part", 180, tui.terminal.text)


def answers(db: Path) -> int:
    """Assistant messages that finished with a plain answer."""
    return sum(
        1 for (data,) in _rows(db, "SELECT data FROM message") if json.loads(data).get("finish") == "stop"
    )


def assert_tui_answers_a_new_prompt(tui: OpencodeTui) -> None:
    before = answers(tui.db_path)
    tui.prompt("Say something. SCRIPT:text")
    wait_until(lambda: answers(tui.db_path) > before, "the TUI answered a new prompt", 120, tui.terminal.text)


@pytest.fixture
def model(fake_model: FakeModel) -> FakeModel:
    require_node()
    fake_model.reset()
    return fake_model


@pytest.mark.parametrize("version", TUI_VERSIONS)
def test_a_tui_started_with_port_0_is_freed_live_and_keeps_working(version, model, tmp_path) -> None:
    tui = OpencodeTui(tmp_path / "tui", model.url, version, args=("--port", "0"))
    watchdog = Watchdog(
        tmp_path, tui.db_path, policy={"tools": {"question": "3s"}}, watch={"debounce": "0.1s"}
    )
    with watchdog.daemon(), tui:
        tui.prompt("Which colour? SCRIPT:question")
        _part_id, message_id, _ = running_part(tui)
        tui.terminal.wait_for("esc dismiss")

        def freed():
            found = tool_part(tui.db_path)
            return found is not None and abandoned(found[2])

        wait_until(freed, "the daemon freed the question", 90, watchdog.daemon_log)
        # The dialog goes away: the TUI saw the reject.
        wait_until(
            lambda: "esc dismiss" not in tui.terminal.text(),
            "the question dialog closed",
            60,
            tui.terminal.text,
        )
        assert_tui_answers_a_new_prompt(tui)
        assert tui.terminal.alive()
    routes = [(a["route"], a["outcome"], a["server_version"]) for a in watchdog.actions()]
    assert ("reject-question", "done", version) in routes, routes
    assert ("patch-part", "done", version) in routes, routes
    [(message,)] = _rows(tui.db_path, "SELECT data FROM message WHERE id = ?", message_id)
    assert json.loads(message)["time"].get("completed")


def test_a_plain_tui_is_named_never_written_and_repaired_after_kill_9(model, tmp_path) -> None:
    tui = OpencodeTui(tmp_path / "tui", model.url, "1.18.33")
    watchdog = Watchdog(
        tmp_path,
        tui.db_path,
        policy={"orphan_grace": "2s", "tools": {"question": "2s"}},
        watch={"debounce": "0.1s", "poll_interval": "1s"},
    )
    with watchdog.daemon(), tui:
        tui.prompt("Which colour? SCRIPT:question")
        part_id, _, running = running_part(tui)
        pid = tui.holder_pid()

        def expired():
            status = watchdog.json("status")["status"] or {}
            cands = [
                c
                for c in status.get("candidates", [])
                if c["part_id"] == part_id and c["verdict"] == "expired"
            ]
            return (status["status_line"], cands[0]) if cands else None

        line, cand = wait_until(expired, "the expired question published", 60, watchdog.daemon_log)
        what = f"opencode TUI, pid {pid}, no HTTP API"
        assert cand["owner_process"] == "tui" and what in cand["owner_detail"] and what in line, (line, cand)
        assert (
            "press Esc on the question in that TUI" in cand["advice"]
            and "opencode --port 0" in cand["advice"]
        )
        assert "press Esc on the question in that TUI" in line
        time.sleep(3)  # several passes: the row is never written while the TUI lives
        assert tool_part(tui.db_path)[2] == running
        assert sum("expired, not written" in line for line in watchdog.daemon_log().splitlines()) == 1

        os.kill(pid, signal.SIGKILL)  # a crash: the only way a TUI leaves its rows behind (docs/tui.md)
        wait_until(
            lambda: abandoned(tool_part(tui.db_path)[2]), "leftovers repaired", 30, watchdog.daemon_log
        )
    assert [(a["route"], a["outcome"]) for a in watchdog.actions()] == [("db-repair", "done")]
