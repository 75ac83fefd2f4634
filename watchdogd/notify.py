"""systemd notification (sd_notify) through sdnotify; a no-op without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import time

import sdnotify

from watchdogd.present.text import safe


class Notifier:
    """Constructed at daemon start (sdnotify connects in its constructor), never at import."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self.watchdog_interval = self._watchdog_interval()

    @staticmethod
    def _watchdog_interval() -> float | None:
        """Half of WATCHDOG_USEC, when the watchdog is meant for this process."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and pid != str(os.getpid()):
            return None
        return int(usec) / 2_000_000

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            # sdnotify encodes as latin-1 and drops the whole message on any other character (the "…" of a
            # shortened STATUS= once lost READY=1 with it): hand it the UTF-8 bytes systemd expects.
            self._notifier.notify("\n".join(lines).encode().decode("latin-1"))

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1", *([f"STATUS={safe(status, 400)}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={safe(text, 400)}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # systemd ≥ 253 wants the monotonic clock alongside RELOADING=1 (Type=notify-reload).
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")
