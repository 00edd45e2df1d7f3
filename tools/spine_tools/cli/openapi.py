"""`spine openapi [--output FILE]`: the OpenAPI document of the whole API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "openapi",
        help="write the OpenAPI document of every function, as template.yaml routes them",
        description="Exit 1 when the apps' routes and the template's Api events differ.",
    )
    parser.add_argument("--output", "-o", default=None, help="file to write (default: stdout)")
    parser.add_argument("--template", "-t", default="template.yaml", help="SAM template")
    parser.set_defaults(handler=_openapi)


def _openapi(args: argparse.Namespace) -> int:
    from spine_tools.local.template import TemplateError, load_template
    from spine_tools.openapi import api_document

    try:
        template = load_template(Path(args.template))
    except TemplateError as exc:
        print(exc, file=sys.stderr)
        return 1
    result = api_document(template)
    text = json.dumps(result.document, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        count = sum(len(item) for item in result.document["paths"].values())
        print(f"{args.output}: {count} operations", file=sys.stderr)
    for line in result.disagreements:
        print(line, file=sys.stderr)
    return 1 if result.disagreements else 0
