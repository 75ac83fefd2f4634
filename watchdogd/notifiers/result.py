"""What the notifiers read of a pass: the pass result (watchdogd/models.py, made by watchdogd/pipeline.py)
and the groups of routes and owners that decide what people are told."""

from __future__ import annotations

from watchdogd.models import OwnerKind, PassResult, Route, ServerSeen

__all__ = ["LIVE_FREES", "NEEDS_USER_OWNERS", "ORPHAN_REPAIRS", "PassResult", "ServerSeen"]


# The routes people are told about, by what they mean for the session.
LIVE_FREES = frozenset({Route.REJECT_QUESTION, Route.ABORT, Route.STOP_PROCESS})  # stop: opt-in, owner ended
ORPHAN_REPAIRS = frozenset({Route.DB_REPAIR, Route.PATCH_PART})
# The owner may be running the part but cannot be asked: only the user can free it.
NEEDS_USER_OWNERS = frozenset({OwnerKind.HELD, OwnerKind.UNREACHABLE})
