"""The rows the daemon writes for an abandoned call: pure JSON in, JSON out."""

from __future__ import annotations

import json
import math
from typing import Any

from watchdogd import __version__
from watchdogd.durations import format_duration
from watchdogd.opencode.rows import MARKER, parse_tool_part, well_formed


def _dump(value: Any) -> str:
    # opencode writes compact JSON (JSON.stringify); keep the same form, lone surrogates escaped as it does.
    return well_formed(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _is_number(value: Any) -> bool:
    # Rows come from a DB others write: a malformed time must not crash the repair.
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def unexpected_shape(part_data: str, message_data: str | None) -> str | None:
    """Why the rows are not shaped as opencode writes them (then nothing is written), or None.

    A candidate only needs `type`, `state` and `state.status` to be listed; a repair rewrites the
    rows, so it insists on the shapes it rewrites: it never guesses at a row it does not understand.
    """
    part = parse_tool_part(part_data)
    problem = part if isinstance(part, str) else part.shape_problem()
    if problem:
        return problem
    if message_data is not None:
        try:
            message_data.encode("utf-8")
        except UnicodeEncodeError:
            return "its message row is not valid UTF-8"
        try:
            message = json.loads(message_data)
        except ValueError:
            return "its message row is not valid JSON"
        except RecursionError:
            return "its message row is JSON nested too deep to parse"
        if not isinstance(message, dict) or ("time" in message and not isinstance(message["time"], dict)):
            return "its message row is not a message object"
    return None


def abandoned_text(tool: str, status: str, age_s: float, why: str) -> str:
    """Plainly abandoned, never anything that could read as a user's answer."""
    what = "question never answered" if tool == "question" else "the tool never returned a result"
    if status == "pending":
        what = "the tool call never started"
    return f"Abandoned by opencode-watchdogd after {format_duration(age_s)} {status} without a result ({what}; {why})"


def abandoned_part(part_data: str, text: str, now_ms: int, action_id: int, reason: str) -> str:
    """The part as opencode's own abort writes it (error, interrupted, time.end), marked as ours.

    `input`, `time.start` and any other state fields are kept; `metadata.output` is never set,
    because opencode would then send the part to the model as a successful result.
    """
    part = json.loads(part_data)
    state = dict(part["state"])
    times = dict(state["time"]) if isinstance(state.get("time"), dict) else {}
    times.setdefault("start", now_ms)
    times["end"] = max(now_ms, times["start"]) if _is_number(times["start"]) else now_ms
    metadata = dict(state["metadata"]) if isinstance(state.get("metadata"), dict) else {}
    metadata.pop("output", None)
    metadata["interrupted"] = True
    metadata[MARKER] = {"version": __version__, "action": action_id, "reason": reason}
    state.update(status="error", error=text, metadata=metadata, time=times)
    state.setdefault("input", {})
    part["state"] = state
    return _dump(part)


def finished_message(message_data: str, text: str, now_ms: int) -> str | None:
    """The assistant message completed the way opencode's abort completes it; None when nothing to do.

    No `finish` is written, as after opencode's own abort: "stop" would claim the model ended its
    turn, and "tool-calls" tells the run loop to call the model again. A message whose data is not
    JSON is left as it is (None): the part is still repaired, which is what frees the session.
    """
    try:
        message = json.loads(message_data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None
    times = dict(message["time"]) if isinstance(message.get("time"), dict) else {}
    if times.get("completed"):
        return None
    created = times.get("created")
    times["completed"] = max(now_ms, int(created)) if _is_number(created) else now_ms
    message["time"] = times
    message.setdefault("error", {"name": "MessageAbortedError", "data": {"message": text}})
    return _dump(message)


def is_our_write(part_data: str) -> bool:
    part = parse_tool_part(part_data)
    return not isinstance(part, str) and part.ours
