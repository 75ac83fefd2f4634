"""What one daemon pass hands to the notifiers and the metrics: read-only facts, computed once by the pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from watchdogd.models import ActionResult, DBReport, OwnerKind, Route


@dataclass(frozen=True)
class ServerSeen:
    """An opencode server the pass asked (its version answered `GET /global/health`)."""

    url: str
    version: str


@dataclass(frozen=True)
class PassResult:
    started: datetime
    duration_s: float
    ok: bool  # the pass ran to the end (an unreadable DB is a fact it reports, not a failed pass)
    evaluated: bool  # the pass judged the DBs again (else `reports` are the previous pass's)
    reports: tuple[DBReport, ...] = ()
    outcomes: tuple[ActionResult, ...] = ()
    next_deadline: datetime | None = None
    servers: tuple[ServerSeen, ...] = field(default=())


# The routes people are told about, by what they mean for the session.
LIVE_FREES = frozenset({Route.REJECT_QUESTION, Route.ABORT, Route.STOP_PROCESS})  # stop: opt-in, owner ended
ORPHAN_REPAIRS = frozenset({Route.DB_REPAIR, Route.PATCH_PART})
# The owner may be running the part but cannot be asked: only the user can free it.
NEEDS_USER_OWNERS = frozenset({OwnerKind.HELD, OwnerKind.UNREACHABLE})
