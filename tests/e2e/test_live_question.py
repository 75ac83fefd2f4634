"""A live opencode session stuck on a tool part is freed through its server (real 1.15.3 and 1.18.33)."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_model import MCP_TOOL, FakeModel
from tests.support.opencode import OpencodeServer, mcp_config
from tests.support.watchdog import (ONE_SECOND_POLICY, Watchdog, abandoned, assert_freed, assert_prompt_completes,
                                    start_stuck)

pytestmark = pytest.mark.e2e


def test_reap_frees_a_live_stuck_question_and_lists_the_queued_prompt(opencode_server: OpencodeServer, opencode_version,
                                                                       tmp_path) -> None:
    server = opencode_server
    session, part = start_stuck(server)
    sid, directory = session["id"], session["directory"]
    server.prompt_async(sid, "Are you there?", directory)  # queued behind the stuck run
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.1)

    [record] = watchdog.json("scan")
    assert (record["part_id"], record["owner"], record["route"]) == (part.part_id, f"live:{server.url}", "reject-question")
    assert record["verdict"] == "expired" and f"opencode {opencode_version}" in record["owner_detail"]
    [queued] = record["queued_prompts"]

    [outcome] = watchdog.json("reap")
    assert (outcome["route"], outcome["outcome"]) == ("reject-question", "done"), outcome
    assert queued["message_id"] in outcome["detail"]
    live, patch = watchdog.actions()
    assert (live["route"], live["outcome"], live["server_version"]) == ("reject-question", "done", opencode_version)
    assert (patch["route"], patch["outcome"], patch["server_version"]) == ("patch-part", "done", opencode_version)
    assert "The user dismissed this question" in patch["part_before"]

    assert_freed(server, sid, part, directory)
    assert_prompt_completes(server, sid, directory)


def test_the_running_daemon_frees_it_within_threshold_plus_one_second(opencode_server: OpencodeServer, tmp_path) -> None:
    server = opencode_server
    threshold_s = 2
    watchdog = Watchdog(tmp_path, server.db_path, policy={"tools": {"question": f"{threshold_s}s"}},
                        watch={"debounce": "0.1s"})
    with watchdog.daemon():
        session, part = start_stuck(server)
        deadline = time.monotonic() + threshold_s + 10
        while server.session_status(session["directory"]):
            assert time.monotonic() < deadline, f"not freed\n{watchdog.daemon_log()}"
            time.sleep(0.05)
        time.sleep(0.3)  # let the daemon finish marking the part
        status = watchdog.json("status")
    # opencode's own clock: the part started, and the message was completed by the reject.
    started = server.tool_parts(session["id"], "question")[0]["data"]["state"]["time"]["start"]
    completed = server.db_message(part.message_id)["data"]["time"]["completed"]
    assert threshold_s * 1000 <= completed - started <= threshold_s * 1000 + 1000, (completed - started)
    assert_freed(server, session["id"], part, session["directory"])
    assert_prompt_completes(server, session["id"], session["directory"])
    assert [a["route"] for a in status["recent_actions"]][-2:] == ["patch-part", "reject-question"]


def test_a_session_in_another_directory_than_the_servers_cwd(opencode_server: OpencodeServer, tmp_path) -> None:
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


# The seed report's trigger: 1.15 keeps offering a dead MCP server's tool ("Not connected");
# 1.18 drops it, so there the server dies on the call instead ("Connection closed").
MCP_FAILURE = {"1.15.3": ("exit-after-list", "Not connected"), "1.18.33": ("exit-on-call", "Connection closed")}


def test_a_failed_mcp_call_then_a_stuck_question(opencode_factory, opencode_version, tmp_path) -> None:
    mode, error = MCP_FAILURE[opencode_version]
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


def test_a_tool_that_never_returns_is_freed_by_abort(opencode_factory, opencode_version, tmp_path,
                                                     fake_model: FakeModel) -> None:
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
