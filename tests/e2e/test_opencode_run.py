"""`opencode run` whose MCP tool hangs: no API, so the daemon says what it is and never writes while it lives.

Its user ends it with Ctrl+C (SIGINT: no clean-up on any version, docs/tui.md) and the leftovers are
repaired within the orphan grace; with `live.stop_unreachable = ["run"]` the daemon does that itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_node
from tests.e2e.test_tui import tool_part, wait_until
from tests.support.fake_model import MCP_TOOL, FakeModel
from tests.support.opencode import OpencodeServer, mcp_config, merge
from tests.support.watchdog import Watchdog, abandoned

pytestmark = pytest.mark.e2e

# opencode's MCP client gives up after 60 s by default; a long timeout makes the call hang for good.
HANGING_MCP = merge(mcp_config("hang"), {"experimental": {"mcp_timeout": 3_600_000}})
POLICY = {"orphan_grace": "2s", "tools": {"*_*": "2s"}}
WATCH = {"debounce": "0.1s", "poll_interval": "1s"}


def _default_sigint() -> None:
    # As from an interactive shell: a run started with SIGINT ignored would ignore Ctrl+C too.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def opencode_run(
    tmp_path: Path, model: FakeModel, version: str
) -> Iterator[tuple[subprocess.Popen, OpencodeServer]]:
    dirs = OpencodeServer(tmp_path / "run", model.url, version=version, config=HANGING_MCP)
    dirs.prepare()
    with open(dirs.base_dir / "run.log", "wb") as log:
        proc = subprocess.Popen(
            [str(dirs.binary), "run", "Look it up. SCRIPT:mcp"],
            cwd=dirs.project_dir,
            env=dirs.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_default_sigint,
        )  # noqa: PLW1509 (one signal() call, fork-safe)
    try:
        yield proc, dirs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def holder_of(dirs: OpencodeServer, proc: subprocess.Popen) -> int:
    """npm 1.14 runs `bin/.opencode` under a node wrapper; newer releases are one process."""
    from tests.support.tui import _children, _has_open

    target = str(dirs.db_path.resolve())
    return wait_until(
        lambda: next((p for p in [proc.pid, *_children(proc.pid)] if _has_open(p, target)), None),
        "the process that holds the DB",
        60,
    )


def running_mcp_call(dirs: OpencodeServer) -> tuple[str, str, dict]:
    def running():
        found = tool_part(dirs.db_path, MCP_TOOL)
        return found if found and found[2]["state"]["status"] == "running" else None

    return wait_until(running, "the MCP call running", 120)


def stuck_candidate(watchdog: Watchdog, part_id: str) -> dict:
    def published():
        status = watchdog.json("status")
        cands = [c for c in (status.get("status") or {}).get("candidates", []) if c["part_id"] == part_id]
        return (status, cands[0]) if cands and cands[0]["verdict"] == "expired" else None

    status, cand = wait_until(published, "the daemon published the expired part", 60, watchdog.daemon_log)
    return {"line": status["status"]["status_line"], **cand}


@pytest.fixture
def model(fake_model: FakeModel) -> FakeModel:
    require_node()
    fake_model.reset()
    return fake_model


def test_a_stuck_run_is_described_never_written_and_repaired_after_ctrl_c(model, tmp_path) -> None:
    with opencode_run(tmp_path, model, "1.15.3") as (proc, dirs):
        watchdog = Watchdog(tmp_path, dirs.db_path, policy=POLICY, watch=WATCH)
        with watchdog.daemon():
            part_id, _, running = running_mcp_call(dirs)
            pid = holder_of(dirs, proc)
            cand = stuck_candidate(watchdog, part_id)
            what = f"opencode run, pid {pid}, no HTTP API"
            assert cand["owner"] == f"live-unreachable:{pid}" and cand["owner_process"] == "run", cand
            assert what in cand["owner_detail"] and what in cand["line"], cand
            assert cand["advice"].startswith("stuck for "), cand
            assert f"press Ctrl+C in its terminal (or `kill -INT {pid}`)" in cand["advice"], cand
            scan = watchdog.cli("scan")
            assert what in scan.stdout and "what you can do: stuck for" in scan.stdout, scan.stdout
            time.sleep(3)  # several passes (poll 1s): still never written, and told once
            assert tool_part(dirs.db_path, MCP_TOOL)[2] == running
            told = [line for line in watchdog.daemon_log().splitlines() if "expired, not written" in line]
            assert len(told) == 1, told

            os.kill(pid, signal.SIGINT)  # what Ctrl+C in its terminal sends
            proc.wait(30)
            wait_until(
                lambda: abandoned(tool_part(dirs.db_path, MCP_TOOL)[2]),
                "leftovers repaired",
                30,
                watchdog.daemon_log,
            )
    assert [(a["route"], a["outcome"]) for a in watchdog.actions()] == [("db-repair", "done")]


def test_stop_unreachable_run_ends_it_like_ctrl_c_then_undo_restores_the_rows(model, tmp_path) -> None:
    with opencode_run(tmp_path, model, "1.18.33") as (proc, dirs):
        watchdog = Watchdog(tmp_path, dirs.db_path, policy=POLICY, watch=WATCH)
        with watchdog.daemon(env={"OPENCODE_WATCHDOGD_LIVE__STOP_UNREACHABLE": '["run"]'}):
            part_id, _, running = running_mcp_call(dirs)
            assert proc.wait(90) == -signal.SIGINT  # ended by SIGINT, as by Ctrl+C
            wait_until(
                lambda: abandoned(tool_part(dirs.db_path, MCP_TOOL)[2]),
                "leftovers repaired",
                30,
                watchdog.daemon_log,
            )
    stop, repair = watchdog.actions()
    assert (stop["route"], stop["outcome"], repair["route"], repair["outcome"]) == (
        "stop-process",
        "done",
        "db-repair",
        "done",
    ), (stop, repair)
    assert (
        "sent SIGINT" in stop["detail"]
        and "SIGTERM" not in stop["detail"]
        and "SIGKILL" not in stop["detail"]
    )
    undo = watchdog.cli("undo", str(stop["id"]))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert "cannot start it again" in undo.stdout and f"restored part {part_id}" in undo.stdout, undo.stdout
    assert tool_part(dirs.db_path, MCP_TOOL)[2] == running
    message = json.loads(repair["message_before"])
    assert "completed" not in message["time"]
