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


def _open_files(entry: Path) -> set[str] | None:
    """Targets of a process's fds; None when they may not be read (hardening, setuid, another user)."""
    try:
        fds = list((entry / "fd").iterdir())
    except PermissionError:
        return None
    except OSError:
        return set()  # the process is gone
    targets = set()
    for fd in fds:
        try:
            targets.add(os.readlink(fd))
        except OSError:
            continue  # closed since the listing: opencode opens and closes files all the time
    return targets


def _looks_like_opencode(cmdline: str) -> bool:
    # Broader than discovery_net.is_opencode on purpose: with its fds unreadable, /proc/PID/exe is
    # unreadable too, and `node …/opencode` must still count; erring here only withholds writes.
    return any("opencode" in os.path.basename(word) for word in cmdline.split()[:3]) and not is_watchdogd(cmdline)


def find_holders(dbs: list[Path], proc: Path = Path("/proc")) -> dict[Path, list[Holder]]:
    """Map each DB to the processes (other than watchdogd itself) with the DB or its WAL open.

    An opencode process of the DB owner's uid whose fds cannot be read counts as a holder of that
    DB: not knowing must never make a live session look orphaned.
    """
    wanted = {path: db_files(path) for path in dbs}
    owners = {path: _owner(path) for path in dbs}
    result: dict[Path, list[Holder]] = {path: [] for path in dbs}
    me = os.getpid()
    boot = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        targets = _open_files(entry)
        if targets is None:
            cmdline = _cmdline(pid)
            if not _looks_like_opencode(cmdline):
                continue
            uid = _owner(entry)
            held = [path for path in dbs if owners[path] is not None and owners[path] == uid]
            cmdline += " [fds not readable]"
        else:
            held = [path for path, files in wanted.items() if targets & files]
            cmdline = _cmdline(pid) if held else ""
        if not held or is_watchdogd(cmdline):
            continue
        started = _start_time(pid, boot, ticks)
        if started is None:
            continue  # gone meanwhile
        for path in held:
            result[path].append(Holder(pid, started, cmdline))
    return result


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None
