"""Subagents (reference §10): free a stuck child, never the parent; leave a working child alone."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_model import FakeModel
from tests.support.opencode import RELEASES
from tests.support.watchdog import ONE_SECOND_POLICY, Watchdog, abandoned, start_stuck

pytestmark = pytest.mark.e2e

# `question` is denied to subagents by default; the test's opencode.json allows it for `general`.
CHILD_MAY_ASK = {"agent": {"general": {"permission": {"question": "allow"}}}}


def child_of(server, parent_sid: str, timeout: float = 90.0) -> str:
    """The child session id, from the parent's running `task` part (state.metadata.sessionId)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for part in server.tool_parts(parent_sid, "task"):
            child = (part["data"]["state"].get("metadata") or {}).get("sessionId")
            if child:
                return child
        time.sleep(0.1)
    raise TimeoutError(f"no child session in {parent_sid}\n{server.log_tail()}")


def test_a_stuck_child_question_is_rejected_and_opencode_finishes_the_parent(
    opencode_factory, opencode_version, tmp_path, fake_model: FakeModel
) -> None:
    server = opencode_factory(opencode_version, config=CHILD_MAY_ASK)
    parent, task_part = start_stuck(server, "SCRIPT:task CHILD:SCRIPT:question", tool="task")
    directory = parent["directory"]
    child_sid = child_of(server, parent["id"])
    child_part = server.wait_for_running_part(child_sid, "question")
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.1)

    records = {r["part_id"]: r for r in watchdog.json("scan")}
    assert records[task_part.part_id]["verdict"] == "never"
    assert records[child_part.part_id]["route"] == "reject-question"
    [outcome] = watchdog.json("reap")
    assert (outcome["part_id"], outcome["route"], outcome["outcome"]) == (
        child_part.part_id,
        "reject-question",
        "done",
    )

    server.wait_idle(parent["id"], directory)  # the parent went on by itself and finished its turn
    [task] = server.tool_parts(parent["id"], "task")
    state = task["data"]["state"]
    assert state["status"] == (
        "error" if RELEASES[opencode_version].task_error_on_child_error else "completed"
    )
    assert "opencode_watchdogd" not in (state.get("metadata") or {})  # finished by opencode, not by us
    assert abandoned(server.tool_parts(child_sid, "question")[0]["data"])
    finishes = [
        m["info"].get("finish")
        for m in server.messages(parent["id"], directory)
        if m["info"]["role"] == "assistant"
    ]
    assert finishes[-1] == "stop"
    assert not any(a["session_id"] == parent["id"] for a in watchdog.actions())


def test_a_parent_whose_child_still_streams_is_untouched_at_one_second_thresholds(
    opencode_factory, opencode_version, tmp_path, fake_model: FakeModel
) -> None:
    server = opencode_factory(opencode_version)
    parent, task_part = start_stuck(server, "SCRIPT:task CHILD:SCRIPT:hang", tool="task")
    child_sid = child_of(server, parent["id"])
    deadline = time.monotonic() + 90
    while not fake_model.hanging:  # the child's model stream is open and silent
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.05)
    watchdog = Watchdog(tmp_path, server.db_path, policy=ONE_SECOND_POLICY)
    time.sleep(1.5)
    before = server.tool_parts(parent["id"])

    [record] = watchdog.json("scan")
    assert (record["part_id"], record["verdict"]) == (task_part.part_id, "never")
    assert "subagent" in record["reason"]
    assert watchdog.json("reap") == []
    status = server.session_status(parent["directory"])
    assert parent["id"] in status and child_sid in status
    assert server.tool_parts(parent["id"]) == before
    fake_model.release_hangs()
