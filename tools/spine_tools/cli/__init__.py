"""The `spine` command line.

Each command group lives in its own module with a `register(subparsers)` function and
is imported only when the command line is built, so `spine models validate` does not
pay for the emulator's imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules under spine_tools.cli that contribute sub-commands.
COMMAND_MODULES = ("models", "db", "local", "dev", "usage", "openapi", "batch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spine", description="Spine: a serverless OpenAI-compatible LLM gateway"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"spine_tools.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
