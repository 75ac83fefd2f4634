"""Which opencode DBs to watch: opencode*.db in its data dir, plus $OPENCODE_DB."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from watchdogd.opencode.dirs import opencode_data_dir


def discover_databases(configured: Sequence[Path] = (), explicit: Sequence[Path] | None = None) -> list[Path]:
    """`explicit` (`--db`) replaces everything; else `configured` (`watch.databases`); else discovery.
    Paths may not exist yet."""
    if explicit:
        return _unique(p.expanduser() for p in explicit)
    if configured:
        return _unique(configured)
    data_dir = opencode_data_dir()
    found = [p for p in sorted(data_dir.glob("opencode*.db")) if p.is_file()]
    env_db = os.environ.get("OPENCODE_DB")
    if env_db:
        # opencode takes an absolute path as is and a bare name inside its data dir.
        found.append(Path(env_db) if os.path.isabs(env_db) else data_dir / env_db)
    if not found:
        found.append(data_dir / "opencode.db")
    return _unique(found)


def _unique(paths) -> list[Path]:
    """Absolute, symlinks resolved: the daemon watches, writes and journals the file itself (re-resolved each pass)."""
    out: dict[Path, None] = {}  # ordered, O(1) per path: hundreds of DBs are re-resolved at every full pass
    folders: dict[str, str] = {}  # each folder resolved once, then one lstat per file
    for path in paths:
        full = os.fspath(path)
        head, name = os.path.split(full if os.path.isabs(full) else os.path.join(os.getcwd(), full))
        if name in ("", ".", ".."):
            resolved = os.path.realpath(path)
        else:
            resolved = os.path.join(
                folders.get(head) or folders.setdefault(head, os.path.realpath(head)), name
            )
            if os.path.islink(resolved):
                resolved = os.path.realpath(resolved)
        out.setdefault(Path(resolved))
    return list(out)
