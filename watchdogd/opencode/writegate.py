"""May this process write this opencode DB at all? Asked before every DB write, and shown by scan/status.

A refusal turns every repair of that DB into a read-only report with the reason:

- on a network or FUSE filesystem (statfs f_type: NFS, SMB/CIFS, FUSE, 9p, Ceph, AFS, …): SQLite's
  file locks and its shared-memory WAL index are not reliable there, so a write could corrupt the DB
  of an opencode running on another host (or behind the FUSE daemon);
- on a read-only mount, or not writable by this process (the DB, or its directory when SQLite would
  have to create the -wal/-shm files);
- owned by another user, unless `allow_other_users = true`: a root daemon must not edit a user's
  conversation history by accident (with the setting, SQLite gives the -wal/-shm files it creates the
  DB owner's uid, so opencode can still open them);
- on FUSE, unless `allow_fuse = true`: an encrypted home (gocryptfs, securefs) is local and may pass
  SQLite's locks through, but only the user can know that.

The DB path is the file itself: discovery resolves symlinks (watchdogd/opencode/discovery.py).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

# statfs(2) f_type values of filesystems whose locking SQLite cannot rely on (linux/magic.h and friends).
NETWORK_MAGIC = {
    0x6969: "nfs",
    0x517B: "smb",
    0xFF534D42: "cifs",
    0xFE534D42: "smb2",
    0x65735546: "fuse",
    0x01021997: "9p",
    0x00C36400: "ceph",
    0x73757245: "coda",
    0x5346414F: "afs",
    0x6B414653: "afs",
    0x564C: "ncp",
    0x0BD00BD0: "lustre",
    0x47504653: "gpfs",
    0x20030528: "orangefs",
    0x19830326: "beegfs",
}

FUSE_MAGIC = 0x65735546

_libc = None


@dataclass(frozen=True)
class WriteRules:
    """The settings that relax the gate; both off by default."""

    allow_other_users: bool = False
    allow_fuse: bool = False

    @classmethod
    def from_settings(cls, settings) -> "WriteRules":
        return cls(settings.allow_other_users, settings.allow_fuse)


def fs_magic(path: str) -> int | None:
    """statfs(2) f_type of the filesystem holding `path`, or None when it cannot be asked."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # larger than struct statfs on every Linux ABI
        if _libc.statfs(os.fsencode(path), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    # f_type (__fsword_t) is the first field: a long on 64-bit ABIs, an int on 32-bit ones.
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def _mount_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The fstype name of the mount holding `path` (e.g. "fuse.sshfs"), for a clearer message."""
    best: tuple[int, str] | None = None
    try:
        with open(mountinfo) as handle:
            for line in handle:
                fields = line.split()
                if " - " not in line or len(fields) < 5:
                    continue
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040 = space
                after = line.split(" - ", 1)[1].split()
                if (path == point or path.startswith(point.rstrip("/") + "/")) and (
                    best is None or len(point) >= best[0]
                ):
                    best = (len(point), after[0] if after else "?")
    except OSError:
        return None
    return best[1] if best else None


def network_fs(folder: str, allow_fuse: bool = False) -> str | None:
    """The kind of network/FUSE filesystem `folder` is on, or None when it is local (or allowed FUSE)."""
    magic = fs_magic(folder) or 0
    kind = NETWORK_MAGIC.get(magic)
    if kind is None or (allow_fuse and magic == FUSE_MAGIC):
        return None
    name = _mount_type(folder)
    return kind if not name or name == kind else f"{kind}: {name}"


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def write_refusal(path: Path, rules: WriteRules = WriteRules()) -> str | None:
    """Why this process must not write the DB at `path`; None when it may (or the file does not exist)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot stat it: {exc.strerror or exc}"
    folder = os.path.dirname(os.path.realpath(path))
    kind = network_fs(folder, rules.allow_fuse)
    if kind:
        hint = "; set allow_fuse = true if this FUSE filesystem is local" if kind.startswith("fuse") else ""
        return (
            f"on a network filesystem ({kind}): SQLite's locking is not reliable there, so it is never "
            f"written (read-only report){hint}"
        )
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "on a read-only mount: nothing can be written there"
    except OSError:
        pass
    euid = os.geteuid()
    if st.st_uid != euid and not rules.allow_other_users:
        return (
            f"owned by {user_name(st.st_uid)}, not by this process's user {user_name(euid)}: "
            "set allow_other_users = true to let it write another user's DB"
        )
    if not os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return f"the file is not writable by {user_name(euid)}"
    missing = [s for s in ("-wal", "-shm") if not os.path.exists(f"{path}{s}")]
    if missing and not os.access(
        folder, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        return (
            f"its directory is not writable by {user_name(euid)}, so SQLite cannot create the "
            f"{'/'.join(missing)} file(s) a write needs"
        )
    return None
