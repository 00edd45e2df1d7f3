"""Wire fakes of the providers' batch APIs: OpenAI's Files + Batch API, Anthropic's
Message Batches and Gemini's batch mode (field names from openai.types.Batch,
anthropic.types.messages.MessageBatch / MessageBatchIndividualResponse, and the
long-running operation google-genai reads a BatchJob from: `metadata.state`,
`metadata.output.inlinedResponses.inlinedResponses`).

A batch stays in progress until the test ends it (`FakeBatches.end`): then each
request is answered as the provider's live endpoint would answer it (the echo fakes),
except the custom_ids a test made fail (a 400 at the provider) and, when asked, the
requests past `ran` (expired, or cancelled for a cancelled batch).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import anthropic_api, gemini_api, openai_api

_ids = itertools.count(1)


@dataclass
class FakeBatch:
    provider: str
    id: str
    requests: list[dict[str, Any]]  # the provider's input lines
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "in_progress"  # running, cancelling, or the provider's end word
    cancelled: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)  # output lines, ended
    errors: list[dict[str, Any]] = field(default_factory=list)  # OpenAI's error file
    succeeded: int = 0
    errored: int = 0
    expired: int = 0
    canceled: int = 0
    output_file: str | None = None  # OpenAI's files, made when it ended
    error_file: str | None = None
    model: str = ""  # Gemini's: the path's model


@dataclass
class FakeBatches:
    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: dict[str, FakeBatch] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)

    def reset(self) -> None:
        with self.lock:
            self.batches.clear()
            self.files.clear()
            self.failing.clear()

    def add_file(self, content: bytes) -> str:
        file_id = f"file-fake{next(_ids)}"
        with self.lock:
            self.files[file_id] = content
        return file_id

    def add(self, provider: str, requests: list[dict[str, Any]], model: str = "") -> FakeBatch:
        prefix = {"openai": "batch_fake", "anthropic": "msgbatch_fake"}.get(
            provider, "batches/fake"
        )
        batch = FakeBatch(provider, f"{prefix}{next(_ids)}", requests, model=model)
        with self.lock:
            self.batches[batch.id] = batch
        return batch

    def get(self, batch_id: str) -> FakeBatch | None:
        with self.lock:
            return self.batches.get(batch_id)

    def cancel(self, batch_id: str) -> FakeBatch | None:
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is not None and batch.status == "in_progress":
                batch.status = "canceling" if batch.provider == "anthropic" else "cancelling"
                batch.cancelled = True
            return batch

    def end(self, *, ran: int | None = None) -> None:
        """End every batch still running: its first `ran` requests (all by default)
        answered, the rest expired (cancelled, in a cancelled batch)."""
        with self.lock:
            for batch in self.batches.values():
                if batch.status in ("in_progress", "cancelling", "canceling"):
                    _finish(batch, self.failing, ran)


def _finish(batch: FakeBatch, failing: set[str], ran: int | None) -> None:
    limit = len(batch.requests) if ran is None else ran
    for number, request in enumerate(batch.requests):
        custom_id = custom_id_of(request)
        if number >= limit:
            if batch.cancelled:
                batch.canceled += 1
            else:
                batch.expired += 1
            _unrun(batch, custom_id)
        elif custom_id in failing:
            batch.errored += 1
            _errored(batch, custom_id)
        else:
            batch.succeeded += 1
            _succeeded(batch, request)
    if batch.provider == "anthropic":
        batch.status = "ended"
    elif batch.provider == "gemini":
        batch.status = "BATCH_STATE_" + (
            "CANCELLED" if batch.cancelled else "EXPIRED" if batch.expired else "SUCCEEDED"
        )
    elif batch.cancelled:
        batch.status = "cancelled"
    else:
        batch.status = "expired" if batch.expired else "completed"


def custom_id_of(request: dict[str, Any]) -> str:
    """OpenAI and Anthropic name it; Gemini's inlined requests carry it as metadata."""
    return str(request["custom_id"] if "custom_id" in request else request["metadata"]["key"])


