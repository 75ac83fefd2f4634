"""Which DBs to watch: opencode*.db in opencode's data dir, $OPENCODE_DB, watch.databases, --db."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from watchdogd.config import Settings, WatchConfig
from watchdogd.opencode.discovery import discover_databases


@pytest.fixture
def data_dir(hermetic_env) -> Path:
    path = hermetic_env["XDG_DATA_HOME"] / "opencode"
    path.mkdir()
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_nothing_there_yet_gives_the_default_path(data_dir):
    assert discover_databases() == [data_dir / "opencode.db"]


def test_finds_opencode_dbs_but_never_wal_or_shm(data_dir):
    main = touch(data_dir / "opencode.db")
    channel = touch(data_dir / "opencode-beta.db")
    for name in (
        "opencode.db-wal",
        "opencode.db-shm",
        "opencode-beta.db-wal",
        "other.db",
        "opencode.db.bak",
        "opencode.sqlite",
    ):
        touch(data_dir / name)
    (data_dir / "opencode-dir.db").mkdir()  # not a file
    assert discover_databases() == [channel, main]


def test_opencode_db_env_absolute(data_dir, monkeypatch, tmp_path):
    main = touch(data_dir / "opencode.db")
    elsewhere = tmp_path / "elsewhere" / "custom.db"
    monkeypatch.setenv("OPENCODE_DB", str(elsewhere))
    assert discover_databases() == [main, elsewhere]  # it may not exist yet


def test_opencode_db_env_bare_name_is_in_the_data_dir(data_dir, monkeypatch):
    monkeypatch.setenv("OPENCODE_DB", "work.db")
    assert discover_databases() == [data_dir / "work.db"]


def test_opencode_db_env_naming_a_found_db_is_not_repeated(data_dir, monkeypatch):
    main = touch(data_dir / "opencode.db")
    monkeypatch.setenv("OPENCODE_DB", "opencode.db")
    assert discover_databases() == [main]


def test_configured_databases_replace_discovery(data_dir, tmp_path):
    touch(data_dir / "opencode.db")
    configured = tmp_path / "a.db"
    settings = Settings(watch=WatchConfig(databases=[configured, configured]))
    assert discover_databases(settings.watch.databases) == [configured]


def test_db_option_replaces_everything(data_dir, monkeypatch, tmp_path):
    touch(data_dir / "opencode.db")
    monkeypatch.setenv("OPENCODE_DB", "work.db")
    settings = Settings(watch=WatchConfig(databases=[tmp_path / "configured.db"]))
    chosen = tmp_path / "chosen.db"
    assert discover_databases(settings.watch.databases, [chosen]) == [chosen]


def test_relative_db_option_is_made_absolute(data_dir, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert discover_databases((), [Path("x.db")]) == [tmp_path / "x.db"]


def test_xdg_data_home_must_be_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert discover_databases() == [tmp_path / ".local" / "share" / "opencode" / "opencode.db"]


def test_paths_resolve_like_realpath(data_dir, monkeypatch, tmp_path):
    """Folders are resolved once per folder: the result must still be what os.path.realpath gives."""
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    touch(real / "opencode.db")
    (tmp_path / "linkdir").symlink_to(real)
    (tmp_path / "linkfile.db").symlink_to(real / "opencode.db")
    (real / "sub" / "up").symlink_to(tmp_path)  # `..` after a symlink climbs from where it points
    monkeypatch.chdir(real)
    given = [
        tmp_path / "linkdir" / "opencode.db",
        tmp_path / "linkfile.db",
        real / "sub" / "up" / ".." / "x.db",
        Path("sub/../opencode.db"),
        tmp_path / "linkdir" / "sub" / "..",
        Path("new.db"),
    ]
    expected = list(dict.fromkeys(Path(os.path.realpath(p)) for p in given))
    assert discover_databases((), given) == expected
    assert expected[0] == real / "opencode.db" and len(expected) < len(given)
