"""`service install`'s hint: a TUI started without --port serves no API (docs/tui.md)."""

from __future__ import annotations

import json
from pathlib import Path

from watchdogd.cli import main
from watchdogd.opencode.tui_config import reachability_hint

FUNCTION = (
    'opencode() { case "${1:-}" in ""|-*) command opencode --port 0 "$@" ;; '
    '*) command opencode "$@" ;; esac; }\n'
)


def dirs(tmp_path: Path) -> tuple[Path, Path]:
    config, home = tmp_path / "config" / "opencode", tmp_path / "home"
    config.mkdir(parents=True)
    home.mkdir()
    return config, home


def test_no_flag_anywhere_gives_the_recipe(tmp_path) -> None:
    config, home = dirs(tmp_path)
    (home / ".bashrc").write_text("alias ll='ls -l'\n# alias opencode='opencode --port 0'\n")
    hint = reachability_hint(config, home)
    assert hint is not None and "`opencode --port 0`" in hint and "serves no API" in hint


def test_a_shell_function_with_the_flag_needs_no_hint(tmp_path) -> None:
    config, home = dirs(tmp_path)
    (home / ".zshrc").write_text(FUNCTION)
    assert reachability_hint(config, home) is None


def test_server_port_in_opencode_json_is_named_as_ignored(tmp_path) -> None:
    config, home = dirs(tmp_path)
    (home / ".bashrc").write_text(FUNCTION)
    (config / "opencode.json").write_text(json.dumps({"server": {"port": 4096}, "model": "x/y"}))
    hint = reachability_hint(config, home)
    assert hint is not None and f"server.port in {config / 'opencode.json'}" in hint and "ignores" in hint


def test_jsonc_with_comments_is_still_read(tmp_path) -> None:
    config, home = dirs(tmp_path)
    (config / "opencode.jsonc").write_text('{\n  // mine\n  "server": { "hostname": "127.0.0.1" }\n}\n')
    assert "server.hostname in" in reachability_hint(config, home)  # unparsed JSONC: named by its text


def test_service_install_prints_the_hint(tmp_path, monkeypatch, capsys) -> None:
    config, home = dirs(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config.parent))
    assert main(["service", "install", "--unit-dir", str(tmp_path / "units")]) == 0
    out = capsys.readouterr().out
    assert "written:" in out and "hint: a plain `opencode` TUI serves no API" in out
