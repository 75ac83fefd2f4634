"""The harness reaches the stuck states the daemon must repair, on real opencode."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.support.fake_model import MCP_TOOL, FakeModel
from tests.support.opencode import RELEASES, OpencodeServer, mcp_config

pytestmark = pytest.mark.e2e


def start_stuck_question(server: OpencodeServer, script: str = "SCRIPT:question"):
    session = server.create_session()
    assert session["directory"] == str(server.project_dir)
    server.prompt_async(session["id"], f"Please ask me. {script}")
    return session["id"], session["directory"], server.wait_for_running_part(session["id"])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stuck_question_then_orphan_after_kill(
    opencode_server: OpencodeServer, opencode_version: str, fake_model: FakeModel
) -> None:
    server = opencode_server
    sid, directory, part = start_stuck_question(server)

    # Live and stuck: busy, question pending for this very call, deletes refused.
    assert server.session_status(directory) == {sid: {"type": "busy"}}
    [question] = [q for q in server.questions(directory) if q["sessionID"] == sid]
    assert question["tool"] == {"messageID": part.message_id, "callID": part.call_id}
    assert server.delete_message(sid, part.message_id, directory) == RELEASES[opencode_version].busy_delete
    [agent_call] = fake_model.agent_requests
    assert "question" in FakeModel.tool_names(agent_call)
    assert "completed" not in server.db_message(part.message_id)["data"]["time"]

    # SIGKILL, restart on the same data dir: idle, but the DB keeps the orphan.
    old_pid = server.pid
    server.kill()
    assert not pid_alive(old_pid)
    server.restart()
    assert server.pid != old_pid
    assert server.session_status(directory) == {}
    assert server.questions(directory) == []
    [orphan] = server.tool_parts(sid, "question")
    assert orphan["id"] == part.part_id
    assert orphan["data"]["state"]["status"] == "running"
    assert "completed" not in server.db_message(part.message_id)["data"]["time"]


def test_failed_mcp_call_then_stuck_question(
    opencode_factory, opencode_version: str, fake_model: FakeModel
) -> None:
    server = opencode_factory(opencode_version, config=mcp_config("exit-on-call"))
    sid, directory, part = start_stuck_question(server, "SCRIPT:mcp,question")

    [mcp_part] = server.tool_parts(sid, MCP_TOOL)
    assert mcp_part["data"]["state"]["status"] == "error"
    assert "Connection closed" in mcp_part["data"]["state"]["error"]
    assert MCP_TOOL in FakeModel.tool_names(fake_model.agent_requests[0])
    assert len(fake_model.agent_requests) == 2  # the mcp turn, then the question turn
    assert server.session_status(directory) == {sid: {"type": "busy"}}
    assert part.call_id != mcp_part["data"]["callID"]


def test_password_is_required_when_set(opencode_factory, opencode_version: str) -> None:
    server = opencode_factory(opencode_version, password="s3cret")
    assert httpx.get(f"{server.url}/global/health").status_code == 401
    assert server.session_status() == {}  # the helpers send the Basic auth header
