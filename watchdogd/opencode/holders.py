"""Which processes hold an opencode DB open (Linux /proc): the ownership evidence.

A holder is matched by file identity, (st_dev, st_ino) of what each /proc/PID/fd points to, for the DB
and its -wal/-shm: a bind mount (a container's view of the data dir) or a hard link is the same file.

What the fd walk cannot see (processes with unreadable fds, /proc mounted with hidepid) is caught by
/proc/locks: every SQLite connection in WAL mode keeps a shared lock on the DB's -shm for its
lifetime, and the kernel lists every lock with its file's device and inode. A lock whose process the
walk did not see becomes an unseen holder: "no holder seen" is then not proof, and nothing is written.
Processes outside this PID namespace (the daemon in a container) are hidden even from /proc/locks:
there, a DB on a mount shared with the outside (a bind mount or volume: its mountinfo root is not
"/") gets an unseen holder unless `watch.trust_pid_namespace` says no outside process can open it.
A DB on the container's own filesystem (its root overlay, a tmpfs) is taken as the container's own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from watchdogd.opencode.process_start import WALL_CLOCK, WallClockSteps, start_time
from watchdogd.opencode.rows import Holder

FileId = tuple[int, int]  # (st_dev, st_ino)
INIT_PID_NS = 0xEFFFFFFC  # the kernel's fixed inode number of the initial PID namespace (PROC_PID_INIT_INO)
OUTSIDE = (
    "[this daemon runs in its own PID namespace (a container) and the DB is on a mount shared with the "
    "outside ({why}): a process outside may hold it unseen; set watch.trust_pid_namespace = true if none can]"
)


def shared_mount(path: Path, proc: Path = Path("/proc")) -> str | None:
    """Why the file's mount may be seen from outside this container (a bind mount or volume), or None."""
    try:
        lines = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return "its mounts cannot be read"
    target = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        root, point = _unescape(fields[3]), _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[0])):  # the later of stacked mounts is on top
            best = (point, root)
    if best is None or best[1] == "/":
        return None
    return f"{best[0]} is a bind mount of {best[1]}"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 …)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def in_child_pid_namespace(proc: Path = Path("/proc")) -> bool:
    """Whether processes exist that /proc here cannot show (this process is in a container's PID namespace)."""
    try:
        return os.stat(proc / "self" / "ns" / "pid").st_ino != INIT_PID_NS
    except OSError:
        return False  # no namespace files (very old kernel, or no /proc): nothing to tell


def _cmdline(pid: int, proc: Path = Path("/proc")) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
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


def db_identities(db: Path) -> set[FileId]:
    """(st_dev, st_ino) of the DB and of its -wal/-shm that exist now."""
    base = os.path.realpath(db)  # SQLite puts -wal/-shm next to the file a symlink points to
    out = set()
    for suffix in ("", "-wal", "-shm"):
        try:
            st = os.stat(f"{base}{suffix}")
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def _open_identities(entry: Path) -> set[FileId] | None:
    """Identities of a process's open files; None when its fds may not be read (hardened, another user)."""
    try:
        fds = os.listdir(entry / "fd")
    except PermissionError:
        return None
    except OSError:
        return set()  # the process is gone
    out = set()
    for fd in fds:
        try:
            st = os.stat(f"{entry}/fd/{fd}")  # follows the link to the open file, wherever it is mounted
        except OSError:
            continue  # closed since the listing: opencode opens and closes files all the time
        out.add((st.st_dev, st.st_ino))
    return out


def lock_holders(wanted: set[FileId], text: str) -> set[int]:
    """Pids holding a lock on one of `wanted` in /proc/locks text (0 or -1: a process not nameable here)."""
    out = set()
    for line in text.splitlines():
        fields = line.replace("->", " ").split()
        if len(fields) < 6:
            continue
        try:
            pid = int(fields[4])
            major, minor, ino = fields[5].split(":")
            identity = (os.makedev(int(major, 16), int(minor, 16)), int(ino))
        except ValueError:
            continue
        if identity in wanted:
            out.add(pid)
    return out


