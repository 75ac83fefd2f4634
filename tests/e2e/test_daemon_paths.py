"""The paths users walk, through the running daemon (`opencode-watchdogd run`, DB discovered), on every release line.

A live stuck question is freed over HTTP once its policy expires; after `kill -9` of opencode the orphan is
repaired; opencode started again shows the turn finished and answers. Also the original trigger (an MCP tool
fails "Not connected", then a `question` stays running), a password-protected server, and the abort route.
"""

from __future__ import annotations

import pytest

from tests.support.fake_model import MCP_TOOL
from tests.support.opencode import PINNED_VERSIONS, RELEASES, mcp_config
from tests.support.watchdog import (
    FIRST_PASS_S,
    abandoned,
    assert_finished_through_api,
    assert_freed,
    assert_prompt_completes,
    candidate,
    daemon_for,
    start_stuck,
    write_config,
)

pytestmark = pytest.mark.e2e

QUESTION_S = 3


def test_a_live_question_is_freed_then_an_orphan_is_repaired_and_opencode_agrees(
    opencode_factory, opencode_version, tmp_path
) -> None:
    server = opencode_factory(opencode_version)

    # (a) A live question with a short policy: freed through opencode's API once the policy expires. The poll
    # is an hour away, so only the daemon's wake-up at the deadline can free it.
    settings = {"POLICY__TOOLS__QUESTION": f"{QUESTION_S}s", "WATCH__POLL_INTERVAL": "1h"}
    with daemon_for(tmp_path, server, settings) as daemon:
        live, live_part = start_stuck(server)
        rejected = daemon.wait_action(live_part.part_id, "reject-question", timeout=FIRST_PASS_S)
        assert (rejected["outcome"], rejected["server_version"]) == ("done", opencode_version), rejected
        assert daemon.wait_action(live_part.part_id, "patch-part")["outcome"] == "done"
    started = live_part.data["state"]["time"]["start"]
    completed = server.db_message(live_part.message_id)["data"]["time"]["completed"]
    assert completed - started >= QUESTION_S * 1000  # not before its policy expired (opencode's own clock)
    assert_freed(server, live["id"], live_part, live["directory"])
    assert_prompt_completes(server, live["id"], live["directory"])

    # (b) The default (hours) for a live question, a short orphan grace; then opencode dies by SIGKILL.
    with daemon_for(tmp_path, server, {"POLICY__ORPHAN_GRACE": "2s"}) as daemon:
        orphan, orphan_part = start_stuck(server)
        status = daemon.wait_status(
            lambda s: candidate(s, orphan_part.part_id), timeout=FIRST_PASS_S, what="the live question listed"
        )
        record = candidate(status, orphan_part.part_id)
        assert (record["owner"], record["verdict"]) == (f"live:{server.url}", "keep"), record
        server.kill()
        repaired = daemon.wait_action(orphan_part.part_id, "db-repair", timeout=FIRST_PASS_S)
        assert repaired["outcome"] == "done", repaired
        written = daemon.actions()

        # (c) opencode started again, with the daemon still running: the turn is finished, the session
        # answers.
        server.start()
        assert_finished_through_api(server, orphan["id"], orphan["directory"], orphan_part)
        assert daemon.actions() == written  # nothing else to do: the restarted server is not touched


