"""`config check` and `config show`."""

from __future__ import annotations

import json

from watchdogd.config import Settings, redacted


def add_parser(subparsers, common) -> None:
    parser = subparsers.add_parser("config", help="validate or show the effective configuration")
    verbs = parser.add_subparsers(dest="config_verb", required=True, metavar="{check,show}")
    verbs.add_parser("check", parents=[common], help="validate; exit 2 with one line on the first problem")
    show = verbs.add_parser("show", parents=[common], help="print effective values (secrets redacted)")
    show.add_argument("--json", action="store_true")


def run(args, settings: Settings) -> int:
    if args.config_verb == "check":
        where = args.config_used or "defaults (no config file)"
        print(f"config ok: {where}")
        return 0
    data = redacted(settings)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(to_toml(data))
    return 0


def to_toml(data: dict, prefix: str = "") -> str:
    """A TOML rendering good enough to paste back into a config file."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    lines = [f"{_key(k)} = {_value(v)}" for k, v in scalars.items() if v is not None]
    for key, value in tables.items():
        name = f"{prefix}{_key(key)}"
        lines += ["", f"[{name}]", to_toml(value, name + ".")]
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{prefix}{_key(key)}]]", to_toml(item)]
    return "\n".join(line for line in lines).strip("\n")


def _key(key: str) -> str:
    return key if key.replace("_", "").isalnum() else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == float("inf"):
        return '"never"'
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)
