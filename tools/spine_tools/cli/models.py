"""`spine models validate [PATH]`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spine.errors import ConfigError


def register(subparsers: Any) -> None:
    models = subparsers.add_parser("models", help="inspect the model registry")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    validate = sub.add_parser("validate", help="check models.yaml; exit 1 on any problem")
    validate.add_argument("path", nargs="?", default=None, help="default: from config.toml")
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from spine.registry import load_registry

    path = args.path
    if path is None:
        from spine.settings import load_settings

        try:
            path = str(load_settings().models_path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 1
    try:
        registry = load_registry(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        count = len(exc.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    print(f"{path}: ok ({len(registry.models)} models, {len(registry.profiles)} profiles)")
    return 0