def _succeeded(batch: FakeBatch, request: dict[str, Any]) -> None:
    custom_id = custom_id_of(request)
    if batch.provider == "gemini":
        answer = gemini_api.default_answer("generateContent", batch.model, request["request"])
        batch.results.append({"response": answer, "metadata": request["metadata"]})
        return
    if batch.provider == "openai":
        body = openai_api.default_answer(request["url"], request["body"])
        batch.results.append(_openai_line(custom_id, 200, body))
        return
    message = anthropic_api.default_answer(request["params"])
    batch.results.append(
        {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
    )


def _errored(batch: FakeBatch, custom_id: str) -> None:
    if batch.provider == "gemini":
        body, _ = gemini_api.error(400, None, None, None)
        status = {"code": 3, "message": body["error"]["message"], "details": []}
        batch.results.append({"error": status, "metadata": {"key": custom_id}})
        return
    if batch.provider == "openai":
        body, _ = openai_api.error(400, None, None, None)
        batch.errors.append(_openai_line(custom_id, 400, body))
        return
    body, _ = anthropic_api.error(400, None, None, None)
    batch.results.append({"custom_id": custom_id, "result": {"type": "errored", "error": body}})


def _unrun(batch: FakeBatch, custom_id: str) -> None:
    if batch.provider == "gemini":
        return  # an expired or cancelled job has no response for it
    if batch.provider == "anthropic":
        kind = "canceled" if batch.cancelled else "expired"
        batch.results.append({"custom_id": custom_id, "result": {"type": kind}})
        return
    code, message = (
        ("batch_cancelled", "This request was cancelled.")
        if batch.cancelled
        else (
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        )
    )
    batch.errors.append(
        {
            "id": f"batch_req_fake{next(_ids)}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )


def _openai_line(custom_id: str, status: int, body: Any) -> dict[str, Any]:
    return {
        "id": f"batch_req_fake{next(_ids)}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": f"req_fake{next(_ids)}", "body": body},
        "error": None,
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


# --- OpenAI's shapes -------------------------------------------------------------------


def openai_file(file_id: str, size: int, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": "batch.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def openai_batch(batch: FakeBatch, files: FakeBatches) -> dict[str, Any]:
    ended = batch.status in ("completed", "expired", "cancelled")
    if ended and batch.results and batch.output_file is None:
        batch.output_file = files.add_file(jsonl(batch.results))
    if ended and batch.errors and batch.error_file is None:
        batch.error_file = files.add_file(jsonl(batch.errors))
    now = int(time.time())
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "errors": None,
        "input_file_id": "file-input",
        "completion_window": "24h",
        "status": batch.status,
        "output_file_id": batch.output_file,
        "error_file_id": batch.error_file,
        "created_at": batch.created_at,
        "in_progress_at": batch.created_at,
        "expires_at": batch.created_at + 86400,
        "completed_at": now if batch.status == "completed" else None,
        "expired_at": now if batch.status == "expired" else None,
        "cancelled_at": now if batch.status == "cancelled" else None,
        "request_counts": {
            "total": len(batch.requests),
            "completed": batch.succeeded,
            "failed": batch.errored,
        },
        "metadata": None,
    }


# --- Anthropic's shapes ----------------------------------------------------------------


def anthropic_batch(batch: FakeBatch, root: str) -> dict[str, Any]:
    ended = batch.status == "ended"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at))
    end_stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) if ended else None
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": {
            "processing": 0 if ended else len(batch.requests),
            "succeeded": batch.succeeded,
            "errored": batch.errored,
            "canceled": batch.canceled,
            "expired": batch.expired,
        },
        "ended_at": end_stamp,
        "created_at": stamp,
        "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at + 86400)),
        "archived_at": None,
        "cancel_initiated_at": end_stamp if batch.cancelled else None,
        "results_url": f"{root}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


# --- Gemini's shapes -------------------------------------------------------------------


def gemini_operation(batch: FakeBatch) -> dict[str, Any]:
    """The long-running operation of a batch job, as GET v1beta/batches/{id} gives it."""
    running = batch.status in ("in_progress", "cancelling")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch.created_at))
    total = len(batch.requests)
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": batch.id,
        "model": f"models/{batch.model}",
        "displayName": "spine",
        "createTime": stamp,
        "updateTime": stamp,
        "state": "BATCH_STATE_RUNNING" if running else batch.status,
        "batchStats": {
            "requestCount": str(total),
            "successfulRequestCount": str(batch.succeeded),
            "failedRequestCount": str(batch.errored),
            "pendingRequestCount": str(total if running else 0),
        },
    }
    operation: dict[str, Any] = {"name": batch.id, "metadata": metadata}
    if not running:
        output = {"inlinedResponses": {"inlinedResponses": batch.results}}
        metadata["output"] = output
        metadata["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        operation["done"] = True
        operation["response"] = {
            "@type": (
                "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput"
            ),
            **output,
        }
    return operation
