"""Human durations and sizes: "45s", "10m", "2h", "1h30m", "never"; "256MiB" (parsed by pydantic.ByteSize)."""

from __future__ import annotations

import math
import re
from decimal import Decimal

NEVER = math.inf

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds as a float; math.inf for "never". Bare numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value):
            raise ValueError(f"duration must not be negative: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r}")
    text = value.strip().lower().replace(" ", "")
    if text in ("never", "inf", "off"):
        return NEVER
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 45s, 10m, 2h, 1h30m or never)")
    return total


def format_duration(seconds: float) -> str:
    """Short human form: 2h, 1h30m, 45s, 0.5s, never."""
    if seconds == NEVER:
        return "never"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s".replace(".0s", "s")
    rest = int(round(seconds))
    if rest == 0:
        return "0s"
    counts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        counts.append((count, unit))
    first = next(i for i, (count, _unit) in enumerate(counts) if count)
    # The largest unit and the one right below it: 3h (not "3h2s"), 1d1h, 1m30s.
    return "".join(f"{count}{unit}" for count, unit in counts[first : first + 2] if count)


def duration_text(seconds: float) -> str:
    """Lossless, for config files: parse_duration(duration_text(x)) == x; 8110 → "2h15m10s", never."""
    if seconds == NEVER:
        return "never"
    whole = int(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count}{unit}")
    rest = whole + (seconds - int(seconds))
    if rest or not out:
        out.append(f"{_plain(rest)}s")
    text = "".join(out)
    # Float sums may differ in the last bit: fall back to plain seconds, which always parse back exactly.
    return text if parse_duration(text) == seconds else f"{_plain(seconds)}s"


def _plain(number: float) -> str:
    """Shortest exact decimal without an exponent (durations take no 1e-07): 30, 30.5, 0.0000001192."""
    return str(int(number)) if number == int(number) else format(Decimal(repr(number)), "f")


_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*([kmgtpe]i?b?|b)?\s*", re.IGNORECASE)
_SIZE_HELP = "use e.g. 256MiB, 1GiB, 500MB or a number of bytes"


def check_size(value: object) -> object:
    """Refuse what is not a size before pydantic's ByteSize converts it (it would take true as 1 byte)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"not a size: {value!r} ({_SIZE_HELP})")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"size must not be negative: {value!r}")
    if isinstance(value, str) and not _SIZE.fullmatch(value):
        raise ValueError(f"not a size: {value!r} ({_SIZE_HELP})")
    return value


def size_text(size: int) -> str:
    """Lossless and short: 268435456 → "256MiB", 2000000 → "2MB", 1000001 → "1000001B"."""
    exact = [f"{size}B"]
    for names, base in ((("KiB", "MiB", "GiB", "TiB"), 1024), (("kB", "MB", "GB", "TB"), 1000)):
        for power, name in enumerate(names, start=1):
            if size and size % base**power == 0:
                exact.append(f"{size // base**power}{name}")
    return min(exact, key=len)
