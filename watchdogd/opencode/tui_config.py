"""Does the user's setup start opencode's TUI reachable (with `--port`)? Used for `service install`'s hint.

opencode 1.14-1.18 TUIs serve an API only when started with `--port`, `--hostname` or `--mdns`; the
`server` block of opencode.json is read by `opencode serve`, never by the TUI (docs/tui.md). So the
hint looks for a shell alias or function that adds the flag, and names a `server.port` that the TUI
ignores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CONFIG_NAMES = ("opencode.json", "opencode.jsonc", "config.json")
SHELL_FILES = (".bashrc", ".bash_aliases", ".zshrc", ".profile", ".config/fish/config.fish")
_FLAG = re.compile(r"opencode\b.*--(port|hostname|mdns)\b")
RECIPE = 'start it with `opencode --port 0` (README: "The terminal UI" has a shell function)'


def _server_keys(config_dir: Path) -> list[str]:
    found = []
    for name in CONFIG_NAMES:
        try:
            text = (config_dir / name).read_text()
        except OSError:
            continue
        try:
            server = json.loads(text).get("server")
        except (ValueError, AttributeError):  # JSONC with comments: find the keys in the text
            match = re.search(r'"server"\s*:\s*\{[^}]*"(port|hostname)"', text)
            server = {match.group(1): None} if match else None
        if isinstance(server, dict):
            found += [f"server.{key} in {config_dir / name}" for key in ("port", "hostname") if key in server]
    return found


def _shell_adds_flag(home: Path) -> bool:
    for name in SHELL_FILES:
        try:
            lines = (home / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        if any(_FLAG.search(line) for line in lines if not line.lstrip().startswith("#")):
            return True
    return False


def reachability_hint(config_dir: Path, home: Path) -> str | None:
    """One or two lines for the user, or None when their shell already starts the TUI with --port."""
    ignored = _server_keys(config_dir)
    if _shell_adds_flag(home) and not ignored:
        return None
    lines = [
        (
            "hint: a plain `opencode` TUI serves no API, so the daemon can only tell you when a part is stuck "
            f"in it; to have it freed live, {RECIPE}"
        )
    ]
    if ignored:
        lines.append(f"hint: the TUI ignores {', '.join(ignored)}; only the --port flag makes it listen")
    return "\n".join(lines)
