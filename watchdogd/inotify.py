"""A small inotify reader that can stop listening while a pass is already due.

Why not watchdog's Observer: it turns every kernel event into a Python object handed through three
threads (reader, emitter, dispatcher). A streaming opencode commits ~50 times a second and each
commit writes `-wal`: that alone cost 1.3 % of a core with an empty handler. Here one thread reads
the inotify fd; after a batch that asked for a pass it *pauses* (stops reading) until the pass
starts and calls `drain()`. Meanwhile the kernel queues the events and merges identical consecutive
ones (every `-wal` write of a commit stream is the same event), so a stream costs one wake-up per
pass, not one per commit. Nothing is missed: the pass drains the queue before it reads the DB, so
whatever it drained was committed before its snapshot; whatever comes after wakes the reader again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

IN_MODIFY, IN_CLOSE_WRITE = 0x2, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
IN_ONLYDIR, IN_ISDIR = 0x01000000, 0x40000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
# No IN_OPEN / IN_CLOSE_NOWRITE / IN_ACCESS: read-only openers (the daemon itself, a `scan`) cause no events.
DIR_MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
IDLE_READS_PER_S = 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]


@dataclass(frozen=True)
class RawEvent:
    """One kernel event: the watched folder, the entry name ("" for the folder itself), the mask."""

    folder: Path
    name: str
    mask: int

    @property
    def overflow(self) -> bool:
        return bool(self.mask & IN_Q_OVERFLOW)


class Inotify:
    """One inotify fd for every watched folder, read by one thread.

    `on_batch(events)` runs in the reader thread and returns True when it asked for a pass: the
    reader then pauses until `drain()` (called by that pass, before it reads anything) resumes it.
    """

    def __init__(self, on_batch: Callable[[list[RawEvent]], bool]):
        self.on_batch = on_batch
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._folders: dict[int, Path] = {}  # wd -> folder
        self._lock = threading.Lock()  # one reader of the fd at a time, and the wd table
        self._listening = threading.Event()
        self._listening.set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="inotify", daemon=True)

    # -- watches -------------------------------------------------------------------------------
    def watch(self, folder: Path) -> int:
        """Watch a directory (not recursive); raises OSError (ENOENT, ENOTDIR, ENOSPC, EACCES)."""
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(folder), DIR_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(folder))
        with self._lock:
            self._folders[wd] = folder
        return wd

    def is_watched(self, wd: int) -> bool:
        """False once the kernel dropped the watch (the folder was deleted or moved away)."""
        return wd in self._folders

    def unwatch(self, wd: int) -> None:
        with self._lock:
            if self._folders.pop(wd, None) is not None:
                _libc.inotify_rm_watch(self._fd, wd)  # EINVAL when the folder is already gone: fine

    # -- reading -------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def drain(self) -> list[RawEvent]:
        """Everything queued so far, without waiting; the reader listens again from here on."""
        with self._lock:
            events = [] if self._stopped else self._read()
            self._listening.set()
        return events

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            self._listening.wait()
            if self._stopped:
                return
            ready = {fd for fd, _ in poller.poll()}
            if self._stop_r in ready or self._stopped:
                return
            with self._lock:
                events = self._read()
                if not events:
                    continue
                # Pause before the pass is asked for: its drain() must be able to resume us.
                self._listening.clear()
            try:
                wanted = self.on_batch(events)
            except Exception:  # an escaped error would end this thread: no file events, ever
                structlog.get_logger("watchdogd").exception("file event handler failed")
                wanted = False
            if not wanted:
                # Nothing for us (another file in the folder): keep listening, but at most IDLE_READS_PER_S
                # times a second, so a busy neighbour file costs a few merged reads, not one per write.
                time.sleep(1 / IDLE_READS_PER_S)
                self._listening.set()

    def _read(self) -> list[RawEvent]:
        chunks = []
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if not chunk:
                break
            chunks.append(chunk)
        return self._parse(b"".join(chunks))

    def _parse(self, buf: bytes) -> list[RawEvent]:
        events, offset = [], 0
        while offset + _HEADER.size <= len(buf):
            wd, mask, _cookie, length = _HEADER.unpack_from(buf, offset)
            name = buf[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
            offset += _HEADER.size + length
            folder = self._folders.get(wd)
            if mask & IN_IGNORED:
                self._folders.pop(wd, None)  # the folder was removed: the kernel dropped the watch
            elif mask & IN_MOVE_SELF and self._folders.pop(wd, None) is not None:
                _libc.inotify_rm_watch(self._fd, wd)  # the path no longer names this folder
            if folder is not None or mask & IN_Q_OVERFLOW:
                events.append(RawEvent(folder or Path("/"), os.fsdecode(name), mask))
        return events

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._listening.set()
        os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with self._lock:
            for fd in (self._fd, self._stop_r, self._stop_w):
                os.close(fd)
