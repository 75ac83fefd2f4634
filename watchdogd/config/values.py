"""The value types of the configuration: bounded durations and sizes, listen addresses, default paths."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ByteSize, PlainSerializer

from watchdogd.durations import check_size, duration_text, parse_duration, size_text

ENV_PREFIX = "OPENCODE_WATCHDOGD_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

# Shown (config show, JSON) in the form a config file takes back, without loss: "2h15m10s", "256MiB".
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(duration_text, when_used="json")]


def _within(low: float, high: float, never: bool = False) -> AfterValidator:
    """A duration bound: finite and in [low, high] ("never" too when `never`), else one line with the range."""

    def check(seconds: float) -> float:
        if never and seconds == math.inf:
            return seconds
        if not (low <= seconds <= high):  # also NaN
            shown = "never" if seconds == math.inf else duration_text(seconds)
            accepted = f"from {duration_text(low)} to {duration_text(high)}" + (", or never" if never else "")
            raise ValueError(f"{shown} is out of range (accepted: {accepted})")
        return seconds

    return AfterValidator(check)


DAY = 86400.0
# Bounded so that every use is safe: a timer can be armed, a deadline (now + it) fits a datetime.
Interval = Annotated[Duration, _within(1.0, DAY)]  # the poll
Debounce = Annotated[Duration, _within(0.0, 600.0)]
RescanInterval = Annotated[Duration, _within(60.0, 7 * DAY)]
Grace = Annotated[Duration, _within(0.0, 30 * DAY)]
Threshold = Annotated[Duration, _within(0.0, 3650 * DAY, never=True)]  # "never": the tool is never expired
Timeout = Annotated[Duration, _within(0.1, 600.0)]
Retention = Annotated[Duration, _within(DAY, 3650 * DAY, never=True)]  # "never": the journal is never pruned
Size = Annotated[ByteSize, BeforeValidator(check_size), PlainSerializer(size_text, when_used="json")]


class ConfigError(Exception):
    """A user error in configuration: one line, no traceback."""


@dataclass(frozen=True)
class ListenAddress:
    host: str  # as given to bind(): an IP address, or "localhost"
    port: int

    @property
    def loopback(self) -> bool:
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback


def parse_listen(value: str) -> ListenAddress:
    """ "127.0.0.1:9464", "[::1]:9464", "localhost:9464" or "0.0.0.0:9464"; raise ValueError in one line."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen {value!r}: expected HOST:PORT with a port from 1 to 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"listen {value!r}: the host must be an IP address or localhost") from None
    return ListenAddress(host, int(port))


def _xdg(name: str, fallback: str) -> Path:
    value = os.environ.get(name)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "opencode-watchdogd" / "config.toml"


def default_state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "opencode-watchdogd"
