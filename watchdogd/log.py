"""structlog setup: one line per record on stderr, in the form its reader expects.

- journald (systemd sets `JOURNAL_STREAM` to stderr's `dev:ino`): readable text, no timestamp (the
  journal stamps each line), each line prefixed with its syslog priority `<3>`…`<7>` so that
  `journalctl -p warning` selects by level.
- a terminal: readable text in colour, unless `NO_COLOR` is set (https://no-color.org) or TERM=dumb.
- anything else (cron mail, a pipe, a file): the same readable text, without colour.
- JSON lines only when asked (`log_format = "json"`); under journald they carry the prefix too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import PurePath

import structlog

from watchdogd.present.text import safe

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
ORDER = list(LEVELS)
# syslog priorities (sd-daemon(3)): what journald reads from a `<N>` line prefix.
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def effective_level(configured: str, verbose: int = 0, quiet: int = 0) -> str:
    index = min(max(ORDER.index(configured) - verbose + quiet, 0), len(ORDER) - 1)
    return ORDER[index]


VALUE_LIMIT = 2000  # characters of one logged value (ids and paths come from a DB others write)
TRACEBACK_LIMIT = 20000


def readable(value):
    """Values as a reader wants them: ISO 8601 times, plain paths and enum values, never a repr()."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return value


def _clean(value, limit: int):
    value = readable(value)
    if isinstance(value, str):
        return safe(value, limit)
    if isinstance(value, (list, tuple)):
        return [_clean(item, limit) for item in value]
    if isinstance(value, dict):
        return {safe(key, 200): _clean(item, limit) for key, item in value.items()}
    return value


def neutralise(_logger, _method: str, event_dict: dict) -> dict:
    """One printable, bounded line per record, in both renderers: control characters (terminal escapes,
    newlines, bidi overrides) in any value, the event and tracebacks included, become visible `\\xNN`."""
    return {
        safe(key, 200): _clean(value, TRACEBACK_LIMIT if key == "exception" else VALUE_LIMIT)
        for key, value in event_dict.items()
    }


def on_journal(stream, env=os.environ) -> bool:
    """True when `stream` is the journald stream systemd connected (JOURNAL_STREAM names its dev:ino)."""
    try:
        dev, ino = (int(part) for part in env.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def wants_colour(stream, env=os.environ) -> bool:
    if "NO_COLOR" in env and env["NO_COLOR"] != "":
        return False
    try:
        return stream.isatty() and env.get("TERM") != "dumb"
    except (ValueError, AttributeError):
        return False


class WithPriority:
    """Wraps a renderer: every output line starts with the record's syslog priority."""

    def __init__(self, renderer) -> None:
        self.renderer = renderer

    def __call__(self, logger, method: str, event_dict: dict) -> str:
        prefix = f"<{PRIORITIES.get(event_dict.get('level', method), 6)}>"
        text = self.renderer(logger, method, event_dict)
        return "\n".join(prefix + line for line in text.split("\n"))


def _renderer(fmt: str, journal: bool, colour: bool):
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=json.dumps, default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=colour, pad_event_to=0, pad_level=False, exception_formatter=structlog.dev.plain_traceback
        )
    return WithPriority(renderer) if journal else renderer


def setup_logging(level: str = "info", fmt: str = "auto", stream=None, env=os.environ) -> None:
    """`fmt`: "json", or "console"/"auto" for readable text (colour only on a terminal)."""
    stream = stream or sys.stderr
    journal = on_journal(stream, env)
    processors = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
    if fmt == "json" or not journal:
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
    processors += [
        structlog.processors.format_exc_info,
        neutralise,
        _renderer(fmt, journal, not journal and wants_colour(stream, env)),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
