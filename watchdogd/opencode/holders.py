"""Which processes hold an opencode DB open (Linux /proc): the ownership evidence."""

from __future__ import annotations

import os
from pathlib import Path

from watchdogd.models import Holder


def _boot_time() -> float:
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _start_time(pid: int, boot: float, ticks: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields start after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return boot + int(fields[19]) / ticks


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def is_watchdogd(cmdline: str) -> bool:
    """Our own processes (the daemon, a CLI scan) hold DBs too, and never own a session."""
    # Only the program itself counts, never its arguments: `opencode run "python -m watchdogd scan"`
    # is a live opencode, and mistaking it for us would make its sessions look orphaned.
    words = cmdline.split()
    if words and os.path.basename(words[0]) == "opencode-watchdogd":
        return True
    if not words or not os.path.basename(words[0]).startswith("python"):
        return False
    rest = words[1:]
    while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
        rest = rest[1:]  # interpreter flags such as -I or -u
    if rest[:2] == ["-m", "watchdogd"]:
        return True
    return bool(rest) and os.path.basename(rest[0]) == "opencode-watchdogd"


def db_files(db: Path) -> set[str]:
    base = os.path.realpath(db)
    return {base, base + "-wal"}


def find_holders(dbs: list[Path], proc: Path = Path("/proc")) -> dict[Path, list[Holder]]:
    """Map each DB to the processes (other than watchdogd itself) with the DB or its WAL open."""
    wanted = {path: db_files(path) for path in dbs}
    result: dict[Path, list[Holder]] = {path: [] for path in dbs}
    me = os.getpid()
    boot = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            targets = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue  # gone, or another user's process we may not inspect
        for path, files in wanted.items():
            if targets & files:
                cmdline = _cmdline(pid)
                started = _start_time(pid, boot, ticks)
                if started is None or is_watchdogd(cmdline):
                    continue
                result[path].append(Holder(pid, started, cmdline))
    return result
