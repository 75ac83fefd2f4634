"""One validated configuration object: defaults < TOML file < OPENCODE_WATCHDOGD_* env < CLI flags.

`values` holds the value types (bounded durations, sizes, listen addresses) and the default paths,
`settings` the sections and `Settings`, `loading` the merge of the sources and its one-line errors.
Import from here: `from watchdogd.config import Settings, load_config`.
"""

from watchdogd.config.loading import (
    MAX_CONFIG_BYTES,
    load_config,
    redacted,
    resolve_config_path,
    sources_in_effect,
)
from watchdogd.config.settings import (
    DEFAULT_TOOL_THRESHOLDS,
    BackupConfig,
    JournalConfig,
    LiveConfig,
    MetricsConfig,
    NotifyConfig,
    PolicyConfig,
    ServerConfig,
    Settings,
    Strict,
    WatchConfig,
)
from watchdogd.config.values import (
    CONFIG_ENV,
    DAY,
    ENV_PREFIX,
    ConfigError,
    Duration,
    ListenAddress,
    default_config_path,
    default_state_dir,
    parse_listen,
)

__all__ = [
    "CONFIG_ENV",
    "DAY",
    "DEFAULT_TOOL_THRESHOLDS",
    "ENV_PREFIX",
    "MAX_CONFIG_BYTES",
    "BackupConfig",
    "ConfigError",
    "Duration",
    "JournalConfig",
    "ListenAddress",
    "LiveConfig",
    "MetricsConfig",
    "NotifyConfig",
    "PolicyConfig",
    "ServerConfig",
    "Settings",
    "Strict",
    "WatchConfig",
    "default_config_path",
    "default_state_dir",
    "load_config",
    "parse_listen",
    "redacted",
    "resolve_config_path",
    "sources_in_effect",
]
