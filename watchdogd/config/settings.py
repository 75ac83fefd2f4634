"""The sections of the configuration and `Settings`, the one validated object they make."""

from __future__ import annotations

import fnmatch
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from watchdogd.config.values import (
    DAY,
    ENV_PREFIX,
    Debounce,
    Duration,
    Grace,
    Interval,
    RescanInterval,
    Retention,
    Size,
    Threshold,
    Timeout,
    default_state_dir,
    parse_listen,
)


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