@pytest.mark.parametrize("opencode_version", [v for v in PINNED_VERSIONS if RELEASES[v].keeps_dead_mcp_tool])
def test_the_original_trigger_a_dead_mcp_server_then_a_question(
    opencode_factory, opencode_version, tmp_path
) -> None:
    server = opencode_factory(opencode_version, config=mcp_config("exit-after-list"))
    with daemon_for(tmp_path, server, {"POLICY__TOOLS__QUESTION": f"{QUESTION_S}s"}) as daemon:
        session, part = start_stuck(server, "SCRIPT:mcp,question")
        [mcp_part] = server.tool_parts(session["id"], MCP_TOOL)
        assert mcp_part["data"]["state"]["error"] == "Not connected"  # the seed report's error, verbatim
        rejected = daemon.wait_action(part.part_id, "reject-question", timeout=FIRST_PASS_S)
        assert rejected["outcome"] == "done", rejected
        assert daemon.wait_action(part.part_id, "patch-part")["outcome"] == "done"
        assert [a["part_id"] for a in daemon.actions()] == [
            part.part_id
        ] * 2  # the failed MCP call is not ours
    assert_freed(server, session["id"], part, session["directory"])
    assert server.tool_parts(session["id"], MCP_TOOL)[0]["data"] == mcp_part["data"]
    assert_prompt_completes(server, session["id"], session["directory"])


def test_a_password_protected_server_and_the_abort_route(
    opencode_factory, opencode_version, tmp_path
) -> None:
    """Two calls in one turn: a hung MCP call expires, a question does not; abort frees the turn, then the
    question abort leaves listed (upstream #46163) is rejected. The password reaches the daemon as it
    reaches opencode, through OPENCODE_SERVER_PASSWORD."""
    password = "s3cret-pw"
    server = opencode_factory(opencode_version, password=password, config=mcp_config("hang"))
    config = write_config(tmp_path / "watchdog.toml", policy={"tools": {"*_*": "2s"}})
    with daemon_for(
        tmp_path, server, args=["--config", str(config)], env={"OPENCODE_SERVER_PASSWORD": password}
    ) as daemon:
        session, mcp_part = start_stuck(server, "SCRIPT:mcp+question", tool=MCP_TOOL)
        question = server.wait_for_running_part(session["id"], "question")
        assert mcp_part.message_id == question.message_id
        [listed] = [q for q in server.questions(session["directory"]) if q["sessionID"] == session["id"]]
        assert listed["tool"]["callID"] == question.call_id  # listed, but not the call that expired

        aborted = daemon.wait_action(mcp_part.part_id, "abort", timeout=FIRST_PASS_S)
        assert aborted["outcome"] == "done", aborted
        assert f"rejected leaked question {listed['id']}" in aborted["detail"]
        assert daemon.wait_action(mcp_part.part_id, "patch-part")["outcome"] == "done"
        log = daemon.log_path.read_text()
    assert password not in log
    [question_row] = [p for p in server.tool_parts(session["id"], "question") if p["id"] == question.part_id]
    assert (
        question_row["data"]["state"]["error"] == "Tool execution aborted"
    )  # opencode's own abort, left as is
    assert not abandoned(question_row["data"])
    assert_freed(server, session["id"], mcp_part, session["directory"])  # (deletes the message)
    assert_prompt_completes(server, session["id"], session["directory"])


def test_the_daemon_started_before_opencode_ever_ran(opencode_factory, tmp_path) -> None:
    """No data dir yet; opencode creates it and its DB later. With the poll an hour away, only the daemon's
    watch on the nearest existing ancestor (moved down as the path appears) can find the new DB in time."""
    server = opencode_factory(PINNED_VERSIONS[-1], start=False)
    assert not server.db_path.parent.parent.exists()
    settings = {
        "POLICY__ORPHAN_GRACE": "2s",
        "WATCH__POLL_INTERVAL": "1h",
        "WATCH__FULL_RESCAN_INTERVAL": "1h",
    }
    with daemon_for(tmp_path, server, settings) as daemon:
        server.start()
        session, part = start_stuck(server)
        daemon.wait_status(
            lambda s: candidate(s, part.part_id), timeout=FIRST_PASS_S, what="the new DB watched"
        )
        server.kill()
        repaired = daemon.wait_action(part.part_id, "db-repair", timeout=FIRST_PASS_S)
        assert repaired["outcome"] == "done", repaired
    server.start()
    assert_finished_through_api(server, session["id"], session["directory"], part)
