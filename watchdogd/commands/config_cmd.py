"""`config check` and `config show`: validate, and print the effective values as a config file takes them."""

from __future__ import annotations

import json

import tomli_w

from watchdogd.commands.options import PROG, Options, add_verb
from watchdogd.config import Settings, redacted, sources_in_effect


def add_parser(subparsers, opts: Options) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate or show the effective configuration",
        description="Validate or show the effective configuration.",
    )
    verbs = parser.add_subparsers(dest="config_verb", required=True, metavar="{check,show}")
    sources = "the config file, OPENCODE_WATCHDOGD_* environment variables, the flags given"
    add_verb(
        verbs,
        "check",
        "validate the configuration and name every source in effect",
        reads=sources,
        writes="nothing",
        example=f"{PROG} config check --config ~/my.toml",
        exits="0 valid (invalid: one line naming the source, key and problem)",
        parents=(opts.config, opts.overrides),
    )
    show = add_verb(
        verbs,
        "show",
        "print the effective values as a config file (secrets redacted)",
        reads=sources,
        writes="nothing",
        example=f"{PROG} config show > ~/.config/opencode-watchdogd/config.toml",
        exits="0",
        parents=(opts.config, opts.overrides),
    )
    show.add_argument("--json", action="store_true", help="JSON instead of TOML")


def run(args, settings: Settings) -> int:
    sources = sources_in_effect(getattr(args, "config", None), args.config_used, args.flags_used)
    if args.config_verb == "check":
        print("config ok")
        print("\n".join(f"  {name + ':':13}{value}" for name, value in sources))
        return 0
    data = redacted(settings)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        header = [f"# {name}: {value}" for name, value in sources]
        print("\n".join(["# effective configuration (secrets redacted)", *header, "", to_toml(data)]))
    return 0


def _without_none(value):
    """TOML has no null: an unset optional key is left out, which loads back as unset."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def to_toml(data: dict) -> str:
    """Valid TOML (tomli-w) that `config check` accepts and that loads back to the same values."""
    data = _without_none(data)
    servers = data.pop("servers", [])
    text = tomli_w.dumps(data)
    # [[servers]] tables, as a person writes them, rather than one inline array.
    for server in servers:
        text += "\n[[servers]]\n" + tomli_w.dumps(server)
    return text.rstrip("\n")
