"""A tiny OpenAI-compatible fake model that opencode can talk to.

opencode's ``@ai-sdk/openai-compatible`` provider POSTs streaming requests to
``<baseURL>/chat/completions``. Requests without ``tools`` are helper calls (the
title generator) and get a plain text reply. Agent requests are scripted by a
marker in the last user message text::

    SCRIPT:<step>,<step>,...   [CHILD:<prompt for a task subagent>]

Each step is one assistant turn. The turn index is the number of assistant
messages with ``tool_calls`` after the last user message, so the script
advances each time a tool result comes back. Steps:

``question``  call the ``question`` tool (header "Colour", options Red/Blue)
``mcp``       call the MCP tool ``ghost_lookup`` with ``{"query": "anything"}``
``hang``      send the first chunk, then keep the stream open without data until
              :meth:`FakeModel.release_hangs`, :meth:`FakeModel.stop` or a
              client disconnect
``task``      call ``task`` for a ``general`` subagent whose prompt is the text
              after ``CHILD:`` (the child's request has only system+user, so the
              same parsing applies to it)
``text``      plain text, finish ``stop``
``a+b``       several tool calls in one turn (e.g. ``mcp+question``), which opencode runs side by side

Once the script is exhausted the model answers "done" with finish ``stop``.

Run standalone with ``python -m tests.support.fake_model [port]``.
"""

from __future__ import annotations

import json
import re
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

QUESTION_ARGS = {
    "questions": [
        {
            "question": "Which colour should the widget be?",
            "header": "Colour",
            "options": [
                {"label": "Red", "description": "A red widget"},
                {"label": "Blue", "description": "A blue widget"},
            ],
        }
    ]
}
MCP_TOOL = "ghost_lookup"
MCP_ARGS = {"query": "anything"}
TASK_DESCRIPTION = "ask the colour"

_SCRIPT_RE = re.compile(r"SCRIPT:([A-Za-z_,+-]+)")
_CHILD_RE = re.compile(r"CHILD:(.*)\Z", re.S)


def message_text(message: dict[str, Any]) -> str:
    """Text of a chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def plan_turn(body: dict[str, Any]) -> tuple[str, str]:
    """Return (step, child_prompt) for an agent request; step "done" when exhausted."""
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if last_user < 0:
        return "done", ""
    text = message_text(messages[last_user])
    match = _SCRIPT_RE.search(text)
    if not match:
        return "done", ""
    steps = [s for s in match.group(1).split(",") if s]
    turn = sum(1 for m in messages[last_user + 1 :] if m.get("role") == "assistant" and m.get("tool_calls"))
    child = _CHILD_RE.search(text)
    step = steps[turn] if turn < len(steps) else "done"
    return step, child.group(1).strip() if child else ""


# The tool call each scripted step makes: (tool name, arguments) from the child prompt.
_TOOL_CALLS = {
    "question": lambda child: ("question", QUESTION_ARGS),
    "mcp": lambda child: (MCP_TOOL, MCP_ARGS),
    "task": lambda child: (
        "task",
        {"description": TASK_DESCRIPTION, "prompt": child, "subagent_type": "general"},
    ),
}


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    # HTTP/1.0: the end of the SSE stream is the connection close, no chunking needed.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": "not found"})
            return
        body = json.loads(self._read_body() or b"{}")
        model: FakeModel = self.server.model
        with model.lock:
            model.requests.append(body)
        if not body.get("tools"):
            self._reply(body, text="Fake session title")
            return
        step, child = plan_turn(body)
        calls = [_TOOL_CALLS[name](child) for name in step.split("+") if name in _TOOL_CALLS]
        if calls:
            self._reply(body, tools=calls)
        elif step == "hang":
            self._hang()
        elif step == "text":
            self._reply(body, text="text step")
        else:
            self._reply(body, text="done")

    # -- responses ---------------------------------------------------------

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict:
        chunk: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "m",
            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        chunk.update(extra)
        return chunk

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

    def _send(self, event: dict | str) -> None:
        data = event if isinstance(event, str) else json.dumps(event)
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _reply(
        self, body: dict, text: str | None = None, tools: list[tuple[str, dict]] | None = None
    ) -> None:
        if not body.get("stream"):
            self._json(200, self._completion(text, tools))
            return
        self._start_sse()
        self._send(self._chunk({"role": "assistant", "content": None}))
        if tools:
            for index, (name, args) in enumerate(tools):
                call_id = self.server.model.next_call_id()
                head = {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                self._send(self._chunk({"tool_calls": [head]}))
                tail = {"index": index, "function": {"arguments": json.dumps(args)}}
                self._send(self._chunk({"tool_calls": [tail]}))
            self._send(self._chunk({}, "tool_calls"))
        else:
            self._send(self._chunk({"content": text}))
            self._send(self._chunk({}, "stop"))
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        self._send(self._chunk(None, usage=usage))
        self._send("[DONE]")

    def _completion(self, text: str | None, tools: list[tuple[str, dict]] | None) -> dict:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tools:
            message["tool_calls"] = [
                {
                    "id": self.server.model.next_call_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for name, args in tools
            ]
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tools else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def _hang(self) -> None:
        """Open the stream, then stay silent until released or the client goes away."""
        model: FakeModel = self.server.model
        self._start_sse()
        self._send(self._chunk({"role": "assistant", "content": None}))
        with model.lock:
            model.hanging += 1
        try:
            while not model.release.wait(0.2):
                # Readable with no data pending means the peer closed (e.g. an abort).
                readable, _, _ = select.select([self.connection], [], [], 0)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    return
            # Released: end the turn cleanly so the session can finish normally.
            self._send(self._chunk({"content": "released"}))
            self._send(self._chunk({}, "stop"))
            self._send("[DONE]")
        except OSError:
            pass  # the client or the server went away meanwhile
        finally:
            with model.lock:
                model.hanging -= 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    model: "FakeModel"


class FakeModel:
    """The fake model server; use as a context manager or call start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []  # every request body, in arrival order
        self.release = threading.Event()  # set to end every `hang` stream
        self.hanging = 0  # streams currently held open by `hang`
        self.lock = threading.Lock()
        self._calls = 0
        self._httpd = _Server((host, port), _Handler)
        self._httpd.model = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The provider baseURL for opencode.json (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def agent_requests(self) -> list[dict[str, Any]]:
        """Requests that offered tools (agent turns), excluding title calls."""
        with self.lock:
            return [r for r in self.requests if r.get("tools")]

    @staticmethod
    def tool_names(request: dict[str, Any]) -> list[str]:
        return sorted(t.get("function", {}).get("name", "") for t in request.get("tools") or [])

    def next_call_id(self) -> str:
        with self.lock:
            self._calls += 1
            return f"call_fake_{self._calls}"

    def release_hangs(self) -> None:
        self.release.set()

    def reset(self) -> None:
        """Forget recorded requests and re-arm `hang` (for a session-scoped server)."""
        with self.lock:
            self.requests.clear()
        self.release.clear()

    def start(self) -> "FakeModel":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-model", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> "FakeModel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    model = FakeModel(port=int(argv[0]) if argv else 0).start()
    print(f"fake model listening on {model.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        model.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
