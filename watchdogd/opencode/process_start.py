"""When a process started, on the wall clock of that moment: what opencode's row times are compared with.

The kernel knows a process's start only on the boot clock (/proc/PID/stat field 22: ticks since boot,
which never steps). opencode stamps its rows on the wall clock, which does step (NTP at boot, a VM
restored from a snapshot). `btime + ticks` puts every start on today's wall clock: after a +1 h step a
holder that started before its part looks an hour younger than the part, so "restarted", and its live
part an orphan. Instead each start is put on the wall clock that was in effect when the process
started, from the steps this process has seen (wall minus boot clock, read at every lookup).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STEP_S = 0.5  # wall minus boot clock changes only when the wall clock is set: more than this is a step
MAX_EPOCHS = 256  # a step or two a day at most; the oldest are forgotten first


def _clocks() -> tuple[float, float]:
    """(boot clock, wall clock) now, in seconds."""
    return time.clock_gettime(time.CLOCK_BOOTTIME), time.clock_gettime(time.CLOCK_REALTIME)


@dataclass
class Epoch:
    """A stretch of the boot clock over which the wall clock stood `offset` seconds ahead of it."""

    first: float  # boot-clock second this offset was first seen
    last: float  # and last seen
    offset: float  # wall clock minus boot clock (btime)


@dataclass
class WallClockSteps:
    """The wall clock's steps as this process saw them, to put a boot-clock instant on the wall clock of then.

    Before the first sighting nothing is known (that offset is used); a start between the last sighting of
    one offset and the first of the next may be on either, and the earlier wall time is used: a start
    that looks earlier keeps a holder a possible owner (nothing written) rather than making it "restarted".
    """

    read: Callable[[], tuple[float, float]] = _clocks
    epochs: list[Epoch] = field(default_factory=list)

    def observe(self) -> None:
        boot, wall = self.read()
        offset = wall - boot
        if self.epochs and abs(offset - self.epochs[-1].offset) <= STEP_S:
            self.epochs[-1].last = max(self.epochs[-1].last, boot)
            return
        self.epochs.append(Epoch(boot, boot, offset))
        del self.epochs[:-MAX_EPOCHS]

    def merge(self, epochs: list[Epoch]) -> None:
        """Add what another process of this boot saw (remembered in the state dir), in boot-clock order."""
        merged: list[Epoch] = []
        for epoch in sorted([*self.epochs, *epochs], key=lambda e: (e.first, e.last)):
            last = merged[-1] if merged else None
            if last is not None and abs(epoch.offset - last.offset) <= STEP_S:
                last.last = max(last.last, epoch.last)  # the same offset, seen on: one stretch
            else:
                merged.append(Epoch(epoch.first, epoch.last, epoch.offset))
        self.epochs = merged[-MAX_EPOCHS:]

    def wall_time(self, boot_s: float) -> float:
        """The wall-clock time (epoch seconds) of boot-clock second `boot_s`, as the wall clock read then."""
        if not self.epochs:
            self.observe()
        previous = None
        for epoch in self.epochs:
            if boot_s <= epoch.last:
                if previous is None or boot_s >= epoch.first:
                    return boot_s + epoch.offset
                return boot_s + min(epoch.offset, previous.offset)  # the step came in between: unknown when
            previous = epoch
        return boot_s + self.epochs[-1].offset


WALL_CLOCK = WallClockSteps()  # one history per process: the clock is the machine's, not a pass's
WALL_CLOCK.observe()  # from import (the daemon's start), so a later step is seen as one


def boot_id(proc: Path = Path("/proc")) -> str | None:
    """This boot's id: boot-clock seconds of another boot mean nothing here."""
    try:
        return (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip() or None
    except OSError:
        return None


def start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """The process's start in clock ticks since boot: with the pid, it names one process (pids are reused)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def start_time(pid: int, proc: Path = Path("/proc"), clock: WallClockSteps = WALL_CLOCK) -> float | None:
    """When the process started, in epoch seconds on the wall clock of then; None when it is gone."""
    ticks = start_ticks(pid, proc)
    if ticks is None:
        return None
    return clock.wall_time(ticks / os.sysconf("SC_CLK_TCK"))
