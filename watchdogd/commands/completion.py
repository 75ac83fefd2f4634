"""`completion SHELL`: a completion script generated from the parser itself (shtab), so it never drifts."""

from __future__ import annotations

import sys

import shtab

from watchdogd.commands.options import PROG, Options, add_verb

# Where each shell looks for a completion script of its own (user-level, no root needed).
INSTALL = {
    "bash": f"~/.local/share/bash-completion/completions/{PROG}",
    "zsh": f"~/.zfunc/_{PROG}   (with `fpath+=(~/.zfunc); autoload -U compinit; compinit` in ~/.zshrc)",
    "fish": f"~/.config/fish/completions/{PROG}.fish",
}


def add_parser(subparsers, opts: Options) -> None:
    parser = add_verb(
        subparsers,
        "completion",
        "print a shell completion script for bash, zsh or fish",
        reads="nothing (the script is generated from this command's own options)",
        writes="the script on stdout; install it where your shell looks: "
        + "; ".join(f"{shell}: {where}" for shell, where in INSTALL.items()),
        example=f"{PROG} completion bash > {INSTALL['bash']}",
        exits="0",
    )
    parser.add_argument("shell", choices=sorted(INSTALL), help="the shell to complete for")


def run(args, _settings) -> int:
    # The CLI hands down its whole parser (this verb included): the script never drifts from it.
    sys.stdout.write(shtab.complete(args.parser, shell=args.shell))
    return 0
