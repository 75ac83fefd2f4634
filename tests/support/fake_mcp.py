"""A tiny stdio MCP server that fails on purpose.

JSON-RPC 2.0 over newline-delimited stdin/stdout, as opencode's ``local`` MCP
client speaks it. It offers one tool, ``lookup`` ({query: string}); configured
as server ``ghost`` in opencode.json the model sees it as ``ghost_lookup``.

Usage: ``python fake_mcp.py <mode>`` where mode is

``exit-on-call``     exit as soon as ``tools/call`` arrives
                     (opencode: "MCP error -32000: Connection closed")
``exit-after-list``  exit right after answering ``tools/list``
                     (1.15.3: "Not connected" on call; 1.18.33 drops the tool)
``hang``             never answer ``tools/call``
``ok``               answer ``tools/call`` normally (the default)

It is run as a plain script by opencode, so it imports nothing from the tests.
"""

from __future__ import annotations

import json
import sys

TOOL = {
    "name": "lookup",
    "description": "Look something up.",
    "inputSchema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}


def send(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def answer(msg: dict, mode: str) -> bool:
    """Handle one message; return False to exit."""
    method, msg_id = msg.get("method"), msg.get("id")
    if msg_id is None:  # a notification (e.g. notifications/initialized): no reply
        return True
    if method == "initialize":
        version = (msg.get("params") or {}).get("protocolVersion", "2024-11-05")
        send(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "result": {
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "ghost", "version": "0.1.0"},
                },
            }
        )
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": msg_id, "result": {"tools": [TOOL]}})
        return mode != "exit-after-list"
    elif method == "tools/call":
        if mode == "exit-on-call":
            return False
        if mode == "hang":
            return True  # never answer, but keep reading so stdin EOF still ends us
        query = ((msg.get("params") or {}).get("arguments") or {}).get("query", "")
        send(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "result": {"content": [{"type": "text", "text": f"found: {query}"}]},
            }
        )
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": msg_id, "result": {}})
    else:
        send(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "error": {"code": -32601, "message": f"method not found: {method}"},
            }
        )
    return True


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if not answer(msg, mode):
            break


if __name__ == "__main__":
    main()
