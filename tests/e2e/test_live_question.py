"""A live opencode session stuck on a tool part is freed through its server (every pinned release)."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_model import MCP_TOOL, FakeModel
from tests.support.opencode import RELEASES, OpencodeServer, mcp_config
from tests.support.watchdog import (
    ONE_SECOND_POLICY,
    Watchdog,
    abandoned,
    assert_freed,
    assert_prompt_completes,
    start_stuck,
)

pytestmark = pytest.mark.e2e


def test_reap_frees_a_live_stuck_question_and_lists_the_queued_prompt(
    opencode_server: OpencodeServer, opencode_version, tmp_path
) -> None:
    server = opencode_server
    session, part = start_stuck(server)
    sid, directory = session["id"], session["directory"]
    server.prompt_async(sid, "Are you there?", directory)  # queued behind the stuck run
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.1)

    [record] = watchdog.json("scan")
    assert (record["part_id"], record["owner"], record["route"]) == (
        part.part_id,
        f"live:{server.url}",
        "reject-question",
    )
    assert record["verdict"] == "expired" and f"opencode {opencode_version}" in record["owner_detail"]
    [queued] = record["queued_prompts"]

    [outcome] = watchdog.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("reject-question", "done"), outcome
    assert queued["message_id"] in outcome["detail"]
    live, patch = watchdog.actions()
    assert (live["route"], live["outcome"], live["server_version"]) == (
        "reject-question",
        "done",
        opencode_version,
    )
    assert (patch["route"], patch["outcome"], patch["server_version"]) == (
        "patch-part",
        "done",
        opencode_version,
    )
    assert "The user dismissed this question" in patch["part_before"]

    assert_freed(server, sid, part, directory)
    assert_prompt_completes(server, sid, directory)


def test_a_session_in_another_directory_than_the_servers_cwd(
    opencode_server: OpencodeServer, tmp_path
) -> None:
    server = opencode_server
    elsewhere = (tmp_path / "elsewhere").resolve()
    elsewhere.mkdir()
    session, part = start_stuck(server, directory=elsewhere)
    assert session["directory"] == str(elsewhere) != str(server.project_dir)
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.1)
    [outcome] = watchdog.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("reject-question", "done"), outcome
    assert_freed(server, session["id"], part, elsewhere)
    assert_prompt_completes(server, session["id"], elsewhere)


def test_a_failed_mcp_call_then_a_stuck_question(opencode_factory, opencode_version, tmp_path) -> None:
    # The seed report's trigger: 1.14-1.15 keep offering a dead MCP server's tool ("Not connected");
    # later releases drop it, so there the server dies on the call instead ("Connection closed").
    mode, error = (
        ("exit-after-list", "Not connected")
        if RELEASES[opencode_version].keeps_dead_mcp_tool
        else ("exit-on-call", "Connection closed")
    )
    server = opencode_factory(opencode_version, config=mcp_config(mode))
    session, part = start_stuck(server, "SCRIPT:mcp,question")
    [mcp_part] = server.tool_parts(session["id"], MCP_TOOL)
    assert error in mcp_part["data"]["state"]["error"]
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.1)
    [outcome] = watchdog.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("reject-question", "done"), outcome
    assert_freed(server, session["id"], part, session["directory"])
    assert server.tool_parts(session["id"], MCP_TOOL)[0]["data"] == mcp_part["data"]  # never ours to touch


def test_a_tool_that_never_returns_is_freed_by_abort(
    opencode_factory, opencode_version, tmp_path, fake_model: FakeModel
) -> None:
    server = opencode_factory(opencode_version, config=mcp_config("hang"))
    session, part = start_stuck(server, "SCRIPT:mcp", tool=MCP_TOOL)
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.1)
    [record] = watchdog.json("scan")
    assert (record["tool"], record["route"]) == (MCP_TOOL, "abort")
    [outcome] = watchdog.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("abort", "done"), outcome
    message = server.db_message(part.message_id)["data"]
    assert message["error"]["name"] == "MessageAbortedError"  # opencode's own abort finished the message
    assert abandoned(server.tool_parts(session["id"], MCP_TOOL)[0]["data"])
    assert_freed(server, session["id"], part, session["directory"])
    assert_prompt_completes(server, session["id"], session["directory"])
