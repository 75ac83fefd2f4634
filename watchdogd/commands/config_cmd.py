"""`config check` and `config show`: validate, and print the effective values as a config file takes them."""

from __future__ import annotations

import json

import tomli_w

from watchdogd.config import Settings, redacted, sources_in_effect


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("config", help="validate or show the effective configuration")
    verbs = parser.add_subparsers(dest="config_verb", required=True, metavar="{check,show}")
    verbs.add_parser("check", parents=[common], help="validate; exit 2 with one line on the first problem")
    show = verbs.add_parser("show", parents=[common], help="print effective values (secrets redacted)")
    show.add_argument("--json", action="store_true")


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
