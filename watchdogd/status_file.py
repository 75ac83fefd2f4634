"""`status.json` in the state dir: the document the daemon publishes after each pass (written atomically,
mode 0600), read back by `opencode-watchdogd status`. It stores what it is given; its content is made by
watchdogd/present/status.py."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watchdogd.opencode.holders import is_watchdogd

STATUS_FILE = "status.json"


def status_path(state_dir: Path) -> Path:
    return state_dir / STATUS_FILE


def write_status(state_dir: Path, data: Mapping[str, Any]) -> None:
    target = status_path(state_dir)
    temp = target.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    os.replace(temp, target)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last document written, or None (none yet, unreadable, torn by another writer, or not a regular file:
    a FIFO put in its place would block the read for ever, a symlink is not ours)."""
    try:
        fd = os.open(status_path(state_dir), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            return json.loads(handle.read()) if stat.S_ISREG(os.fstat(fd).st_mode) else None
        except (OSError, ValueError):
            return None


def daemon_alive(pid: int) -> bool:
    """The pid runs and is an opencode-watchdogd (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return is_watchdogd(cmdline)
