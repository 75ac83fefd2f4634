"""Which loopback TCP ports a local process listens on (Linux /proc), to find opencode's API.

opencode leaves no pid or port file (reference internals §6): the only way to find the server
behind a DB holder is to match the holder's socket fds to LISTEN entries of /proc/net/tcp{,6}.
Only this process's network namespace is read: a port in another namespace is not reachable here.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import NamedTuple

_LISTEN = "0A"


class Listener(NamedTuple):
    """A LISTEN socket reachable over loopback, and the uid that owns it (the uid column of /proc/net/tcp)."""

    host: str
    port: int
    uid: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _decode_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def connect_host(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The host to reach a listener bound to `address` from here, or None when not via loopback."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:  # bound to every interface, loopback included
        return "127.0.0.1" if address.version == 4 else "[::1]"
    if address.is_loopback:
        return str(address) if address.version == 4 else f"[{address}]"
    return None


def parse_listeners(text: str) -> dict[int, Listener]:
    """Socket inode -> Listener for LISTEN entries reachable over loopback, from /proc/net/tcp{,6} text."""
    out: dict[int, Listener] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        try:
            hex_addr, hex_port = fields[1].split(":")
            host = connect_host(_decode_address(hex_addr))
            inode = int(fields[9])
            port = int(hex_port, 16)
            uid = int(fields[7])
        except ValueError:
            continue
        if host is not None and inode:
            out[inode] = Listener(host, port, uid)
    return out


def socket_inodes(pid: int, proc: Path = Path("/proc")) -> set[int]:
    inodes = set()
    try:
        entries = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[8:-1]))
    return inodes


def _listen_table(proc: Path) -> dict[int, Listener]:
    """Socket inode -> Listener for every LISTEN socket reachable over loopback in this network namespace."""
    table: dict[int, Listener] = {}
    for name in ("tcp", "tcp6"):
        try:
            table.update(parse_listeners((proc / "net" / name).read_text()))
        except OSError:
            continue
    return table


def loopback_listeners(pids: list[int], proc: Path = Path("/proc")) -> dict[int, list[Listener]]:
    """For each pid, the sockets it listens on that this process can reach over loopback."""
    table = _listen_table(proc)
    return {
        pid: sorted({table[i] for i in socket_inodes(pid, proc) if i in table}, key=lambda hp: hp[1])
        for pid in pids
    }


def port_listeners(port: int, proc: Path = Path("/proc")) -> list[Listener]:
    """Who listens on loopback `port` here (IPv4 and IPv6), each with its socket's owner uid."""
    return sorted({listener for listener in _listen_table(proc).values() if listener.port == port})


def fds_readable(pid: int, proc: Path = Path("/proc")) -> bool | None:
    """Whether the process's fds can be listed; None when it is gone."""
    try:
        os.listdir(proc / str(pid) / "fd")
    except PermissionError:
        return False
    except OSError:
        return None
    return True
