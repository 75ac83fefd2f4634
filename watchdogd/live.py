"""Live-server layer: ownership evidence and recovery through the owning opencode server's HTTP API.

`build_live` returns one object that is both a `survey.LiveEvidence` and a `reaper.LiveRecovery`,
or None when no server can be used (then holders alone decide and live parts are only reported).
"""

from __future__ import annotations

from pathlib import Path

from watchdogd.config import Settings


def build_live(settings: Settings, dbs: list[Path]):
    return None
