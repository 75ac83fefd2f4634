"""Incremental candidate tracking: a steady-state pass costs O(what changed), not O(database).

The tracker keeps the live tool parts (candidates), the unreadable prefilter hits (bad rows), a
watermark (the highest `part` rowid seen) and a few (rowid → id) checkpoints at and below it.

A pass (`refresh`):

- **unchanged**: `PRAGMA data_version` on the store's persistent read-only connection is the value
  seen at the last pass, so no other connection has committed since: the cached result is returned
  without touching the `part` table. A DB with nothing running is `release()`d after its pass (the
  daemon watches hundreds of DBs): its next refresh opens a new connection and reads incrementally.
- **incremental**: inside ONE short read transaction (BEGIN … COMMIT; nothing is left open), the
  checkpoints are checked, then only rows with rowid > the resume point are read (a rowid range
  seek), plus the known candidates and bad rows by key (`id IN (...)`). Known rows that left
  `running`/`pending` or were deleted (also by a whole-session cascade) simply stop coming back.
- **full**: one `store.scan()` of the whole table, at the first pass, after `reset()` (the daemon
  calls it when the DB file is replaced), every `full_rescan_interval` seconds, on request, and when
  no checkpoint survives.

Why rows at or below the resume point can be skipped. SQLite gives a new row of a rowid table (no
AUTOINCREMENT) the rowid max(rowid)+1, and VACUUM either keeps rowids (SQLite 3.40 does, as
observed) or renumbers them densely in rowid order (older SQLite, or a dump and restore). Either way
the relative order of surviving rows never changes, and new rows always land above every surviving
row. So if the row at a remembered rowid still carries the remembered id, every row now at or below
it was at or below it at the last pass — already examined — and only rows above it can be new.
Deleting the newest rows lets SQLite hand their rowids to new parts: the row at the watermark then
has another id (or none), and the pass resumes from the highest checkpoint that is still intact.
Checkpoints are spaced geometrically below the watermark (offsets 0, 1, 3, 7, 15, …), so deleting
the newest k rows costs a re-read of at most about 2k rows, and only a rewrite of the whole table
(every checkpoint moved or gone) forces a full rescan. Assumed, as opencode does: a deleted part id
is never inserted again.

Results are ordered by `time_created` (then id as a tie-breaker), never by id alone: ids wrap.

Rows put back. opencode never rewrites a finished tool part (pending → running → completed/error,
never back), but `undo` (from any process), a hand edit or a foreign tool can put one back to
`running`/`pending` at or below the watermark. So the tracker keeps watching the parts that LEFT the
candidates (the newest `DEPARTED_MAX`), remembering each one's `time_updated` column: every
incremental pass reads that column by key (`data` is not read) and re-reads in full only the rows
whose value changed. It is compared for equality, not as a high-water mark: `undo` puts the old,
smaller `time_updated` back. What is still unseen until the periodic full rescan
(`watch.full_rescan_interval`, default 1 h): a row that was never a candidate (or left before the
newest `DEPARTED_MAX`) being rewritten to `running`/`pending`, and a write that leaves `time_updated`
as it was (a hand edit of `data` alone). An undo of such an older write is safe meanwhile: the part
is not a candidate until seen, and once seen the pass keeps it as undone (watchdogd/policy.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from watchdogd.opencode.rows import BadRow, Candidate
from watchdogd.opencode.store import OpencodeStore

FULL, INCREMENTAL, UNCHANGED = "full", "incremental", "unchanged"
# Parts that left the candidates and are still watched (see the module doc): a key lookup each per pass,
# about 3 ms for 256 on a 400 MB DB (10 ms for 1024): the newest 256 cover an `undo --last` of a pass.
DEPARTED_MAX = 256


def checkpoint_targets(top: int) -> list[int]:
    """Rowids to remember below the watermark `top`: top, top-1, top-3, top-7, … down to 1."""
    targets, step = [], 1
    while top - (step - 1) >= 1:
        targets.append(top - (step - 1))
        step *= 2
    if targets and targets[-1] != 1:
        targets.append(1)
    return targets


@dataclass(frozen=True)
class PassStats:
    """What the last refresh did, for logs and benchmarks."""

    mode: str
    reason: str  # why a full pass ("start", "reset", "interval", "forced", "rowids-moved"), else ""
    resume_rowid: int | None  # incremental: rows above this one were read
    watermark: int
    known: int  # candidates + bad rows re-read by key
    seconds: float


def _order(cand: Candidate) -> tuple[int, str]:
    return (cand.created_ms or 0, cand.part_id)


class CandidateTracker:
    """Candidates of one opencode DB, kept up to date by incremental passes (see module doc)."""

    def __init__(
        self, store: OpencodeStore, full_rescan_interval: float, clock: Callable[[], float] = time.monotonic
    ):
        self.store = store
        self.full_rescan_interval = full_rescan_interval
        self.clock = clock
        self.last: PassStats | None = None
        self._clear("start")

    def _clear(self, why: str) -> None:
        self._cands: dict[str, Candidate] = {}
        self._bad: dict[str, BadRow] = {}
        self._watermark = 0
        self._checkpoints: list[tuple[int, str]] = []  # (rowid, id), highest rowid first
        self._conn = None  # the connection whose data_version we remember
        self._version: int | None = None
        self._last_full: float | None = None
        self._full_reason = why
        self._result: tuple[list[Candidate], list[BadRow]] = ([], [])
        self._departed: dict[str, object] = {}  # part id -> its time_updated when it left; oldest first

    def reset(self) -> None:
        """Forget everything: the next refresh is a full rescan on a fresh read connection.

        The daemon calls this when the DB file was replaced (new inode); the store's read-only
        connection is closed too, so the rescan reads the new file and not the old inode.
        """
        self.store.close()
        self._clear("reset")

    def release(self) -> None:
        """Close the store's read connection but keep what was learnt: the next refresh opens a new one
        and reads incrementally (the `unchanged` shortcut needs the connection it remembered)."""
        self.store.close()
        self._conn = self._version = None

    @property
    def running(self) -> bool:
        """The last refresh found live tool parts (candidates)."""
        return bool(self._cands)

    @property
    def watermark(self) -> int:
        return self._watermark

    def refresh(self, force_full: bool = False) -> tuple[list[Candidate], list[BadRow], str]:
        """(candidates in time order, bad rows, "full" | "incremental" | "unchanged")."""
        started, t0 = self.clock(), time.perf_counter()
        reason = ""
        if force_full:
            reason = "forced"
        elif self._last_full is None:
            reason = self._full_reason
        elif started - self._last_full >= self.full_rescan_interval:
            reason = "interval"
        conn = self.store.reader
        if not reason and conn is self._conn and self.store.data_version() == self._version:
            self.last = PassStats(UNCHANGED, "", None, self._watermark, 0, time.perf_counter() - t0)
            return list(self._result[0]), list(self._result[1]), UNCHANGED

        resume: int | None = None
        known: list[str] = []
        departed_times: dict[str, object] = {}
        with self.store.snapshot():
            # First statement of the transaction: the version of exactly the snapshot read below.
            version = self.store.data_version()
            top = self.store.max_rowid()
            if not reason:
                resume = self._resume_point()
                if resume is None:
                    reason = "rowids-moved"
            if reason:
                found, bad = self.store.scan()
                cands = {c.part_id: c for c in found}
                bads = {b.part_id: b for b in bad}
            else:
                assert resume is not None
                cands, bads, known, departed_times = self._read_incremental(resume)
            departed = self._still_departed(cands, bads, None if reason else departed_times)
            if reason or top != self._watermark or resume != self._watermark:
                checkpoints = self.store.part_checkpoints(checkpoint_targets(top))
            else:
                checkpoints = self._checkpoints

        # Only a pass that completed changes the state: an error above leaves the last good one.
        self._cands, self._bad, self._departed = cands, bads, departed
        self._watermark, self._checkpoints = top, checkpoints
        self._conn, self._version = conn, version
        mode = FULL if reason else INCREMENTAL
        if reason:
            self._last_full = started
        self._result = (sorted(cands.values(), key=_order), sorted(bads.values(), key=lambda b: b.part_id))
        self.last = PassStats(mode, reason, resume, top, len(known), time.perf_counter() - t0)
        return list(self._result[0]), list(self._result[1]), mode

    def _resume_point(self) -> int | None:
        """Rowid above which rows may be new: the highest intact checkpoint; None = rescan fully."""
        if not self._checkpoints:
            return 0 if self._watermark == 0 else None
        present = self.store.part_ids_at([rowid for rowid, _ in self._checkpoints])
        for rowid, part_id in self._checkpoints:
            if present.get(rowid) == part_id:
                return rowid
        return None

    def _read_incremental(self, resume: int) -> tuple[dict, dict, list[str], dict[str, object]]:
        """(candidates, bad rows, ids re-read by key, departed parts' times): the known rows and the
        departed ones written since by key, the rows above `resume` by a rowid range."""
        departed_times = self.store.part_times(list(self._departed)) if self._departed else {}
        returned = [
            p for p, was in self._departed.items() if p in departed_times and departed_times[p] != was
        ]
        known = [*self._cands, *self._bad, *returned]
        old_found, old_bad = self.store.parts_by_id(known) if known else ([], [])
        new_found, new_bad = self.store.scan(after_rowid=resume)
        cands = {c.part_id: c for c in old_found}
        cands.update((c.part_id, c) for c in new_found)
        bads = {b.part_id: b for b in old_bad}
        bads.update((b.part_id, b) for b in new_bad)
        return cands, bads, known, departed_times

    def _still_departed(
        self, cands: dict[str, Candidate], bads: dict[str, BadRow], known_times: dict[str, object] | None
    ) -> dict[str, object]:
        """The departed parts after this pass: the ones that just left join, the ones back or deleted go.

        Their time_updated is read inside the pass's snapshot (a write after it then shows at the next
        pass); `known_times` are the departed parts' times this pass already read (None: read them all)."""
        watched = [p for p in [*self._departed, *self._cands, *self._bad] if p not in cands and p not in bads]
        watched = list(dict.fromkeys(watched))[-DEPARTED_MAX:]
        if known_times is None:
            unread, times = watched, {}
        else:
            unread, times = [p for p in watched if p not in self._departed], dict(known_times)
        if unread:
            times.update(self.store.part_times(unread))
        return {part_id: times[part_id] for part_id in watched if part_id in times}
