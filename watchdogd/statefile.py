"""The status file the daemon publishes for `opencode-watchdogd status` (written atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATUS_FILE = "status.json"


def status_path(state_dir: Path) -> Path:
    return state_dir / STATUS_FILE


def write_status(state_dir: Path, data: dict[str, Any]) -> None:
    target = status_path(state_dir)
    temp = target.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, default=str)
    os.replace(temp, target)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(state_dir).read_text())
    except (OSError, ValueError):
        return None


def daemon_alive(pid: int) -> bool:
    """The pid runs and is an opencode-watchdogd (pids are reused)."""
    from watchdogd.opencode.holders import is_watchdogd

    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return is_watchdogd(cmdline)
