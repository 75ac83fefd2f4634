"""The rows written for an abandoned call: read as abandoned, keep what opencode wrote, marked as ours."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import dbfactory as f
from watchdogd import __version__
from watchdogd.opencode.repair import MARKER, abandoned_part, abandoned_text, finished_message, is_our_write

NOW = 1_795_700_000_000
START = NOW - 7_200_000


def running_part(tool: str = "question", raw: bool = True, **state_extra) -> str:
    state = f.tool_state(
        tool, "running", START, raw=raw, child_session_id="ses_c" if tool == "task" else None
    )
    state.update(state_extra)
    return f.compact({"type": "tool", "tool": tool, "callID": "call_1", "state": state})


def assistant(**extra) -> str:
    data = f.assistant_message_data(START - 100, "msg_user")
    data.update(extra)
    return f.compact(data)


# -- the text --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool, status, phrase",
    [
        ("question", "running", "question never answered"),
        ("bash", "running", "the tool never returned a result"),
        ("question", "pending", "the tool call never started"),
    ],
)
def test_abandoned_text(tool, status, phrase):
    text = abandoned_text(tool, status, 7200, "its opencode process is gone")
    assert text.startswith(f"Abandoned by opencode-watchdogd after 2h {status} without a result")
    assert phrase in text and "its opencode process is gone" in text


@given(
    st.sampled_from(["question", "bash", "task", "github_x"]),
    st.sampled_from(["running", "pending"]),
    st.floats(min_value=0, max_value=1e8),
    st.text(max_size=40),
)
def test_abandoned_text_never_reads_as_an_answer(tool, status, age, why):
    text = abandoned_text(tool, status, age, why)
    assert text.startswith("Abandoned by opencode-watchdogd")
    # a question option label must never be the first word a model or a person sees
    assert not text.startswith(("Red", "Blue", "Yes", "No"))


# -- the part ------------------------------------------------------------------------------------------------


def test_abandoned_part_shape():
    before = running_part()
    after = json.loads(abandoned_part(before, "Abandoned by opencode-watchdogd ...", NOW, 17, "orphan"))
    original = json.loads(before)
    state = after["state"]
    assert after["type"] == "tool" and after["tool"] == "question" and after["callID"] == "call_1"
    assert state["status"] == "error"
    assert state["error"] == "Abandoned by opencode-watchdogd ..."
    assert state["input"] == original["state"]["input"]
    assert state["raw"] == ""
    assert state["time"] == {"start": START, "end": NOW}
    assert state["metadata"]["interrupted"] is True
    assert state["metadata"][MARKER] == {"version": __version__, "action": 17, "reason": "orphan"}
    assert "output" not in state and "output" not in state["metadata"]
    assert is_our_write(f.compact(after))


def test_abandoned_part_is_compact_json():
    after = abandoned_part(running_part(), "text", NOW, 1, "r")
    assert after == f.compact(json.loads(after))
    assert ": " not in after and ", " not in after


def test_abandoned_part_keeps_other_state_and_drops_metadata_output():
    before = running_part("task", title="ask the colour")
    data = json.loads(before)
    data["state"]["metadata"]["output"] = "partial output"
    after = json.loads(abandoned_part(f.compact(data), "t", NOW, 2, "r"))
    metadata = after["state"]["metadata"]
    assert "output" not in metadata
    assert (
        metadata["sessionId"] == "ses_c"
        and metadata["parentSessionId"] == data["state"]["metadata"]["parentSessionId"]
    )
    assert after["state"]["title"] == "ask the colour"


def test_abandoned_pending_part_gets_times_and_input():
    before = f.compact(
        {
            "type": "tool",
            "tool": "bash",
            "callID": "c",
            "state": {"status": "pending", "input": {}, "raw": ""},
        }
    )
    state = json.loads(abandoned_part(before, "t", NOW, 3, "r"))["state"]
    assert state["time"] == {"start": NOW, "end": NOW}
    assert state["input"] == {} and state["status"] == "error"


def test_end_never_precedes_start():
    before = running_part(time={"start": NOW + 60_000})  # a skewed clock wrote a start in the future
    state = json.loads(abandoned_part(before, "t", NOW, 4, "r"))["state"]
    assert state["time"] == {"start": NOW + 60_000, "end": NOW + 60_000}


def test_odd_time_and_metadata_do_not_crash():
    before = running_part(time={"start": "yesterday"}, metadata="not an object")
    state = json.loads(abandoned_part(before, "t", NOW, 5, "r"))["state"]
    assert (
        state["status"] == "error" and state["time"]["start"] == "yesterday" and state["time"]["end"] == NOW
    )
    assert state["metadata"]["interrupted"] is True and MARKER in state["metadata"]


def test_missing_input_is_added():
    data = json.loads(running_part())
    del data["state"]["input"]
    state = json.loads(abandoned_part(f.compact(data), "t", NOW, 6, "r"))["state"]
    assert state["input"] == {}


def test_is_our_write():
    assert not is_our_write(running_part())
    assert not is_our_write("not json")
    assert not is_our_write("[]")
    assert not is_our_write(f.compact({"type": "tool", "state": {"metadata": {"interrupted": True}}}))


# -- the message -------------------------------------------------------------------------------------------


def test_finished_message():
    before = assistant()
    after = json.loads(finished_message(before, "Abandoned ...", NOW))
    original = json.loads(before)
    assert after["time"] == {"created": original["time"]["created"], "completed": NOW}
    assert after["error"] == {"name": "MessageAbortedError", "data": {"message": "Abandoned ..."}}
    assert "finish" not in after  # neither "stop" nor "tool-calls": both would change what opencode does next
    for key in ("parentID", "role", "mode", "agent", "path", "cost", "tokens", "modelID", "providerID"):
        assert after[key] == original[key]


def test_finished_message_keeps_an_existing_error():
    error = {"name": "APIError", "data": {"message": "rate limited"}}
    after = json.loads(finished_message(assistant(error=error), "t", NOW))
    assert after["error"] == error and after["time"]["completed"] == NOW


def test_completed_never_precedes_created():
    after = json.loads(finished_message(assistant(time={"created": NOW + 5000}), "t", NOW))
    assert after["time"]["completed"] == NOW + 5000


@pytest.mark.parametrize(
    "data",
    [
        f.compact(f.assistant_message_data(START, "msg_u", completed=True)),
        f.compact(f.user_message_data(START)),
        "[]",
        f.compact({"role": "system"}),
    ],
)
def test_nothing_to_do(data):
    assert finished_message(data, "t", NOW) is None


def test_odd_message_time_does_not_crash():
    after = json.loads(finished_message(assistant(time={"created": "noon"}), "t", NOW))
    assert after["time"] == {"created": "noon", "completed": NOW}
    after = json.loads(finished_message(assistant(time=None), "t", NOW))
    assert after["time"] == {"completed": NOW}
