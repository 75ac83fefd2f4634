"""A test-side freedesktop notification server on a private session bus (`dbus-run-session`).

Run under `dbus-run-session`, it writes the bus address to `--address-file`, then (mode `record`) owns
`org.freedesktop.Notifications` and appends every `Notify` call as one JSON line to `--record`, answering
with a fresh id; mode `hang` owns the name and never answers; mode `absent` owns nothing (a bus without
a notification server). The bus lives as long as this process.

    python -m tests.support.notification_server --mode record --record calls.jsonl --address-file addr
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from jeepney import MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"
NOTIFY_FIELDS = (
    "app_name",
    "replaces_id",
    "app_icon",
    "summary",
    "body",
    "actions",
    "hints",
    "expire_timeout",
)


def serve(mode: str, record: Path | None) -> None:
    conn = open_dbus_connection(bus="SESSION")
    if mode != "absent":
        reply = conn.send_and_get_reply(message_bus.RequestName(NAME, 4), timeout=10)  # 4: do not queue
        assert reply.body[0] == 1, f"could not own {NAME}: {reply.body}"
    print("ready", flush=True)
    ids = itertools.count(1)
    while True:
        msg = conn.receive()
        header = msg.header
        if header.message_type is not MessageType.method_call or mode == "hang":
            continue
        member = header.fields.get(3)  # HeaderFields.member
        if member == "Notify":
            call = dict(zip(NOTIFY_FIELDS, msg.body, strict=False))
            call["hints"] = {key: value[1] for key, value in call["hints"].items()}
            notice_id = call["replaces_id"] or next(ids)
            call["id"], call["at"] = notice_id, time.time()
            with open(record, "a") as handle:
                handle.write(json.dumps(call) + "\n")
            conn.send(new_method_return(msg, "u", (notice_id,)))
        elif member == "GetServerInformation":
            conn.send(new_method_return(msg, "ssss", ("test-notifications", "tests", "1", "1.2")))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


class NotificationBus:
    """`dbus-run-session` running this module: a private session bus and (per mode) a notification server."""

    def __init__(self, folder: Path, mode: str = "record"):
        if shutil.which("dbus-run-session") is None:
            raise RuntimeError("dbus-run-session is missing (Debian package dbus)")
        folder.mkdir(parents=True, exist_ok=True)
        self.record = folder / "notifications.jsonl"
        self.record.touch()
        address_file = folder / "bus-address"
        args = [
            "dbus-run-session",
            "--",
            sys.executable,
            "-m",
            "tests.support.notification_server",
            "--mode",
            mode,
            "--record",
            str(self.record),
            "--address-file",
            str(address_file),
        ]
        root = Path(__file__).resolve().parents[2]
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"} | {
            "PYTHONPATH": str(root)
        }
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, text=True, env=env, cwd=root, start_new_session=True
        )
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"notification server did not start ({line!r}, exit {self.proc.poll()})"
        self.address = address_file.read_text().strip()

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        """End the bus itself (the whole `dbus-run-session` group): a bus that vanishes."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["record", "hang", "absent"], default="record")
    parser.add_argument("--record", type=Path)
    parser.add_argument("--address-file", type=Path, required=True)
    args = parser.parse_args()
    args.address_file.write_text(os.environ["DBUS_SESSION_BUS_ADDRESS"])
    serve(args.mode, args.record)


if __name__ == "__main__":
    main()
