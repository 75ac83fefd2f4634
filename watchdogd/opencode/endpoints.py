"""Which opencode servers may own a DB's sessions: configured URLs, and local holders' loopback APIs.

A local server is recognised by what it does, never by its file name (npm 1.14 runs `bin/.opencode`,
npm 1.15+ `bin/opencode.exe`, package managers rename binaries): a process that holds the DB and
listens on a loopback port answering `GET /global/health` like opencode is an opencode server.

Credentials go only to the server they belong to: a configured entry's own password (or file),
and for a discovered server the variables opencode itself reads (OPENCODE_SERVER_USERNAME /
OPENCODE_SERVER_PASSWORD) from the daemon's environment, sent only to a socket owned by the DB
owner's uid whose process holds the DB. Every server is confirmed with `GET /global/health`
(which also gives its version) before it is believed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from watchdogd.durations import format_duration
from watchdogd.opencode.discovery_net import Listener, fds_readable, loopback_listeners, port_listeners
from watchdogd.opencode.rows import Holder
from watchdogd.opencode.server import (
    Credentials,
    ServerClient,
    ServerError,
    describe_error,
    insecure_reason,
    is_loopback_host,
)

MAX_PORTS_PROBED = 4  # a holder's listening ports tried for /global/health

_warned: set[str] = set()


def _warn_once(message: str, **fields) -> None:
    """Configuration problems are logged once per process, not once per pass."""
    key = message + repr(sorted(fields.items()))
    if key not in _warned:
        _warned.add(key)
        structlog.get_logger("watchdogd.endpoints").warning(message, **fields)


def env_credentials() -> Credentials | None:
    """What opencode itself reads: OPENCODE_SERVER_USERNAME (default "opencode") / OPENCODE_SERVER_PASSWORD."""
    password = os.environ.get("OPENCODE_SERVER_PASSWORD")
    if not password:
        return None
    return Credentials(os.environ.get("OPENCODE_SERVER_USERNAME") or "opencode", password)


@dataclass(frozen=True)
class ConfiguredServer:
    """A server the user named (`[[servers]]`) and how to log in to it; built by the caller from its config."""

    url: str
    username: str = "opencode"
    password: str | None = field(default=None, repr=False)  # never in a repr, a log line or an error
    password_file: Path | None = None


@dataclass(frozen=True)
class ServerRules:
    """Which servers are asked and how (`[[servers]]` and `[live]`), as plain values."""

    servers: tuple[ConfiguredServer, ...] = ()
    timeout: float = 5.0  # seconds, per request
    discover: bool = True  # look for the API of a local process that holds the DB
    allow_insecure_remote: bool = False  # a non-loopback server over plain http


def configured_credentials(server: ConfiguredServer) -> Credentials | None:
    """password, else password_file, else OPENCODE_SERVER_PASSWORD; raises OSError for an unreadable file."""
    if server.password is not None:
        password = server.password
    elif server.password_file is not None:
        password = server.password_file.expanduser().read_text().rstrip("\r\n")
    else:
        password = os.environ.get("OPENCODE_SERVER_PASSWORD", "")
    return Credentials(server.username, password) if password else None


def warn_shared_password_files(password_files: Iterable[Path | None]) -> None:
    """At start: a shared password_file is a configuration problem, whether or not a pass needs the server."""
    for password_file in password_files:
        _warn_if_shared(password_file)


def _warn_if_shared(password_file: Path | None) -> None:
    """A password_file other users can read is a password they know: say so (once), with the fix."""
    if password_file is None:
        return
    path = password_file.expanduser()
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # reported when it is read
    if mode & 0o077:
        _warn_once(
            "password_file is readable by group or others",
            path=str(path),
            mode=f"{mode:04o}",
            fix=f"chmod 600 {path}",
        )


@dataclass
class Endpoint:
    """A server that may own sessions: configured, or discovered behind a local DB holder."""

    url: str
    client: ServerClient | None = None
    pid: int | None = None  # the local process behind it, when known
    error: str | None = None  # why it cannot be used
    error_kind: str | None = None  # ServerError.kind behind `error`
    listening: bool = True  # False: the holder listens on no loopback TCP port (a plain TUI, `opencode run`)

    @property
    def version(self) -> str | None:
        return self.client.version if self.client else None

    def failed(self, exc: ServerError) -> None:
        self.error, self.error_kind = describe_error(exc, self.url), exc.kind


def _port(url: str) -> int | None:
    parts = urlsplit(url)
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None


class Endpoints:
    """The servers of one pass, each health-probed at most once."""

    def __init__(
        self,
        rules: ServerRules,
        listeners: Callable[[list[int]], dict] = loopback_listeners,
        on_port: Callable[[int], list[Listener]] = port_listeners,
    ):
        self.rules = rules
        self.timeout = rules.timeout
        self._listeners = listeners
        self._on_port = on_port
        self._port_uids: dict[int, set[int]] = {}  # loopback port -> uids of its listening sockets, this pass
        self._configured = [self._configured_endpoint(s) for s in rules.servers]
        self._by_pid: dict[tuple[int, int | None], Endpoint] = {}

    def _configured_endpoint(self, server: ConfiguredServer) -> Endpoint:
        reason = insecure_reason(server.url, self.rules.allow_insecure_remote)
        if reason is None:
            _warn_if_shared(server.password_file)
            try:
                return Endpoint(
                    server.url, ServerClient(server.url, configured_credentials(server), self.timeout)
                )
            except OSError as exc:
                reason = f"cannot read password_file {server.password_file}: {exc.strerror or exc}"
        _warn_once("configured server not used", url=server.url, why=reason)
        return Endpoint(server.url, error=reason)

    def ready(self, endpoint: Endpoint | None) -> bool:
        """Probe /global/health once per endpoint; it records the version, or why it cannot be used."""
        if endpoint is None or endpoint.client is None or endpoint.error:
            return False
        if endpoint.client.version is None:
            try:
                endpoint.client.health()
            except ServerError as exc:
                endpoint.failed(exc)
                _warn_once(
                    "opencode server not usable", url=endpoint.url, pid=endpoint.pid, why=endpoint.error
                )
        return endpoint.error is None

    def for_holder(self, holder: Holder, owner_uid: int | None) -> Endpoint:
        """The API of a DB holder; `owner_uid` (the DB file's owner) decides who may get the password."""
        key = (holder.pid, owner_uid)
        if key not in self._by_pid:
            ports = self._listeners([holder.pid]).get(holder.pid, []) if holder.visible else []
            self._by_pid[key] = self._match_configured(holder.pid, ports, owner_uid) or self._discover(
                holder, ports, owner_uid
            )
        return self._by_pid[key]

    def _match_configured(self, pid: int, ports: list[Listener], owner_uid: int | None) -> Endpoint | None:
        """A configured loopback URL on a port this holder listens on: that server, with its own credentials."""
        for endpoint in self._configured:
            host = urlsplit(endpoint.url).hostname or ""
            if (
                endpoint.pid is None
                and is_loopback_host(host)
                and _port(endpoint.url) in {p.port for p in ports}
            ):
                refusal = self.socket_refusal(endpoint, owner_uid)
                if refusal is not None:
                    return Endpoint(endpoint.url, pid=pid, error=f"pid {pid} listens on {refusal}")
                endpoint.pid = pid
                return endpoint
        return None

    def socket_refusal(self, endpoint: Endpoint, owner_uid: int | None) -> str | None:
        """Why a configured loopback URL is not asked about a DB of `owner_uid`; None when it may be.

        Its password, and what is sent to it (a PATCH carries the part), go only to a socket the DB's owner
        owns (the uid column of /proc/net/tcp): while opencode is down anyone may listen on its port.
        A remote URL was allowed by https or live.allow_insecure_remote (README: servers).
        """
        port = _port(endpoint.url)
        if port is None or not is_loopback_host(urlsplit(endpoint.url).hostname or ""):
            return None
        if port not in self._port_uids:
            self._port_uids[port] = {listener.uid for listener in self._on_port(port)}
        strangers = sorted(uid for uid in self._port_uids[port] if uid != owner_uid)
        if not strangers:  # the owner's socket, or none (the request fails to connect, as to a server down)
            return None
        _warn_once(
            "configured server not asked: its port belongs to another user",
            url=endpoint.url,
            port=port,
            uid=strangers[0],
            db_owner_uid=owner_uid,
        )
        return f"port {port}, owned by uid {strangers[0]}, not by the DB owner's uid {owner_uid}: not asked"

    def _discover(self, holder: Holder, ports: list[Listener], owner_uid: int | None) -> Endpoint:
        pid, label = holder.pid, f"pid {holder.pid}"
        if not self.rules.discover:
            return Endpoint(
                label, pid=pid, error="live.discover = false and no [[servers]] url matches its port"
            )
        if not holder.visible:
            return Endpoint(label, pid=pid, error=holder.cmdline.strip("[]") + ", so its API cannot be found")
        if not ports and fds_readable(pid) is False:
            return Endpoint(
                label,
                pid=pid,
                error=f"pid {pid} holds the DB but its open files cannot be read "
                "(hardened, or another user's process), so its API port cannot be found",
            )
        if not ports:
            return Endpoint(
                label,
                pid=pid,
                listening=False,
                error=f"pid {pid} holds the DB and is not listening on loopback "
                "TCP: no API to ask (a TUI without --port, or not an opencode server)",
            )
        seen: list[str] = []
        first: Endpoint | None = None
        for listener in ports[:MAX_PORTS_PROBED]:
            url = f"http://{listener.address}"
            # The password only goes to a socket of the DB owner's uid: another user's listener gets none.
            credentials = env_credentials() if owner_uid is not None and listener.uid == owner_uid else None
            endpoint = Endpoint(url, ServerClient(url, credentials, self.timeout), pid=pid)
            if self.ready(endpoint):
                return endpoint
            seen.append(
                self._observed(
                    listener, endpoint, credentials is None and listener.uid != owner_uid, owner_uid
                )
            )
            first = first or endpoint
            if endpoint.error_kind == "timeout":
                break  # a hung process: do not wait out the timeout on each of its ports
        assert first is not None  # ports is not empty
        first.error = f"pid {pid} holds the DB and listens on " + "; ".join(seen)
        return first

    def _observed(self, listener: Listener, endpoint: Endpoint, withheld: bool, owner_uid: int | None) -> str:
        """What a listener did when asked GET /global/health, in words (never a guess at what it is)."""
        kind, where = endpoint.error_kind, listener.address
        if kind == "timeout":
            return f"{where}, which did not answer /global/health within {format_duration(self.timeout)}"
        if kind == "auth" and withheld:
            return (
                f"{where}, which asked for a password; its socket belongs to uid {listener.uid}, not to the "
                f"DB owner's uid {owner_uid}, so no password is sent to it"
            )
        if kind == "auth":
            return f"{where}, which asked for a password: {endpoint.error}"
        return f"{where}, which did not answer /global/health like opencode ({endpoint.error})"

    def remote(self, owner_uid: int | None) -> list[Endpoint]:
        """Configured servers not found behind a local holder, that may be asked about a DB of `owner_uid`
        (asked too, since they may own a session)."""
        return [e for e in self._configured if e.pid is None and self.socket_refusal(e, owner_uid) is None]

    def reached(self) -> list[Endpoint]:
        """The servers of this pass that answered `GET /global/health` (so their version is known)."""
        every = {id(e): e for e in [*self._by_pid.values(), *self._configured]}
        return [e for e in every.values() if e.version is not None and e.error is None]

    def by_url(self, url: str | None) -> Endpoint | None:
        return next((e for e in [*self._by_pid.values(), *self._configured] if e.url == url), None)
