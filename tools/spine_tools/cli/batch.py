"""`spine batch`: OpenAI's Batch API from the command line, against any Spine.

    spine batch submit requests.jsonl --endpoint /v1/chat/completions --wait
    spine batch list | status ID | cancel ID | download ID [--output F] [--errors F]

It speaks the API through the official `openai` client, so it works against a
deployed Spine (`--base-url https://<api>/<stage>/v1`) as against `make dev`. The key
comes from `--api-key`, else SPINE_API_KEY, else OPENAI_API_KEY.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_BASE_URL = "http://127.0.0.1:3000/v1"
ENDED = ("completed", "failed", "expired", "cancelled")


def register(subparsers: Any) -> None:
    batch = subparsers.add_parser("batch", help="submit and follow batches (OpenAI's Batch API)")
    batch.add_argument(
        "--base-url",
        default=os.environ.get("SPINE_BASE_URL", DEFAULT_BASE_URL),
        help=f"the API's /v1 URL (SPINE_BASE_URL; default {DEFAULT_BASE_URL})",
    )
    batch.add_argument("--api-key", default=None, help="a Spine key (SPINE_API_KEY)")
    sub = batch.add_subparsers(dest="batch_command", metavar="ACTION", required=True)

    submit = sub.add_parser("submit", help="upload a JSONL file and start a batch on it")
    submit.add_argument("file", type=Path, help="the requests, one JSON object a line")
    submit.add_argument(
        "--endpoint",
        required=True,
        choices=["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/completions"],
    )
    submit.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    submit.add_argument("--wait", action="store_true", help="follow it to its end")
    submit.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
    submit.set_defaults(handler=_submit)

    listing = sub.add_parser("list", help="the latest batches")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=_list)

    for name, handler, text in (
        ("status", _status, "one batch's status and counts"),
        ("cancel", _cancel, "stop a batch: no new line starts"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("batch_id")
        command.set_defaults(handler=handler)

    download = sub.add_parser("download", help="a batch's output and error files")
    download.add_argument("batch_id")
    download.add_argument("--output", type=Path, default=None, help="default: <id>.output.jsonl")
    download.add_argument("--errors", type=Path, default=None, help="default: <id>.errors.jsonl")
    download.set_defaults(handler=_download)


def _client(args: argparse.Namespace) -> Any:
    import openai

    key = args.api_key or os.environ.get("SPINE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise SystemExit("spine batch: no key (--api-key, SPINE_API_KEY or OPENAI_API_KEY)")
    return openai.OpenAI(base_url=args.base_url, api_key=key, max_retries=2)


def _submit(args: argparse.Namespace) -> int:
    metadata = dict(item.split("=", 1) for item in args.metadata if "=" in item)
    with _client(args) as client:
        with args.file.open("rb") as content:
            uploaded = client.files.create(file=(args.file.name, content), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=args.endpoint,
            completion_window="24h",
            metadata=metadata or None,
        )
        print(batch.id)
        if not args.wait:
            return 0
        return _follow(client, batch.id, args.interval)


def _follow(client: Any, batch_id: str, interval: float) -> int:
    """A live bar of the batch's counts until it ends; 0 when it completed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.fields[status]:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(batch_id, total=None, status="validating", failed=0)
        while True:
            batch = client.batches.retrieve(batch_id)
            counts = batch.request_counts
            total = counts.total if counts else None
            done = (counts.completed + counts.failed) if counts else 0
            progress.update(
                task,
                total=total or None,
                completed=done,
                status=batch.status,
                failed=counts.failed if counts else 0,
            )
            if batch.status in ENDED:
                break
            time.sleep(interval)
    print(f"{batch_id} {batch.status}", file=sys.stderr)
    return 0 if batch.status == "completed" else 1


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for batch in client.batches.list(limit=args.limit).data:
            counts = batch.request_counts
            done = f"{counts.completed}/{counts.total}" if counts else "-"
            print(f"{batch.id}\t{batch.status}\t{done}\t{batch.endpoint}")
    return 0


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.batches.retrieve(args.batch_id).model_dump_json(indent=2))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.batches.cancel(args.batch_id).status)
    return 0


def _download(args: argparse.Namespace) -> int:
    with _client(args) as client:
        batch = client.batches.retrieve(args.batch_id)
        wrote = 0
        for file_id, target in (
            (batch.output_file_id, args.output or Path(f"{batch.id}.output.jsonl")),
            (batch.error_file_id, args.errors or Path(f"{batch.id}.errors.jsonl")),
        ):
            if file_id:
                client.files.content(file_id).write_to_file(target)
                print(target)
                wrote += 1
        if not wrote:
            print(f"{batch.id} is {batch.status}: no files yet", file=sys.stderr)
            return 1
    return 0
