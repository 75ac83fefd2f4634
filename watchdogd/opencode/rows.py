"""What opencode's rows and processes hold, typed: made here in the adapter, read by every layer above.

`parse_tool_part` is the one parse of a part row's JSON: the store lists candidates with it (through
`parse_candidate`, which turns a part row as read into a `Candidate` or a `BadRow`), the repair checks
the shape it rewrites with it, and the live layer reads a part's state with it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

ACTIVE_STATUSES = ("running", "pending")
MARKER = "opencode_watchdogd"  # the key in `state.metadata` that marks the daemon's own writes
DISMISSED = "The user dismissed this question"  # what opencode writes for a rejected question
# A tool part's row is a few KB; one this big is not parsed (nor journaled twice over): reported instead.
MAX_PART_BYTES = 8 * 1024 * 1024
# Epoch milliseconds a datetime can hold (up to 9999-12-31): anything else in a time field is not a time.
MAX_EPOCH_MS = 253_402_300_799_999


@dataclass(frozen=True)
class Candidate:
    """A tool part still `running` or `pending`, as read from one opencode DB."""

    db: Path
    part_id: str
    message_id: str
    session_id: str
    tool: str
    status: str
    call_id: str | None
    started_ms: int | None  # state.time.start
    created_ms: int | None  # part.time_created column
    data: str = field(repr=False)  # the row exactly as read: the compare-and-set key
    child_session_id: str | None = None  # a `task` part's subagent session
    directory: str | None = None
    title: str | None = None
    updated_ms: int | None = None  # part.time_updated column: the row's last change

    @property
    def changed_ms(self) -> int | None:
        """When the row last changed: time_updated, else the call's start, else time_created."""
        return self.updated_ms if self.updated_ms is not None else self.start_ms

    @property
    def start_ms(self) -> int | None:
        return self.started_ms if self.started_ms is not None else self.created_ms


@dataclass(frozen=True)
class Holder:
    """A process that has the DB file open."""

    pid: int  # 0 (or -1): seen only as a lock in /proc/locks, from another PID namespace
    started_at: float  # epoch seconds; 0.0 when unknown (then it may own anything)
    cmdline: str
    visible: bool = True  # False: seen only through /proc/locks; its fds and sockets cannot be read


class ProcessKind(StrEnum):
    """What an opencode process that holds a DB is (watchdogd/opencode/processes.py tells them apart)."""

    TUI = "tui"  # the terminal UI: serves an API only when started with --port/--hostname/--mdns
    RUN = "run"  # `opencode run`: never serves an API
    SERVER = "server"  # `opencode serve` / `web`
    OTHER = "other"  # another subcommand


@dataclass(frozen=True)
class BadRow:
    """A part row that looks live but cannot be read: listed, never parsed further or written."""

    part_id: str
    problem: str


