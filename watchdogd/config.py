"""One validated configuration object: defaults < TOML file < OPENCODE_WATCHDOGD_* env < CLI flags."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import math
import os
import stat
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from watchdogd.durations import check_size, duration_text, parse_duration, size_text

ENV_PREFIX = "OPENCODE_WATCHDOGD_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

# Shown (config show, JSON) in the form a config file takes back, without loss: "2h15m10s", "256MiB".
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(duration_text, when_used="json")]


def _within(low: float, high: float, never: bool = False) -> AfterValidator:
    """A duration bound: finite and in [low, high] ("never" too when `never`), else one line with the range."""

    def check(seconds: float) -> float:
        if never and seconds == math.inf:
            return seconds
        if not (low <= seconds <= high):  # also NaN
            shown = "never" if seconds == math.inf else duration_text(seconds)
            accepted = f"from {duration_text(low)} to {duration_text(high)}" + (", or never" if never else "")
            raise ValueError(f"{shown} is out of range (accepted: {accepted})")
        return seconds

    return AfterValidator(check)


DAY = 86400.0
# Bounded so that every use is safe: a timer can be armed, a deadline (now + it) fits a datetime.
Interval = Annotated[Duration, _within(1.0, DAY)]  # the poll
Debounce = Annotated[Duration, _within(0.0, 600.0)]
RescanInterval = Annotated[Duration, _within(60.0, 7 * DAY)]
Grace = Annotated[Duration, _within(0.0, 30 * DAY)]
Threshold = Annotated[Duration, _within(0.0, 3650 * DAY, never=True)]  # "never": the tool is never expired
Timeout = Annotated[Duration, _within(0.1, 600.0)]
Retention = Annotated[Duration, _within(DAY, 3650 * DAY, never=True)]  # "never": the journal is never pruned
Size = Annotated[ByteSize, BeforeValidator(check_size), PlainSerializer(size_text, when_used="json")]


class ConfigError(Exception):
    """A user error in configuration: one line, no traceback."""


@dataclass(frozen=True)
class ListenAddress:
    host: str  # as given to bind(): an IP address, or "localhost"
    port: int

    @property
    def loopback(self) -> bool:
        return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback


def parse_listen(value: str) -> ListenAddress:
    """ "127.0.0.1:9464", "[::1]:9464", "localhost:9464" or "0.0.0.0:9464"; raise ValueError in one line."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen {value!r}: expected HOST:PORT with a port from 1 to 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"listen {value!r}: the host must be an IP address or localhost") from None
    return ListenAddress(host, int(port))


def _xdg(name: str, fallback: str) -> Path:
    value = os.environ.get(name)
    return Path(value) if value and os.path.isabs(value) else Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "opencode-watchdogd" / "config.toml"


def default_state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "opencode-watchdogd"


def _check_tool_patterns(tools: dict[str, float]) -> dict[str, float]:
    for pattern in tools:
        if not pattern or len(pattern) > 200:
            raise ValueError(f"bad tool name or glob: {pattern!r}")
    return tools


# A person may still answer a question; MCP tools (`<server>_<tool>`) and bash have their own timeouts.
DEFAULT_TOOL_THRESHOLDS: dict[str, float] = {
    "question": 7200.0,
    "task": 7200.0,
    "bash": 3600.0,
    "*_*": 1800.0,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyConfig(Strict):
    orphan_grace: Grace = 30.0
    pending: Threshold = 600.0
    default: Threshold = 3600.0
    # Exact tool names win over globs; among globs the longest pattern wins.
    tools: Annotated[dict[str, Threshold], AfterValidator(_check_tool_patterns)] = Field(
        default_factory=lambda: dict(DEFAULT_TOOL_THRESHOLDS)
    )

    @field_validator("tools", mode="before")
    @classmethod
    def _over_defaults(cls, tools: Any) -> Any:
        # Setting one tool keeps the defaults of the others.
        return {**DEFAULT_TOOL_THRESHOLDS, **tools} if isinstance(tools, dict) else tools

    def threshold_for(self, tool: str) -> tuple[float, str]:
        """(seconds, the key that decided it)."""
        if tool in self.tools:
            return self.tools[tool], f"policy.tools.{tool}"
        globs = [p for p in self.tools if any(c in p for c in "*?[") and fnmatch.fnmatchcase(tool, p)]
        if globs:
            best = max(globs, key=len)
            return self.tools[best], f'policy.tools."{best}"'
        return self.default, "policy.default"


class WatchConfig(Strict):
    databases: list[Path] = Field(default_factory=list)
    debounce: Debounce = 0.5
    poll_interval: Interval = 60.0
    full_rescan_interval: RescanInterval = 3600.0
    # In a container's PID namespace, processes outside it cannot be seen: true says none can open the DB.
    trust_pid_namespace: bool = False

    @field_validator("databases")
    @classmethod
    def _absolute(cls, paths: list[Path]) -> list[Path]:
        return [p.expanduser() for p in paths]


class BackupConfig(Strict):
    max_db_size: Size = 256 * 1024 * 1024
    keep: int = Field(default=3, ge=0)


class JournalConfig(Strict):
    # Settled journal rows older than this are pruned (at daemon start, then daily); see Journal.prune.
    keep: Retention = 90 * DAY


class ServerConfig(Strict):
    url: str
    username: str = "opencode"
    password_file: Path | None = None
    password: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"server url must start with http:// or https://: {url!r}")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:  # never echo it: it holds a password
            raise ValueError(
                "server url must not carry credentials (user:password@host): they would show in logs "
                "and `config show`; use username and password_file"
            )
        return url.rstrip("/")


