"""Desktop notifications: `org.freedesktop.Notifications.Notify` on the session bus, through jeepney.

A pass only queues events; one sender thread talks to the bus, every step under a time limit, so a bus
that vanished or a notification server that is absent or hangs never holds up a pass. A failure is
logged once (and once more when delivery works again). Events of a kind that arrive within
COALESCE_S of the notification showing that kind update it in place (`replaces_id`) instead of stacking.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from jeepney import DBusAddress, new_method_call
from jeepney.bus import get_connectable_addresses
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, Proxy, prep_socket
from jeepney.io.common import MessageFilters
from jeepney.wrappers import unwrap_msg

from watchdogd.notifiers.notices import Event, NoticeKind, Rendered, render

APP_NAME = "opencode-watchdogd"
TIMEOUT_S = 2.0  # each of: connect + authenticate, Hello, Notify
COALESCE_S = 30.0
QUEUE_MAX = 256
KEPT_EVENTS = 1000  # events kept for a coalesced notification (only the count and the first few are shown)
NOTIFICATIONS = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name="org.freedesktop.Notifications",
    interface="org.freedesktop.Notifications",
)


def session_bus_address(environ=os.environ) -> str | None:
    """The session bus named by the environment (a desktop login, or a systemd user manager's bus)."""
    address = environ.get("DBUS_SESSION_BUS_ADDRESS")
    if address:
        return address
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and Path(runtime, "bus").is_socket():
        return f"unix:path={runtime}/bus"
    return None


class _Connection(DBusConnection):
    """jeepney's blocking connection, with a time limit on its Hello too (it waits for ever otherwise)."""

    def __init__(self, sock, timeout: float):
        sock.settimeout(timeout)  # bounds sends to a bus that stopped reading
        super(DBusConnection, self).__init__(sock)
        self._filters = MessageFilters()
        self.bus_proxy = Proxy(message_bus, self, timeout=timeout)
        self.unique_name = self.bus_proxy.Hello()[0]


def open_connection(address: str, timeout: float = TIMEOUT_S) -> DBusConnection:
    sock = prep_socket(next(get_connectable_addresses(address)), timeout=timeout)
    try:
        return _Connection(sock, timeout)
    except BaseException:
        sock.close()
        raise


def notify_message(rendered: Rendered, replaces_id: int = 0):
    hints = {"urgency": ("y", rendered.urgency), "desktop-entry": ("s", APP_NAME)}
    return new_method_call(
        NOTIFICATIONS,
        "Notify",
        "susssasa{sv}i",
        (APP_NAME, replaces_id, "", rendered.summary, rendered.body, [], hints, -1),
    )


@dataclass
class _Shown:
    id: int
    at: float  # monotonic time it was first shown
    events: list[Event]


class DesktopNotifier:
    """Queues events from passes; a sender thread delivers them. `submit` never blocks."""

    def __init__(self, address: str, timeout: float = TIMEOUT_S, coalesce_s: float = COALESCE_S):
        self.address = address
        self.timeout = timeout
        self.coalesce_s = coalesce_s
        self.log = structlog.get_logger("watchdogd.desktop")
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=QUEUE_MAX)
        self._conn: DBusConnection | None = None
        self._shown: dict[NoticeKind, _Shown] = {}
        self._failing = False
        self._dropped = False
        self._thread = threading.Thread(target=self._run, name="desktop-notify", daemon=True)
        self._thread.start()

    def submit(self, events: list[Event]) -> None:
        for event in events:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                if not self._dropped:
                    self._dropped = True
                    self.log.warning(
                        "desktop notifications are not being delivered fast enough; dropping some"
                    )

    def close(self, timeout: float = 0.2) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(
            timeout
        )  # a sender stuck on a hung bus is a daemon thread: it dies with the process

    # -- the sender thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():  # everything already queued becomes one delivery
                batch.append(self._queue.get_nowait())
            events = [e for e in batch if e is not None]
            if events:
                self._deliver(events)
            if None in batch:
                self._disconnect()
                return

    def _deliver(self, events: list[Event]) -> None:
        for kind in NoticeKind:
            fresh = [e for e in events if e.kind is kind]
            if not fresh:
                continue
            shown = self._shown.get(kind)
            now = time.monotonic()
            if shown is not None and now - shown.at < self.coalesce_s:
                merged = (shown.events + fresh)[-KEPT_EVENTS:]
                notice_id = self._notify(render(kind, merged), shown.id)
                if notice_id is not None:
                    self._shown[kind] = _Shown(notice_id, shown.at, merged)
                continue
            notice_id = self._notify(render(kind, fresh))
            if notice_id is not None:
                self._shown[kind] = _Shown(notice_id, now, fresh[-KEPT_EVENTS:])

    def _notify(self, rendered: Rendered, replaces_id: int = 0) -> int | None:
        try:
            if self._conn is None:
                self._conn = open_connection(self.address, self.timeout)
            reply = self._conn.send_and_get_reply(notify_message(rendered, replaces_id), timeout=self.timeout)
            notice_id = int(unwrap_msg(reply)[0])
        except Exception as exc:  # noqa: BLE001 - the sender must outlive any bus failure
            self._disconnect()
            if not self._failing:
                self._failing = True
                self.log.warning(
                    "desktop notification not delivered; further failures are not logged",
                    bus=self.address,
                    error=f"{type(exc).__name__}: {exc}",
                )
            return None
        if self._failing:
            self._failing = False
            self.log.info("desktop notifications delivered again", bus=self.address)
        return notice_id

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
