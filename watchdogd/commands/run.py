"""`run` (placeholder wiring; see the daemon issue)."""


def add_parser(subparsers, common) -> None:
    subparsers.add_parser("run", parents=[common], help="run")


def run(args, settings) -> int:
    raise NotImplementedError
