"""Rendering for people: one line per record, hostile strings neutralised."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# C0/C1 controls (terminal escapes, newlines), line/paragraph separators, bidi controls, lone surrogates.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def safe(value: object, limit: int = 200) -> str:
    """Printable, single-line, bounded: ids, titles and paths come from a DB others write."""
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def local(moment: datetime) -> datetime:
    """`moment` in the local zone, or in UTC when that zone cannot be held by datetime (POSIX TZ allows
    offsets up to 24 h, e.g. TZ=UTC+24; datetime less than 24 h): a time shown must never fail a pass."""
    try:
        return moment.astimezone()
    except (ValueError, OverflowError, OSError):
        return moment.astimezone(UTC)


def when(moment: datetime | None) -> str:
    return local(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def when_iso(value: str | None) -> str:
    """`when` for a time a record or the status file carries as ISO 8601 text."""
    return when(datetime.fromisoformat(value)) if value else "-"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    cells = [[safe(c, 80) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    return "\n".join(lines)
