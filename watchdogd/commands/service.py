"""`service` (placeholder wiring; see the daemon issue)."""


def add_parser(subparsers, common) -> None:
    subparsers.add_parser("service", parents=[common], help="service")


def run(args, settings) -> int:
    raise NotImplementedError
