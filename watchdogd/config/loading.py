"""Loading: the file, the environment and the flags merged and validated, or one line naming what is wrong."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from watchdogd.config.settings import Settings
from watchdogd.config.values import CONFIG_ENV, ENV_PREFIX, ConfigError, default_config_path

MAX_CONFIG_BYTES = 1024 * 1024


def _read_config_file(path: Path) -> bytes:
    """The file's bytes: a regular file of at most 1 MiB (a FIFO or device would hang or never end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = (
                "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, device or socket)"
            )
            raise ConfigError(f"{path}: cannot read config file: it is {kind}")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file is {st.st_size} bytes, over the 1 MiB limit")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: config file is over the 1 MiB limit")
        return data
    finally:
        os.close(fd)


# Keys whose environment value is a JSON array (every other nested key takes a JSON object).
_ENV_ARRAYS = {
    "SERVERS": '\'[{"url": "http://127.0.0.1:4096", "password_file": "/path"}]\'',
    "WATCH__DATABASES": "'[\"/home/me/.local/share/opencode/opencode.db\"]'",
}


def _env_json_problem(error: str) -> str:
    """One line for pydantic-settings' "error parsing value for field X": which variable, which JSON form."""
    field = error.split('field "', 1)[1].split('"', 1)[0] if 'field "' in error else ""
    prefix = (ENV_PREFIX + field).upper()
    for name, value in sorted(os.environ.items()):
        upper = name.upper()
        if not (upper == prefix or upper.startswith(prefix + "__")):
            continue
        try:
            json.loads(value)
            continue
        except ValueError:
            pass
        tail = upper.removeprefix(ENV_PREFIX)
        if tail in _ENV_ARRAYS:
            return f"env {name}: not valid JSON; it takes a JSON array, e.g. {name}={_ENV_ARRAYS[tail]}"
        example = '{"orphan_grace": "1m"}' if tail == "POLICY" else '{"key": "value"}'
        return (
            f"env {name}: not valid JSON; it takes a JSON object, e.g. {name}='{example}', or set one key "
            f"per variable: {name}__<KEY>=value"
        )
    return f"env {prefix}…: not valid JSON ({error})"


def resolve_config_path(explicit: Path | None) -> tuple[Path, bool]:
    """The file to read and whether it must exist (only the default location may be missing)."""
    if explicit is not None:
        return explicit.expanduser(), True
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser(), True
    return default_config_path(), False


def sources_in_effect(explicit: Path | None, used: Path | None, flags: list[str]) -> list[tuple[str, str]]:
    """(kind, what) for every source the effective values come from: file, environment, flags."""
    if used is None:
        file = f"none (no file at {default_config_path()}; defaults apply)"
    elif explicit is not None:
        file = f"{used} (--config)"
    elif os.environ.get(CONFIG_ENV):
        file = f"{used} (${CONFIG_ENV})"
    else:
        file = f"{used} (default location)"
    out = [("file", file)]
    names = sorted(n for n in os.environ if n.upper().startswith(ENV_PREFIX) and n.upper() != CONFIG_ENV)
    if names:
        out.append(("environment", ", ".join(names)))
    if flags:
        out.append(("flags", ", ".join(flags)))
    return out


def load_config(
    path: Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Settings, Path | None]:
    """Load, merge and validate; raise ConfigError with one line naming the file, key and problem."""
    config_path, required = resolve_config_path(path)
    toml_data: dict[str, Any] = {}
    used_path: Path | None = None
    if config_path.exists() or required:
        try:
            toml_data = tomllib.loads(_read_config_file(config_path).decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config_path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{config_path}: cannot read config file: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
        used_path = config_path
    settings_cls: type[Settings] = Settings
    if used_path is not None:
        settings_cls = type(
            "FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": used_path}}
        )
    try:
        return settings_cls(**(overrides or {})), used_path
    except SettingsError as exc:  # an env value of a nested key that is not JSON
        raise ConfigError(_env_json_problem(str(exc))) from None
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, toml_data, used_path, set(overrides or ()))) from None


def _one_line(
    exc: ValidationError, toml_data: dict[str, Any], path: Path | None, flags: set[str] = frozenset()
) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    node: Any = toml_data
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
    env_name = ENV_PREFIX + "__".join(p for p in loc if not p.isdigit()).upper()
    env_set = bool(loc) and any(name.upper() == env_name for name in os.environ)
    # Flags override the environment, which overrides the file: name the source that won.
    if loc and loc[0] in flags:
        where = "--" + loc[0].replace("_", "-")
    elif env_set or (path is None and loc):
        where = "env " + env_name
    elif path is not None:
        where = str(path)
    else:
        where = "config"
    if error["type"] == "extra_forbidden":
        problem = "unknown key"
    elif error["type"] == "missing":
        problem = "required key is missing"
    else:
        problem = error["msg"].removeprefix("Value error, ")
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {key}: {problem}{more}"


def redacted(settings: Settings) -> dict[str, Any]:
    """Effective values for `config show`; secrets never leave the process."""
    data = settings.model_dump(mode="json")
    for server in data.get("servers", []):
        if server.get("password") is not None:
            server["password"] = "********"
    return data
