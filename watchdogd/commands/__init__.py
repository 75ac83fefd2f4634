"""One module per CLI verb; each exposes `add_parser(subparsers, common)` and `run(args, settings) -> int`."""
