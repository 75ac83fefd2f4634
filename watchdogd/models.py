"""Plain data passed between the layers: candidates, ownership evidence, verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path


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


class OwnerKind(StrEnum):
    NONE = "none"  # no process holds the DB
    RESTARTED = "restarted"  # every holder started after the part: opencode never adopts old runs
    HELD = "held"  # a process that may own it holds the DB; no API evidence either way
    LIVE = "live"  # a reachable server reports the session busy
    LIVE_IDLE = "live-idle"  # the reachable server that holds the DB reports the session idle
    UNREACHABLE = "live-unreachable"  # a holder that may own it has no reachable API


ORPHAN_KINDS = frozenset({OwnerKind.NONE, OwnerKind.RESTARTED, OwnerKind.LIVE_IDLE})


@dataclass(frozen=True)
class Ownership:
    kind: OwnerKind
    pids: tuple[int, ...] = ()
    url: str | None = None
    detail: str = ""

    @property
    def orphan(self) -> bool:
        return self.kind in ORPHAN_KINDS

    @property
    def label(self) -> str:
        if self.kind in (OwnerKind.LIVE, OwnerKind.LIVE_IDLE) and self.url:
            return f"{self.kind.value}:{self.url}"
        if self.kind in (OwnerKind.HELD, OwnerKind.UNREACHABLE) and self.pids:
            return f"{self.kind.value}:{','.join(map(str, self.pids))}"
        return self.kind.value


class ChildState(StrEnum):
    NONE = "none"  # not a task, or no child activity known
    ACTIVE = "active"  # the subagent is busy or has a candidate that has not expired
    STUCK = "stuck"  # the subagent itself has expired candidates: free the child, not the parent


@dataclass(frozen=True)
class Sighting:
    """When the daemon first saw a candidate, and first saw it without an owner."""

    first_seen: datetime
    orphan_since: datetime | None = None


class Decision(StrEnum):
    KEEP = "keep"
    EXPIRED = "expired"
    NEVER = "never"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    expires_at: datetime | None = None
    age_s: float = 0.0

    @property
    def expired(self) -> bool:
        return self.decision is Decision.EXPIRED
