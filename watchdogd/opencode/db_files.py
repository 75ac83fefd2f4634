"""Checks before a DB file is opened: what kind of file it is, and whether this process has fds left."""

from __future__ import annotations

import errno
import os
import resource
import stat
from pathlib import Path


def special_file_kind(path: Path) -> str | None:
    """ "a FIFO", "a character device", … for a path that exists and is not a regular file or directory.

    SQLite would block for ever opening a FIFO read-only (until a writer appears), or read a device."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


# fds kept free for what a pass needs besides DB connections (holders, journal, backup, HTTP)
FD_HEADROOM = 32


def fd_limit_problem(headroom: int = 0) -> str:
    """Why no more files should be opened (at the open-file limit, or within `headroom` of it), or ""."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/self/fd"))
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            return ""
        soft = used = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or used < soft - headroom:
        return ""
    return (
        f"open-file limit reached ({used} files open, limit {soft}): raise it with LimitNOFILE= in the "
        "systemd unit or `ulimit -n`, or watch fewer databases"
    )