@dataclass(frozen=True)
class SessionInfo:
    id: str
    directory: str | None
    title: str | None
    parent_id: str | None


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """`text` with each lone UTF-16 surrogate as the escape JSON.stringify writes for it (`\\ud83d`).

    opencode's JSON may hold one (a model's output cut inside an emoji); json.loads gives it back as a lone
    surrogate, which SQLite, the logs and D-Bus cannot encode: what the daemon writes or shows carries the escape.
    """
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _number(value: Any) -> bool:
    # Rows come from a DB others write: a malformed time must not crash anything.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ToolPart:
    """A part row's JSON as the daemon reads it; lenient everywhere, `shape_problem` says what a rewrite needs."""

    value: dict = field(repr=False)  # the whole row, for rewrites that keep every other field

    @property
    def is_tool(self) -> bool:
        return self.value.get("type") == "tool"

    @property
    def state(self) -> dict:
        return _obj(self.value.get("state"))

    @property
    def has_state(self) -> bool:
        return isinstance(self.value.get("state"), dict)

    @property
    def status(self) -> Any:
        return self.state.get("status")

    @property
    def live(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def tool(self) -> str | None:
        tool = self.value.get("tool")
        return well_formed(tool) if isinstance(tool, str) else None

    @property
    def call_id(self) -> str | None:
        call = self.value.get("callID")
        return well_formed(call) if isinstance(call, str) else None

    @property
    def metadata(self) -> dict:
        return _obj(self.state.get("metadata"))

    @property
    def start_value(self) -> Any:
        """`state.time.start` as stored (any JSON value)."""
        return _obj(self.state.get("time")).get("start")

    @property
    def started_ms(self) -> int | None:
        start = self.start_value
        return int(start) if _number(start) else None

    @property
    def child_session_id(self) -> str | None:
        child = self.metadata.get("sessionId")
        return child if isinstance(child, str) else None

    @property
    def ours(self) -> bool:
        """Written by this daemon (the repair marks its rows)."""
        return MARKER in self.metadata

    @property
    def ended_by_a_free(self) -> bool:
        """Ended by a reject/abort (opencode's dismissed text, or its `interrupted` flag)."""
        state = self.state
        return state.get("status") == "error" and (
            state.get("error") == DISMISSED or self.metadata.get("interrupted") is True
        )

    def shape_problem(self) -> str | None:
        """Why a rewrite must not touch this part (the shapes it rewrites are not as opencode writes them)."""
        if not self.has_state:
            return "the part has no state object"
        if self.tool is None:
            return f"the part's tool name is a {type(self.value.get('tool')).__name__}, not a string"
        for key in ("time", "metadata", "input"):
            if key in self.state and not isinstance(self.state[key], dict):
                return f"the part's state.{key} is a {type(self.state[key]).__name__}, not an object"
        return None


def parse_tool_part(data: Any) -> ToolPart | str:
    """The part row's JSON as a ToolPart, or one line saying why it cannot be read."""
    try:
        value = json.loads(data)
    except (TypeError, ValueError):
        return "part data is not valid JSON"
    except RecursionError:  # a row nested ~1000 deep must not fail the whole pass
        return "part data is JSON nested too deep to parse"
    if not isinstance(value, dict):
        return "part data is not a JSON object"
    return ToolPart(value)


def lenient_text(raw: bytes) -> str:
    """The reader's text_factory: a row with invalid UTF-8 (others write this DB) must not fail the whole
    query, nor put its content into the error message; its bytes stay recoverable as lone surrogates."""
    return raw.decode("utf-8", "surrogateescape")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _epoch_ms_ok(value: float) -> bool:
    """A finite time in epoch ms that a datetime can hold (NaN, 1e999, negatives and year 3e6 are not)."""
    return math.isfinite(value) and 0 <= value <= MAX_EPOCH_MS


def _shown_number(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_candidate(db: Path, row: tuple) -> Candidate | BadRow | None:
    """A Candidate for a live tool part, None for any other part, BadRow for data we cannot read."""
    _rowid, part_id, message_id, session_id, time_created, data, *rest = row
    time_updated = rest[0] if rest else None  # absent from layouts without the column
    if not all(is_utf8(v) for v in (part_id, message_id, session_id, data) if isinstance(v, str)):
        shown = (
            part_id
            if is_utf8(part_id)
            else part_id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        )
        return BadRow(shown, "part row is not valid UTF-8: never parsed or written")
    if isinstance(data, str) and len(data) > MAX_PART_BYTES:
        return BadRow(
            part_id,
            f"part data is {len(data) // 1048576} MiB, over the {MAX_PART_BYTES // 1048576} MiB "
            "limit: not parsed, never written",
        )
    part = parse_tool_part(data)
    if isinstance(part, str):
        return BadRow(part_id, part)
    if not part.is_tool:
        return None
    if not part.has_state:
        return BadRow(part_id, "tool part without a state object")
    if not part.live:
        return None
    for name, when in (("state.time.start", part.start_value), ("time_created", time_created)):
        if _number(when) and not _epoch_ms_ok(when):
            return BadRow(
                part_id, f"{name} is {_shown_number(when)}, not a time: never parsed further or written"
            )
    return Candidate(
        db=db,
        part_id=part_id,
        message_id=message_id,
        session_id=session_id,
        tool=part.tool or "?",
        status=part.status,
        call_id=part.call_id,
        started_ms=part.started_ms,
        created_ms=time_created if isinstance(time_created, int) else None,
        data=data,
        child_session_id=part.child_session_id,
        # A time that is not a time is only missing evidence here: the orphan grace then counts from a
        # sighting.
        updated_ms=int(time_updated) if _number(time_updated) and _epoch_ms_ok(time_updated) else None,
    )
