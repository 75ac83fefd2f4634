"""The only code that speaks HTTP to opencode: one small client per server, typed answers.

Bodies of actions are never trusted (1.15 answers `true` to an abort that did nothing and to a
reject of an unknown id); callers verify through `busy_sessions` and `probe_idle`. Every call that
touches a session passes `?directory=<session.directory>`: instances are per directory (reference
§2.4), and a wrong one answers "idle" or, on 1.15, acts on nothing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

# Refusals of a busy-gated route: 1.15 `400 {"_tag":"BadRequest"}`, 1.18 `409 SessionBusyError`,
# 1.14 `400 UnknownError` (docs/opencode.md). Any 400 or 409 there means "still busy".
BUSY_STATUSES = (400, 409)
MAX_BODY = 16 * 1024 * 1024  # far above any real answer (question lists, session maps)


class ServerError(Exception):
    """A request without a usable answer. `kind`: unreachable, timeout, auth, route-missing, bad-answer, http."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_reason(url: str, allow_insecure_remote: bool) -> str | None:
    """Why `url` must not be used (plain http to another host carries the password in clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url}"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname) and not allow_insecure_remote:
        return (
            f"plain http to the non-loopback host {parts.hostname} needs live.allow_insecure_remote = true "
            "(or use https)"
        )
    return None


def _looks_html(response: httpx.Response) -> bool:
    # 1.15 answers unknown routes with its web UI (an SPA fallback), status 200.
    if "html" in response.headers.get("content-type", ""):
        return True
    return response.content.lstrip()[:1] == b"<"


def _segment(value: str) -> str:
    """An id (from the DB or a server's answer) as ONE path segment: '/', '?', '#' and dot-segments encoded,
    so a crafted id such as `x/../../instance/dispose` can never reach another route."""
    quoted = quote(str(value), safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


class ServerClient:
    """One opencode server. Credentials go only to this base URL; redirects are never followed."""

    def __init__(
        self,
        url: str,
        credentials: Credentials | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.version: str | None = None
        auth = httpx.BasicAuth(credentials.username, credentials.password) if credentials else None
        # trust_env=False: no proxy from the environment ever sees the credentials or the traffic.
        # No keep-alive: nothing stays open between passes, and no client needs closing.
        self._http = httpx.Client(
            base_url=self.url,
            auth=auth,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def __repr__(self) -> str:
        return f"ServerClient({self.url})"

    # -- plumbing ------------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, directory: str | None = None, body: Any = None
    ) -> httpx.Response:
        params = {"directory": directory} if directory else None
        what = f"{method} {path}"
        # httpx's timeouts bound each socket operation, so a server that trickles a byte at a time would hold
        # the pass for ever: the whole request also gets a deadline, past which its socket is shut down.
        sockets: list[socket.socket] = []
        expired = threading.Event()

        def trace(event: str, info: dict) -> None:
            if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
                sock = info["return_value"].get_extra_info("socket")
                if sock is not None:
                    sockets.append(sock)

        def cut() -> None:
            expired.set()
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        deadline = threading.Timer(self.timeout, cut)
        deadline.daemon = True
        deadline.start()
        try:
            response = self._read_bounded(method, path, params, body, trace, what)
        except httpx.TimeoutException:
            raise ServerError("timeout", f"{what}: no answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            if expired.is_set():
                raise ServerError("timeout", f"{what}: no answer within {self.timeout:g}s") from None
            raise ServerError("unreachable", f"{what}: {type(exc).__name__}") from None
        finally:
            deadline.cancel()
        if response.status_code == 401:
            raise ServerError("auth", f"{what}: 401, auth needed")
        return response

    def _read_bounded(self, method: str, path: str, params, body, trace, what: str) -> httpx.Response:
        """The response, its body read whole but never past MAX_BODY: a lying server cannot fill our memory."""
        with self._http.stream(
            method, path, params=params, json=body, extensions={"trace": trace}
        ) as streamed:
            content = bytearray()
            for chunk in streamed.iter_bytes():  # decoded, so a compressed bomb is bounded too
                content += chunk
                if len(content) > MAX_BODY:
                    raise ServerError("bad-answer", f"{what}: answer larger than {MAX_BODY // 1048576} MiB")
        headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(
            streamed.status_code, headers=headers, content=bytes(content), request=streamed.request
        )

    def _json(self, response: httpx.Response, expect: type) -> Any:
        what = f"{response.request.method} {response.request.url.path}"
        if _looks_html(response):
            raise ServerError(
                "route-missing", f"{what}: HTML instead of JSON (no such route on this version)"
            )
        if response.status_code >= 300:
            raise ServerError("http", f"{what}: HTTP {response.status_code}")
        try:
            value = response.json()
        except (ValueError, UnicodeDecodeError):
            raise ServerError("bad-answer", f"{what}: not JSON") from None
        if not isinstance(value, expect):
            raise ServerError("bad-answer", f"{what}: unexpected JSON {type(value).__name__}")
        return value

    def _ok(self, response: httpx.Response) -> None:
        """An action was accepted (its body says nothing we can trust)."""
        what = f"{response.request.method} {response.request.url.path}"
        if _looks_html(response):
            raise ServerError(
                "route-missing", f"{what}: HTML instead of JSON (no such route on this version)"
            )
        if response.status_code >= 300:
            raise ServerError("http", f"{what}: HTTP {response.status_code}")

    # -- reads ---------------------------------------------------------------------------------
    def health(self) -> str:
        """The server's version; also proves it is an opencode API."""
        value = self._json(self._request("GET", "/global/health"), dict)
        version = value.get("version")
        if value.get("healthy") is not True or not isinstance(version, str):
            raise ServerError("bad-answer", "GET /global/health: not an opencode health answer")
        self.version = version[:40]  # it goes into logs and the journal
        return version

    def busy_sessions(self, directory: str) -> dict[str, str]:
        """Session id -> status type ("busy", "retry") in that directory; idle sessions are absent."""
        value = self._json(self._request("GET", "/session/status", directory), dict)
        out = {}
        for sid, status in value.items():
            kind = status.get("type") if isinstance(status, dict) else None
            out[str(sid)] = kind if isinstance(kind, str) else "unknown"
        return out

    def session(self, session_id: str, directory: str) -> dict | None:
        response = self._request("GET", f"/session/{_segment(session_id)}", directory)
        if response.status_code == 404 and not _looks_html(response):
            return None
        return self._json(response, dict)

    def questions(self, directory: str) -> list[dict]:
        return [
            q for q in self._json(self._request("GET", "/question", directory), list) if isinstance(q, dict)
        ]

    def permissions(self, directory: str) -> list[dict]:
        return [
            p for p in self._json(self._request("GET", "/permission", directory), list) if isinstance(p, dict)
        ]

    # -- actions -------------------------------------------------------------------------------
    def reject_question(self, request_id: str, directory: str) -> None:
        response = self._request("POST", f"/question/{_segment(request_id)}/reject", directory)
        if response.status_code == 404 and not _looks_html(response):
            return  # 1.18: already gone; 1.15 says `200 true` either way
        self._ok(response)

    def abort(self, session_id: str, directory: str) -> None:
        self._ok(self._request("POST", f"/session/{_segment(session_id)}/abort", directory))

    def dispose(self, directory: str) -> None:
        self._ok(self._request("POST", "/instance/dispose", directory))

    def probe_idle(self, session_id: str, directory: str) -> bool:
        """The busy-gated no-op: `unrevert` of a session without `revert` changes nothing when idle.

        True: not refused (idle). False: refused as busy. Call it only when `revert` is unset.
        """
        response = self._request("POST", f"/session/{_segment(session_id)}/unrevert", directory)
        if response.status_code in BUSY_STATUSES:
            return False
        self._json(response, dict)
        return True

    def patch_part(self, session_id: str, message_id: str, part_id: str, part: dict, directory: str) -> dict:
        """Rewrite a part through the server (bus event, and the 1.18 event log stays consistent)."""
        body = {**part, "id": part_id, "sessionID": session_id, "messageID": message_id}
        path = f"/session/{_segment(session_id)}/message/{_segment(message_id)}/part/{_segment(part_id)}"
        return self._json(self._request("PATCH", path, directory, body), dict)


def describe_error(exc: ServerError, url: str) -> str:
    """One line for reports and logs; for a 401, the setting that fixes it."""
    if exc.kind == "auth":
        return (
            f"auth needed at {url}: set OPENCODE_SERVER_PASSWORD (and OPENCODE_SERVER_USERNAME if not "
            f"'opencode') in the daemon's environment, or add [[servers]] url = \"{url}\" with password_file"
        )
    return f"{url}: {exc}"
