"""`status` (placeholder wiring; see the daemon issue)."""


def add_parser(subparsers, common) -> None:
    subparsers.add_parser("status", parents=[common], help="status")


def run(args, settings) -> int:
    raise NotImplementedError
