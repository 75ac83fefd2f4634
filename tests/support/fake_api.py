"""A stdlib HTTP server that answers the routes the watchdog uses the way opencode 1.15.3 or 1.18.33 does.

What it imitates (reference opencode-behaviour.md §2-§5, internals §2):

* busy: `400 {"_tag":"BadRequest"}` on 1.15, `409 SessionBusyError` on 1.18, from the gated `unrevert`;
* unknown routes: `200` + the web UI's HTML (both versions, SPA fallback);
* reject of an unknown question id: `200 true` on 1.15, `404 QuestionNotFoundError` on 1.18;
* directory scoping: status, questions and permissions are per `?directory=`; on 1.15 an abort with
  the wrong directory answers `true` and does nothing, on 1.18 the session's own directory wins;
* abort leaks the question; reject and dispose remove it;
* Basic auth when a password is set (`401` otherwise).

With `db` set, reject/abort/PATCH write the part and message rows as opencode does, so the
watchdog's read-back sees a real row. `mode` breaks every answer: "html", "garbage", "500", "hang".
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

HTML = b'<!doctype html>\n<html lang="en"><head><title>opencode</title></head><body></body></html>'
SERVER_CWD = "/srv/opencode-cwd"


class FakeAPI:
    def __init__(self, version: str = "1.15.3", *, password: str | None = None, db: Path | None = None):
        self.version = version
        self.password = password
        self.db = db
        self.sessions: dict[str, dict[str, Any]] = {}  # id -> {directory, busy, revert}
        self.questions: list[dict[str, Any]] = []
        self.permissions: list[dict[str, Any]] = []
        self.parts: dict[
            str, tuple[str, str]
        ] = {}  # session id -> (message id, part id) of its live tool part
        self.mode: str | None = None
        self.abort_frees = True  # False: abort answers true and the session stays busy (a wedged runner)
        self.hide_status = False  # True: /session/status says idle while the runner is busy (internals §1.3)
        # What a reject leaves in the part; a test may make it an answer that raced the reject.
        self.reject_state: dict[str, Any] = {"status": "error", "error": "The user dismissed this question"}
        # "hang": an answer comes only after `hang_s` or once the server closes, whichever is first, so a client
        # that did not give up on its own timeout shows up as a hung answer (`hung_answers`), however slow the machine.
        self.hang_s = 60.0
        self.hung_answers = 0
        self._closing = threading.Event()
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.api = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "FakeAPI":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- state helpers -------------------------------------------------------------------------
    def add_session(self, sid: str, directory: str, *, busy: bool = True, revert: Any = None) -> None:
        self.sessions[sid] = {"directory": directory, "busy": busy, "revert": revert}

    def add_question(self, sid: str, message_id: str, call_id: str, qid: str = "que_fake1") -> str:
        self.questions.append(
            {
                "id": qid,
                "sessionID": sid,
                "questions": [{"question": "?", "header": "h", "options": []}],
                "tool": {"messageID": message_id, "callID": call_id},
            }
        )
        return qid

    def calls(self, method: str | None = None, path_part: str = "") -> list[tuple[str, str, dict, dict]]:
        with self.lock:
            return [r for r in self.requests if (method is None or r[0] == method) and path_part in r[1]]

    # -- opencode-like writes ------------------------------------------------------------------
    def _write_part(self, sid: str, state_update: dict, message_update: dict) -> None:
        if self.db is None or sid not in self.parts:
            return
        mid, pid = self.parts[sid]
        now = int(time.time() * 1000)
        with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as conn, conn:
            (data,) = conn.execute("SELECT data FROM part WHERE id=?", (pid,)).fetchone()
            part = json.loads(data)
            if part["state"]["status"] in ("running", "pending"):
                state = {**part["state"], **state_update}
                state["time"] = {"start": part["state"].get("time", {}).get("start", now), "end": now}
                part["state"] = state
                conn.execute("UPDATE part SET data=?, time_updated=? WHERE id=?", (_dump(part), now, pid))
            (mdata,) = conn.execute("SELECT data FROM message WHERE id=?", (mid,)).fetchone()
            message = json.loads(mdata)
            if not message.get("time", {}).get("completed"):
                message.update(message_update)
                message["time"] = {**message.get("time", {}), "completed": now}
                conn.execute(
                    "UPDATE message SET data=?, time_updated=? WHERE id=?", (_dump(message), now, mid)
                )

    def patch_part(self, part: dict) -> None:
        if self.db is None:
            return
        data = {k: v for k, v in part.items() if k not in ("id", "sessionID", "messageID")}
        with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as conn, conn:
            conn.execute(
                "UPDATE part SET data=?, time_updated=? WHERE id=?",
                (_dump(data), int(time.time() * 1000), part["id"]),
            )


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def api(self) -> FakeAPI:
        return self.server.api  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    # -- answers -------------------------------------------------------------------------------
    def _send(
        self, status: int, body: Any = None, *, raw: bytes | None = None, ctype: str = "application/json"
    ) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Secure Area"')
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        api = self.api
        if not api.password:
            return True
        expected = "Basic " + base64.b64encode(f"opencode:{api.password}".encode()).decode()
        return self.headers.get("Authorization") == expected

    def _handle(self, method: str) -> None:
        api = self.api
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with api.lock:
            api.requests.append((method, url.path, query, dict(self.headers)))
        if not self._authorized():
            return self._send(401, raw=b"Unauthorized", ctype="text/plain")
        if api.mode == "hang":
            if not api._closing.wait(api.hang_s):
                with api.lock:
                    api.hung_answers += 1
            return self._send(200, True)
        if api.mode == "html":
            return self._send(200, raw=HTML, ctype="text/html")
        if api.mode == "garbage":
            return self._send(200, raw=b'{"healthy": tru', ctype="application/json")
        if api.mode == "500":
            return self._send(500, raw=b"Internal Server Error", ctype="text/plain")
        directory = query.get("directory", SERVER_CWD)
        with api.lock:
            answer = self._route(method, url.path.rstrip("/").split("/")[1:], directory, body)
        if answer is None:
            return self._send(200, raw=HTML, ctype="text/html")  # SPA fallback, both versions
        self._send(*answer)

    def _route(self, method: str, path: list[str], directory: str, body: Any) -> tuple[int, Any] | None:
        api = self.api
        new = api.version != "1.15.3"
        match (method, path):
            case ("GET", ["global", "health"]):
                return 200, {"healthy": True, "version": api.version}
            case ("GET", ["session", "status"]):
                return 200, {
                    sid: {"type": "busy"}
                    for sid, s in api.sessions.items()
                    if s["busy"] and s["directory"] == directory and not api.hide_status
                }
            case ("GET", ["question"]):
                return 200, [
                    q
                    for q in api.questions
                    if api.sessions.get(q["sessionID"], {}).get("directory") == directory
                ]
            case ("GET", ["permission"]):
                return 200, [
                    p
                    for p in api.permissions
                    if api.sessions.get(p["sessionID"], {}).get("directory") == directory
                ]
            case ("GET", ["session", sid]):
                if sid not in api.sessions:
                    return 404, {"name": "NotFoundError", "data": {"message": f"Session not found: {sid}"}}
                s = api.sessions[sid]
                return 200, {
                    "id": sid,
                    "directory": s["directory"],
                    "version": api.version,
                    **({"revert": s["revert"]} if s["revert"] else {}),
                }
            case ("POST", ["session", sid, "unrevert"]):
                if sid not in api.sessions:
                    return 404, {"name": "NotFoundError", "data": {"message": f"Session not found: {sid}"}}
                s = api.sessions[sid]
                if s["busy"] and (new or s["directory"] == directory):
                    return (
                        (
                            409,
                            {
                                "_tag": "SessionBusyError",
                                "sessionID": sid,
                                "message": f"Session is busy: {sid}",
                            },
                        )
                        if new
                        else (400, {"_tag": "BadRequest"})
                    )
                return 200, {"id": sid, "directory": s["directory"]}
            case ("POST", ["session", sid, "abort"]):
                s = api.sessions.get(sid)
                if s and s["busy"] and api.abort_frees and (new or s["directory"] == directory):
                    s["busy"] = False
                    api._write_part(
                        sid,
                        {
                            "status": "error",
                            "error": "Tool execution aborted",
                            "metadata": {"interrupted": True},
                        },
                        {"error": {"name": "MessageAbortedError", "data": {"message": "Aborted"}}},
                    )
                return 200, True  # always, even when it did nothing
            case ("POST", ["question", qid, "reject"]):
                found = [
                    q
                    for q in api.questions
                    if q["id"] == qid and api.sessions.get(q["sessionID"], {}).get("directory") == directory
                ]
                if not found:
                    return (
                        (
                            404,
                            {
                                "_tag": "QuestionNotFoundError",
                                "requestID": qid,
                                "message": f"Question request not found: {qid}",
                            },
                        )
                        if new
                        else (200, True)
                    )
                api.questions.remove(found[0])
                s = api.sessions.get(found[0]["sessionID"])
                if s and s["busy"]:
                    s["busy"] = False
                    api._write_part(found[0]["sessionID"], api.reject_state, {"finish": "tool-calls"})
                return 200, True
            case ("POST", ["instance", "dispose"]):
                for sid, s in api.sessions.items():
                    if s["directory"] == directory and s["busy"]:
                        s["busy"] = False
                        api._write_part(
                            sid,
                            {
                                "status": "error",
                                "error": "Tool execution aborted",
                                "metadata": {"interrupted": True},
                            },
                            {"error": {"name": "MessageAbortedError", "data": {"message": "Aborted"}}},
                        )
                api.questions = [
                    q
                    for q in api.questions
                    if api.sessions.get(q["sessionID"], {}).get("directory") != directory
                ]
                return 200, True
            case ("PATCH", ["session", sid, "message", mid, "part", pid]):
                if (
                    not isinstance(body, dict)
                    or body.get("id") != pid
                    or body.get("sessionID") != sid
                    or body.get("messageID") != mid
                ):
                    return 400, {"_tag": "BadRequest"}
                api.patch_part(body)
                return 200, body
        return None
