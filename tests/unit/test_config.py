"""Configuration: defaults < TOML file < OPENCODE_WATCHDOGD_* env < CLI overrides; one-line errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from watchdogd.config import (
    DEFAULT_TOOL_THRESHOLDS,
    ConfigError,
    PolicyConfig,
    Settings,
    default_config_path,
    load_config,
    redacted,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write(
        tmp_path / "conf" / "config.toml",
        """
log_level = "debug"
[policy]
orphan_grace = "45s"
pending = "5m"
[policy.tools]
bash = "5m"
"github_*" = "10m"
""",
    )


def config_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# -- sources and precedence ------------------------------------------------------------------------


def test_no_file_at_default_location_means_defaults():
    assert not default_config_path().exists()
    settings, used = load_config()
    assert used is None
    assert settings.policy.orphan_grace == 30.0
    assert settings.policy.pending == 600.0
    assert settings.policy.default == 3600.0
    assert dict(settings.policy.tools) == DEFAULT_TOOL_THRESHOLDS
    assert settings.backup.max_db_size == 256 * 1024 * 1024 and settings.backup.keep == 3
    assert settings.log_level == "info"


def test_state_dir_defaults_under_xdg_state_home(hermetic_env):
    settings, _ = load_config()
    assert settings.state_dir == hermetic_env["XDG_STATE_HOME"] / "opencode-watchdogd"


def test_default_location_is_read_when_present(hermetic_env):
    path = write(
        hermetic_env["XDG_CONFIG_HOME"] / "opencode-watchdogd" / "config.toml", 'log_level = "warning"\n'
    )
    settings, used = load_config()
    assert used == path
    assert settings.log_level == "warning"


def test_file_values_override_defaults(cfg):
    settings, used = load_config(cfg)
    assert used == cfg
    assert settings.log_level == "debug"
    assert settings.policy.orphan_grace == 45.0
    assert settings.policy.pending == 300.0
    assert settings.policy.default == 3600.0  # untouched keys keep defaults


def test_env_overrides_file_with_nesting(cfg, monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE", "2m")
    monkeypatch.setenv("OPENCODE_WATCHDOGD_LOG_LEVEL", "error")
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__TOOLS__QUESTION", "1h")
    settings, _ = load_config(cfg)
    assert settings.policy.orphan_grace == 120.0
    assert settings.log_level == "error"
    assert settings.policy.pending == 300.0  # from the file: env merges, it does not replace [policy]
    assert settings.policy.tools["question"] == 3600.0
    assert settings.policy.tools["bash"] == 300.0  # the file's tool entry survives an env tool entry


def test_cli_overrides_beat_env_and_file(cfg, monkeypatch, tmp_path):
    write(cfg, f'state_dir = "{tmp_path / "from-file"}"\n' + cfg.read_text())
    monkeypatch.setenv("OPENCODE_WATCHDOGD_STATE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("OPENCODE_WATCHDOGD_LOG_FORMAT", "json")
    settings, _ = load_config(cfg, {"state_dir": tmp_path / "from-cli", "log_format": "console"})
    assert settings.state_dir == tmp_path / "from-cli"
    assert settings.log_format == "console"


def test_env_beats_file_for_top_level_key(cfg, monkeypatch, tmp_path):
    write(
        cfg,
        cfg.read_text().replace(
            'log_level = "debug"', f'log_level = "debug"\nstate_dir = "{tmp_path / "f"}"'
        ),
    )
    monkeypatch.setenv("OPENCODE_WATCHDOGD_STATE_DIR", str(tmp_path / "e"))
    settings, _ = load_config(cfg)
    assert settings.state_dir == tmp_path / "e"


def test_config_env_names_the_file(cfg, monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_CONFIG", str(cfg))
    settings, used = load_config()
    assert used == cfg and settings.policy.orphan_grace == 45.0


def test_explicit_path_beats_config_env(cfg, tmp_path, monkeypatch):
    other = write(tmp_path / "other.toml", 'log_level = "error"\n')
    monkeypatch.setenv("OPENCODE_WATCHDOGD_CONFIG", str(cfg))
    settings, used = load_config(other)
    assert used == other and settings.log_level == "error"


def test_tilde_in_paths_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write(tmp_path / "c.toml", 'state_dir = "~/state"\n[watch]\ndatabases = ["~/oc.db"]\n')
    settings, _ = load_config(path)
    assert settings.state_dir == tmp_path / "state"
    assert settings.watch.databases == [tmp_path / "oc.db"]


def test_durations_and_sizes_in_toml(tmp_path):
    path = write(
        tmp_path / "c.toml",
        '[policy]\ndefault = "never"\norphan_grace = 0\n[backup]\nmax_db_size = "1GiB"\nkeep = 0\n',
    )
    settings, _ = load_config(path)
    assert settings.policy.default == math.inf
    assert settings.policy.orphan_grace == 0.0
    assert settings.backup.max_db_size == 1024**3 and settings.backup.keep == 0


def test_settings_are_frozen():
    settings, _ = load_config()
    with pytest.raises(ValidationError):
        settings.log_level = "debug"  # type: ignore[misc]


# -- tools thresholds ------------------------------------------------------------------------------


def test_tools_merge_over_defaults(cfg):
    settings, _ = load_config(cfg)
    tools = dict(settings.policy.tools)
    assert tools["bash"] == 300.0 and tools["github_*"] == 600.0
    assert tools["question"] == DEFAULT_TOOL_THRESHOLDS["question"]
    assert tools["*_*"] == DEFAULT_TOOL_THRESHOLDS["*_*"]


def test_tool_can_be_set_to_never(tmp_path):
    settings, _ = load_config(write(tmp_path / "c.toml", '[policy.tools]\nquestion = "never"\n'))
    assert settings.policy.threshold_for("question") == (math.inf, "policy.tools.question")


@pytest.mark.parametrize(
    "tool, seconds, key",
    [
        ("question", 7200.0, "policy.tools.question"),
        ("bash", 300.0, "policy.tools.bash"),
        ("github_create_issue", 600.0, 'policy.tools."github_*"'),  # the longer glob wins over "*_*"
        ("fs_read", 1800.0, 'policy.tools."*_*"'),
        ("webfetch", 3600.0, "policy.default"),
    ],
)
def test_threshold_precedence(cfg, tool, seconds, key):
    settings, _ = load_config(cfg)
    assert settings.policy.threshold_for(tool) == (seconds, key)


def test_exact_name_beats_any_glob():
    policy = PolicyConfig(tools={"github_*": "10m", "github_create_issue": "1m", "*": "5h"})
    assert policy.threshold_for("github_create_issue") == (60.0, "policy.tools.github_create_issue")
    assert policy.threshold_for("github_x") == (600.0, 'policy.tools."github_*"')
    assert policy.threshold_for("read") == (5 * 3600.0, 'policy.tools."*"')


def test_glob_matching_is_case_sensitive():
    policy = PolicyConfig(tools={"GitHub_*": "10m"})
    assert policy.threshold_for("github_x")[1] == 'policy.tools."*_*"'


# -- errors: one line naming where, which key, and what is wrong -------------------------------------


def test_missing_explicit_file(tmp_path):
    missing = tmp_path / "nope.toml"
    message = config_error(missing)
    assert message == f"{missing}: config file not found"


def test_missing_file_from_config_env(tmp_path, monkeypatch):
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("OPENCODE_WATCHDOGD_CONFIG", str(missing))
    assert config_error() == f"{missing}: config file not found"


def test_bad_toml(tmp_path):
    path = write(tmp_path / "c.toml", "[policy\norphan_grace = 1\n")
    message = config_error(path)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 1" in message


def test_unreadable_file_is_a_config_error(tmp_path):
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    assert config_error(directory).startswith(f"{directory}: cannot read config file")


def test_binary_file_is_a_config_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe\x00bad")
    assert config_error(path).startswith(str(path))


def test_unknown_key_in_file(tmp_path):
    path = write(tmp_path / "c.toml", '[policy]\norphan_gracee = "1m"\n')
    assert config_error(path) == f"{path}: policy.orphan_gracee: unknown key"


def test_unknown_top_level_key_in_file(tmp_path):
    path = write(tmp_path / "c.toml", 'colour = "red"\n')
    assert config_error(path) == f"{path}: colour: unknown key"


def test_bad_duration_in_file(tmp_path):
    path = write(tmp_path / "c.toml", '[policy.tools]\nbash = "5 minutes"\n')
    message = config_error(path)
    assert message.startswith(f"{path}: policy.tools.bash: not a duration: '5 minutes'")


def test_bad_duration_in_env(monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__PENDING", "soon")
    message = config_error()
    assert message.startswith(
        "env OPENCODE_WATCHDOGD_POLICY__PENDING: policy.pending: not a duration: 'soon'"
    )


def test_bad_env_value_is_blamed_on_env_even_when_the_file_sets_it_too(cfg, monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE", "bogus")
    message = config_error(cfg)
    assert message.startswith(
        "env OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE: policy.orphan_grace: not a duration"
    )


def test_bad_value_in_file_is_blamed_on_file_when_env_sets_something_else(tmp_path, monkeypatch):
    path = write(tmp_path / "c.toml", '[policy]\npending = "later"\n')
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__ORPHAN_GRACE", "1m")
    assert config_error(path).startswith(f"{path}: policy.pending: not a duration: 'later'")


def test_unknown_nested_key_in_env(monkeypatch):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_POLICY__GRACE", "1m")
    assert config_error() == "env OPENCODE_WATCHDOGD_POLICY__GRACE: policy.grace: unknown key"


def test_bad_choice(tmp_path):
    path = write(tmp_path / "c.toml", 'log_level = "loud"\n')
    message = config_error(path)
    assert message.startswith(f"{path}: log_level: ")
    assert "'debug'" in message


def test_negative_keep(tmp_path):
    path = write(tmp_path / "c.toml", "[backup]\nkeep = -1\n")
    assert config_error(path).startswith(f"{path}: backup.keep: ")


def test_bad_size(tmp_path):
    path = write(tmp_path / "c.toml", '[backup]\nmax_db_size = "lots"\n')
    assert config_error(path).startswith(f"{path}: backup.max_db_size: not a size: 'lots'")


def test_server_url_scheme(tmp_path):
    path = write(tmp_path / "c.toml", '[[servers]]\nurl = "ftp://host"\n')
    assert config_error(path).startswith(
        f"{path}: servers.0.url: server url must start with http:// or https://"
    )


def test_server_url_required(tmp_path):
    path = write(tmp_path / "c.toml", '[[servers]]\nusername = "me"\n')
    assert config_error(path) == f"{path}: servers.0.url: required key is missing"


def test_several_problems_are_counted_on_one_line(tmp_path):
    path = write(tmp_path / "c.toml", '[policy]\npending = "x"\ndefault = "y"\n')
    message = config_error(path)
    assert message.endswith("(+1 more)")


def test_empty_tool_name(tmp_path):
    path = write(tmp_path / "c.toml", '[policy.tools]\n"" = "1m"\n')
    assert "bad tool name or glob" in config_error(path)


# -- secrets -----------------------------------------------------------------------------------------


def test_redacted_hides_passwords(tmp_path):
    path = write(tmp_path / "c.toml", '[[servers]]\nurl = "http://127.0.0.1:4096/"\npassword = "hunter2"\n')
    settings, _ = load_config(path)
    assert settings.servers[0].url == "http://127.0.0.1:4096"
    assert settings.servers[0].password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    shown = redacted(settings)
    assert "hunter2" not in repr(shown)
    assert shown["servers"][0]["password"] == "********"
    assert shown["policy"]["orphan_grace"] == "30s" and shown["policy"]["tools"]["question"] == "2h"


# -- the shipped example ---------------------------------------------------------------------------------


def test_example_config_loads_and_equals_defaults(monkeypatch):
    example = REPO_ROOT / "config.example.toml"
    if not example.exists():
        pytest.skip("config.example.toml not written yet")
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    settings, used = load_config(example)
    assert used == example
    assert settings.model_dump() == Settings().model_dump()


# -- notify and metrics -----------------------------------------------------------------------------------


def test_notify_and_metrics_defaults_are_off_or_auto():
    settings = Settings()
    assert settings.notify.desktop == "auto" and settings.notify.orphans is False
    assert settings.metrics.listen is None and settings.metrics.textfile is None


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("true", True), ("false", False)])
def test_notify_desktop_from_env(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv("OPENCODE_WATCHDOGD_NOTIFY__DESKTOP", value)
    assert load_config(write(tmp_path / "c.toml", ""))[0].notify.desktop == expected


def test_notify_desktop_rejects_other_words(tmp_path):
    message = config_error(write(tmp_path / "c.toml", '[notify]\ndesktop = "sometimes"\n'))
    assert message.startswith(f"{tmp_path / 'c.toml'}: notify.desktop:")


@pytest.mark.parametrize("listen", ["127.0.0.1:9464", "[::1]:9464", "localhost:9464", "127.0.0.2:1"])
def test_metrics_listen_loopback_is_accepted(tmp_path, listen):
    settings, _ = load_config(write(tmp_path / "c.toml", f'[metrics]\nlisten = "{listen}"\n'))
    assert settings.metrics.listen == listen


@pytest.mark.parametrize(
    "listen, problem",
    [
        ("0.0.0.0:9464", "not a loopback address; set metrics.allow_remote = true"),
        ("192.0.2.7:9464", "not a loopback address"),
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:0", "expected HOST:PORT"),
        ("127.0.0.1:70000", "expected HOST:PORT"),
        ("metrics.example:9464", "the host must be an IP address or localhost"),
        ("127.0.0.1:http", "expected HOST:PORT"),
    ],
)
def test_metrics_listen_bad_addresses_are_one_line_errors(tmp_path, listen, problem):
    path = write(tmp_path / "c.toml", f'[metrics]\nlisten = "{listen}"\n')
    message = config_error(path)
    assert message.startswith(f"{path}: metrics") and problem in message


def test_metrics_listen_remote_needs_explicit_opt_in(tmp_path):
    path = write(tmp_path / "c.toml", '[metrics]\nlisten = "0.0.0.0:9464"\nallow_remote = true\n')
    assert load_config(path)[0].metrics.listen == "0.0.0.0:9464"


def test_metrics_textfile_directory_must_exist_and_be_writable(tmp_path):
    missing = tmp_path / "nowhere" / "w.prom"
    message = config_error(write(tmp_path / "a.toml", f'[metrics]\ntextfile = "{missing}"\n'))
    assert "metrics.textfile" in message and "directory does not exist" in message
    # /proc/self refuses new files even to root; a 0500 directory refuses them to anyone else.
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for folder in [Path("/proc/self")] + ([locked] if os.geteuid() != 0 else []):
        message = config_error(write(tmp_path / "b.toml", f'[metrics]\ntextfile = "{folder / "w.prom"}"\n'))
        assert "metrics.textfile" in message and "not writable" in message
    locked.chmod(0o700)
    assert not list(locked.iterdir())
    message = config_error(write(tmp_path / "c.toml", f'[metrics]\ntextfile = "{tmp_path / "w.txt"}"\n'))
    assert "must end in .prom" in message


def test_journal_keep_is_bounded_and_may_be_never(tmp_path):
    assert load_config(write(tmp_path / "a.toml", ""))[0].journal.keep == 90 * 86400
    assert load_config(write(tmp_path / "b.toml", '[journal]\nkeep = "never"\n'))[0].journal.keep == math.inf
    path = write(tmp_path / "c.toml", '[journal]\nkeep = "1h"\n')
    assert (
        config_error(path)
        == f"{path}: journal.keep: 1h is out of range (accepted: from 1d to 3650d, or never)"
    )
