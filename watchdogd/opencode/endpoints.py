"""Which opencode servers may own a DB's sessions: configured URLs, and local holders' loopback APIs.

Credentials go only to the server they belong to: a configured entry's own password (or file),
and for a discovered server the variables opencode itself reads (OPENCODE_SERVER_USERNAME /
OPENCODE_SERVER_PASSWORD) from the daemon's environment. Every server is confirmed with
`GET /global/health` (which also gives its version) before it is believed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import structlog

from watchdogd.config import ServerConfig, Settings
from watchdogd.models import Holder
from watchdogd.opencode.discovery_net import (
    fds_readable,
    is_opencode,
    loopback_listeners,
    process_exe,
)
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


def configured_credentials(server: ServerConfig) -> Credentials | None:
    """password, else password_file, else OPENCODE_SERVER_PASSWORD; raises OSError for an unreadable file."""
    if server.password is not None:
        password = server.password.get_secret_value()
    elif server.password_file is not None:
        password = server.password_file.expanduser().read_text().rstrip("\r\n")
    else:
        password = os.environ.get("OPENCODE_SERVER_PASSWORD", "")
    return Credentials(server.username, password) if password else None


@dataclass
class Endpoint:
    """A server that may own sessions: configured, or discovered behind a local DB holder."""

    url: str
    client: ServerClient | None = None
    pid: int | None = None  # the local process behind it, when known
    error: str | None = None  # why it cannot be used
    error_kind: str | None = None  # ServerError.kind behind `error`

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

    def __init__(self, settings: Settings, listeners: Callable[[list[int]], dict] = loopback_listeners):
        self.settings = settings
        self.timeout = settings.live.timeout
        self._listeners = listeners
        self._configured = [self._configured_endpoint(s) for s in settings.servers]
        self._by_pid: dict[int, Endpoint] = {}

    def _configured_endpoint(self, server: ServerConfig) -> Endpoint:
        reason = insecure_reason(server.url, self.settings.live.allow_insecure_remote)
        if reason is None:
            try:
                return Endpoint(server.url, ServerClient(server.url, configured_credentials(server), self.timeout))
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
                _warn_once("opencode server not usable", url=endpoint.url, pid=endpoint.pid, why=endpoint.error)
        return endpoint.error is None

    def for_holder(self, holder: Holder) -> Endpoint:
        if holder.pid not in self._by_pid:
            ports = self._listeners([holder.pid]).get(holder.pid, [])
            self._by_pid[holder.pid] = self._match_configured(holder.pid, ports) or self._discover(holder, ports)
        return self._by_pid[holder.pid]

    def _match_configured(self, pid: int, ports: list[tuple[str, int]]) -> Endpoint | None:
        """A configured loopback URL on a port this holder listens on: that server, with its own credentials."""
        for endpoint in self._configured:
            host = urlsplit(endpoint.url).hostname or ""
            if endpoint.pid is None and is_loopback_host(host) and _port(endpoint.url) in {p for _, p in ports}:
                endpoint.pid = pid
                return endpoint
        return None

    def _discover(self, holder: Holder, ports: list[tuple[str, int]]) -> Endpoint:
        label = f"pid {holder.pid}"
        if not self.settings.live.discover:
            return Endpoint(label, pid=holder.pid, error="live.discover = false and no [[servers]] url matches its port")
        if not is_opencode(holder.cmdline, process_exe(holder.pid)):
            return Endpoint(label, pid=holder.pid, error="holds the DB but is not an opencode process; no API to ask")
        if not ports and fds_readable(holder.pid) is False:
            return Endpoint(label, pid=holder.pid, error="its open files cannot be read (hardened, or another user's "
                                                         "process), so its API port cannot be found")
        if not ports:
            return Endpoint(label, pid=holder.pid, error="no API: not listening on loopback TCP (a TUI without --port?)")
        first: Endpoint | None = None
        for host, port in ports[:MAX_PORTS_PROBED]:
            url = f"http://{host}:{port}"
            endpoint = Endpoint(url, ServerClient(url, env_credentials(), self.timeout), pid=holder.pid)
            if self.ready(endpoint):
                return endpoint
            first = first or endpoint
            if endpoint.error_kind == "timeout":
                break  # a hung process: do not wait out the timeout on each of its ports
        return first  # type: ignore[return-value]  # ports is not empty

    def remote(self) -> list[Endpoint]:
        """Configured servers not found behind a local holder: asked too, since they may own a session."""
        return [e for e in self._configured if e.pid is None]

    def by_url(self, url: str | None) -> Endpoint | None:
        return next((e for e in [*self._by_pid.values(), *self._configured] if e.url == url), None)