def _read_locks(proc: Path) -> str | None:
    try:
        return (proc / "locks").read_text()
    except OSError:
        return None


def _unseen_holder(pid: int, proc: Path, clock: WallClockSteps) -> Holder:
    """A process that locks the DB but whose fds the walk could not read (or could not see at all)."""
    if pid <= 0:
        return Holder(
            pid,
            0.0,
            "[holds a lock on the DB (/proc/locks) but is not visible here: another PID "
            "namespace, or an open file description lock]",
            visible=False,
        )
    started = start_time(pid, proc, clock)
    if started is None:
        return Holder(
            pid,
            0.0,
            f"[pid {pid} holds a lock on the DB (/proc/locks) but is not visible in /proc "
            "(hidepid, or it just exited)]",
            visible=False,
        )
    return Holder(
        pid,
        started,
        f"{_cmdline(pid, proc)} [holds a lock on the DB (/proc/locks); its open files "
        "cannot be read]".lstrip(),
        visible=False,
    )


def _could_write(uid: int | None, owner: os.stat_result | None) -> bool:
    """Without /proc/locks: whether a process of `uid` may write the DB by its permission bits (root aside)."""
    if owner is None or uid is None:
        return False
    return uid == owner.st_uid or bool(owner.st_mode & 0o022)


def _uid(entry: Path) -> int | None:
    try:
        return entry.stat().st_uid
    except OSError:
        return None


def find_holders(
    dbs: list[Path],
    proc: Path = Path("/proc"),
    *,
    trust_pid_namespace: bool = False,
    clock: WallClockSteps = WALL_CLOCK,
) -> dict[Path, list[Holder]]:
    """Map each DB to the processes (other than watchdogd itself) with the DB or its -wal/-shm open.

    A process the walk cannot inspect that holds a lock on the DB is listed too (`visible=False`):
    not knowing must never make a live session look orphaned. Start times are on the wall clock of
    their moment (watchdogd/opencode/process_start.py), so a clock step does not make a holder look new.
    """
    wanted = {path: db_identities(path) for path in dbs}
    me = os.getpid()
    clock.observe()  # a step since the last lookup is seen before any start is put on the wall clock
    result: dict[Path, list[Holder]] = {path: [] for path in dbs}
    seen: dict[Path, set[int]] = {path: {me} for path in dbs}
    unreadable: list[Path] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        identities = _open_identities(entry)
        if identities is None:
            unreadable.append(entry)
            continue
        held = [path for path, ids in wanted.items() if identities & ids]
        if not held:
            continue
        for path in held:
            seen[path].add(pid)
        cmdline = _cmdline(pid, proc)
        started = start_time(pid, proc, clock)
        if is_watchdogd(cmdline) or started is None:
            continue  # ours, or gone meanwhile
        for path in held:
            result[path].append(Holder(pid, started, cmdline))
    _add_unseen(result, wanted, seen, unreadable, proc, clock)
    if not trust_pid_namespace and in_child_pid_namespace(proc):
        for path, ids in wanted.items():
            why = shared_mount(path, proc) if ids else None
            if why:
                result[path].append(Holder(0, 0.0, OUTSIDE.format(why=why), visible=False))
    return result


def _add_unseen(
    result: dict[Path, list[Holder]],
    wanted: dict[Path, set[FileId]],
    seen: dict[Path, set[int]],
    unreadable: list[Path],
    proc: Path,
    clock: WallClockSteps,
) -> None:
    locks = _read_locks(proc)
    for path, ids in wanted.items():
        if locks is not None:
            pids = lock_holders(ids, locks) - seen[path] if ids else set()
        else:  # no lock table: every unreadable process that may write the DB may hold it
            st = _stat(path)
            pids = {int(e.name) for e in unreadable if _could_write(_uid(e), st)}
        result[path] += [_unseen_holder(pid, proc, clock) for pid in sorted(pids)]


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except OSError:
        return None
