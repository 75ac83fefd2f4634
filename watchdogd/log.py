"""structlog setup: human console lines on a TTY, JSON lines otherwise; always to stderr."""

from __future__ import annotations

import logging
import sys

import structlog

from watchdogd.output import safe

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
ORDER = list(LEVELS)


def effective_level(configured: str, verbose: int = 0, quiet: int = 0) -> str:
    index = min(max(ORDER.index(configured) - verbose + quiet, 0), len(ORDER) - 1)
    return ORDER[index]


VALUE_LIMIT = 2000  # characters of one logged value (ids and paths come from a DB others write)
TRACEBACK_LIMIT = 20000


def _clean(value, limit: int):
    if isinstance(value, str):
        return safe(value, limit)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(item, limit) for item in value]
    if isinstance(value, dict):
        return {safe(key, 200): _clean(item, limit) for key, item in value.items()}
    return value


def neutralise(_logger, _method: str, event_dict: dict) -> dict:
    """One printable, bounded line per record, in both renderers: control characters (terminal escapes,
    newlines, bidi overrides) in any value, the event and tracebacks included, become visible `\\xNN`."""
    return {safe(key, 200): _clean(value, TRACEBACK_LIMIT if key == "exception" else VALUE_LIMIT)
            for key, value in event_dict.items()}


def setup_logging(level: str = "info", fmt: str = "auto", stream=None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if fmt == "console"
                else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            neutralise,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
