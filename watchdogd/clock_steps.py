"""The wall clock's steps of this boot, remembered in the state dir (`clock-steps.json`).

A process sees a step only while it runs (watchdogd/opencode/process_start.py): a `reap` run after a
VM restore, or a daemon restarted after one, would put a live holder's start on the new wall clock and
take it for restarted. What the daemon (or an earlier command) saw of this boot is kept here, so
every later process of the same boot starts from it. Losing it (unreadable, another boot) only loses
that knowledge: the history then starts at this process, as without the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from watchdogd.opencode.process_start import Epoch, WallClockSteps, boot_id
from watchdogd.statedir import CLOCK_STEPS_FILE, StateDirError, private_file

SAVE_EVERY_S = 60.0  # a longer stretch of one offset is worth a write at most once a minute

_saved: dict[Path, tuple[int, float]] = {}  # state dir -> (epochs, last boot second) written by this process


def recall(state_dir: Path, clock: WallClockSteps) -> None:
    """Merge into `clock` what earlier processes of this boot saw; nothing when there is nothing usable."""
    path = state_dir / CLOCK_STEPS_FILE
    try:
        if not private_file(path, "clock steps file", create=False):
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd) as handle:
            saved = json.load(handle)
        if saved.get("boot_id") != boot_id():
            return
        clock.merge([Epoch(float(a), float(b), float(c)) for a, b, c in saved["epochs"]])
    except (OSError, StateDirError, ValueError, TypeError, KeyError, AttributeError):
        return  # unreadable or damaged: this process's own history is all there is


def remember(state_dir: Path, clock: WallClockSteps) -> None:
    """Write `clock`'s history when it learned something since this process last wrote it."""
    if not clock.epochs:
        return
    state = (len(clock.epochs), clock.epochs[-1].last)
    before = _saved.get(state_dir)
    if before is not None and before[0] == state[0] and state[1] - before[1] < SAVE_EVERY_S:
        return
    text = json.dumps({"boot_id": boot_id(), "epochs": [[e.first, e.last, e.offset] for e in clock.epochs]})
    path = state_dir / CLOCK_STEPS_FILE
    temporary = state_dir / f".{CLOCK_STEPS_FILE}.{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)  # replaces a symlink itself, never what it points to
        _saved[state_dir] = state
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)  # ours (O_EXCL): a state dir we cannot write is reported elsewhere
