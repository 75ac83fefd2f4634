"""A misbehaving stand-in for `opencode serve`: holds the DB open and answers its API badly.

Run as `opencode badserver.py DB MODE REQUEST_LOG` (argv[0] "opencode", so discovery takes it for
opencode); prints the port. Every request line is appended, raw, to REQUEST_LOG.

MODE: hang | trickle | garbage | 500 | html | wrong-json, or `health-ok-then-<mode>` (a healthy
`GET /global/health` answering version 1.15.3, then <mode> on every other route), or `busy:<sid>`
(a well-formed server that reports that session busy and accepts every action without freeing it), or
`busy-slow-abort:<sid>` (the same, but it never answers `POST …/abort`).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import threading
import time
from urllib.parse import urlsplit

HTML = b"<!doctype html><html><head><title>opencode</title></head><body></body></html>"


def answer(conn: socket.socket, status: str, body: bytes, ctype: str = "application/json") -> None:
    conn.sendall(
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )


def behave(conn: socket.socket, mode: str, path: str) -> None:
    if mode.startswith("health-ok-then-"):
        if path == "/global/health":
            return answer(conn, "200 OK", b'{"healthy":true,"version":"1.15.3"}')
        mode = mode.removeprefix("health-ok-then-")
    if mode.startswith("busy-slow-abort:"):
        if urlsplit(path).path.endswith("/abort"):
            time.sleep(3600)  # the answer to the abort never comes: the daemon is killed while it waits
            return None
        mode = "busy:" + mode.split(":", 1)[1]
    if mode.startswith("busy:"):
        sid = mode.split(":", 1)[1]
        route = urlsplit(path).path
        if route == "/global/health":
            return answer(conn, "200 OK", b'{"healthy":true,"version":"1.15.3"}')
        if route == "/session/status":
            return answer(conn, "200 OK", json.dumps({sid: {"type": "busy"}}).encode())
        if route in ("/question", "/permission"):
            return answer(conn, "200 OK", b"[]")
        if route.endswith("/unrevert"):
            return answer(conn, "409 Conflict", b'{"_tag":"SessionBusyError"}')
        return answer(conn, "200 OK", b"true")
    if mode == "hang":
        time.sleep(3600)
    elif mode == "trickle":  # never finishes the headers, one byte at a time: no single read ever times out
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:
            conn.sendall(b"a")
            time.sleep(0.2)
    elif mode == "garbage":
        conn.sendall(b"\x00\x01\xffnot http at all\r\n\r\n")
    elif mode == "500":
        answer(conn, "500 Internal Server Error", b'{"name":"UnknownError","data":{"message":"boom"}}')
    elif mode == "html":
        answer(conn, "200 OK", HTML, "text/html; charset=utf-8")
    elif mode == "wrong-json":
        body = {
            "/global/health": b'{"healthy":true,"version":"1.15.3"}',
            "/session/status": b'["busy"]',
            "/question": b'{"not":"a list"}',
            "/permission": b"5",
        }.get(urlsplit(path).path, b'"?"')
        answer(conn, "200 OK", body)


def serve(conn: socket.socket, mode: str, log: str) -> None:
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        with open(log, "a") as handle:
            handle.write(line + "\n")
        behave(conn, mode, line.split(" ")[1] if " " in line else "/")
    except OSError:
        pass
    finally:
        conn.close()


def main() -> None:
    db, mode, log = sys.argv[1:4]
    holder = sqlite3.connect(db)
    holder.execute("SELECT count(*) FROM part").fetchall()  # holds the DB open, like opencode
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, mode, log), daemon=True).start()


if __name__ == "__main__":
    main()