class LiveConfig(Strict):
    discover: bool = True
    allow_dispose: bool = False
    allow_insecure_remote: bool = False
    timeout: Timeout = 5.0
    # End an expired part's process when it has no API, the way its user would (SIGINT, then SIGTERM after
    # stop_grace; never SIGKILL), then repair its rows. Opt-in per kind: "run" (`opencode run`), "tui".
    stop_unreachable: list[Literal["run", "tui"]] = []
    stop_grace: Duration = 5.0


def _auto_or_bool(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("auto", "true", "false"):  # TOML string or environment
        return "auto" if value.lower() == "auto" else value.lower() == "true"
    if isinstance(value, bool):
        return value
    raise ValueError(f'expected "auto", true or false, not {value!r}')


class NotifyConfig(Strict):
    # "auto": on when the environment names a session bus (a desktop login), silent when not (servers).
    desktop: Annotated[Literal["auto"] | bool, BeforeValidator(_auto_or_bool)] = "auto"
    orphans: bool = False  # also tell about orphans repaired in the DB (the owning opencode was gone)


def _can_create_in(folder: Path) -> bool:
    """Try it: permissions alone miss read-only mounts and root's view of them."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".opencode-watchdogd-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


class MetricsConfig(Strict):
    allow_remote: bool = False  # listen on a non-loopback address (anyone who reaches it reads the metrics)
    listen: str | None = None  # "127.0.0.1:9464": serve Prometheus text over HTTP
    textfile: Path | None = None  # node_exporter's textfile collector: rewritten atomically after each pass

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None, info: ValidationInfo) -> str | None:
        # allow_remote is declared first, so it is already validated here.
        if value is not None and not parse_listen(value).loopback and not info.data.get("allow_remote"):
            raise ValueError(
                f"{value!r} is not a loopback address; set metrics.allow_remote = true to serve "
                "metrics to the network"
            )
        return value

    @field_validator("textfile")
    @classmethod
    def _textfile(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        path = path.expanduser()
        if path.suffix != ".prom":
            raise ValueError(
                f"{path}: must end in .prom (node_exporter's textfile collector reads only *.prom)"
            )
        if not path.parent.is_dir():
            raise ValueError(f"{path.parent}: directory does not exist")
        if not _can_create_in(path.parent):
            raise ValueError(
                f"{path.parent}: directory is not writable (the file is replaced atomically in it)"
            )
        return path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    state_dir: Path = Field(default_factory=default_state_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"
    allow_other_users: bool = False
    allow_fuse: bool = False
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    journal: JournalConfig = Field(default_factory=JournalConfig)
    live: LiveConfig = Field(default_factory=LiveConfig)
    servers: list[ServerConfig] = Field(default_factory=list)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        # Path("") is ".": an empty value would silently mean the current directory (under the user unit,
        # $HOME).
        if isinstance(value, str) and not value.strip():
            raise ValueError(
                "must not be empty: give an absolute path (e.g. ~/.local/state/opencode-watchdogd)"
            )
        return value

    @field_validator("state_dir")
    @classmethod
    def _expand(cls, path: Path) -> Path:
        path = path.expanduser()
        if not path.is_absolute():
            raise ValueError(
                f"must be an absolute path, not {str(path)!r} (relative paths depend on the "
                "directory the command starts in)"
            )
        return path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if settings_cls.model_config.get("toml_file"):
            sources += (TomlConfigSettingsSource(settings_cls),)
        return sources


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
