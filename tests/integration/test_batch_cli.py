"""`spine batch` against `spine local` with its embedded S3 and SQS: submit a file and
follow it to its end, list, status, download; the official openai client underneath."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spine_tools.cli import main
from tests.integration.conftest import Env
from tests.integration.test_batches import chat_line, jsonl, stack

__all__ = ["stack"]  # a fixture


def test_submit_and_wait_then_download(
    stack: str, env: Env, api_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(jsonl([chat_line(i) for i in range(5)]))
    common = ["batch", "--base-url", f"{stack}/v1", "--api-key", api_key]
    # When a file is submitted and followed to its end
    code = main([*common, "submit", str(requests), "--endpoint", "/v1/chat/completions",
                 "--metadata", "job=cli", "--wait", "--interval", "0.2"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed
    # (the emulator's own log lines share stdout in this process)
    batch_id = next(line for line in printed.out.splitlines() if line.startswith("batch_"))
    assert f"{batch_id} completed" in printed.err
    # Then it is listed and its status is shown
    assert main([*common, "list"]) == 0
    assert batch_id in capsys.readouterr().out
    assert main([*common, "status", batch_id]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[out.index("{\n") :])  # after the emulator's log lines
    assert status["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert status["metadata"] == {"job": "cli"}
    # And its output downloads, a line per request
    output = tmp_path / "out.jsonl"
    assert main([*common, "download", batch_id, "--output", str(output)]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"req-{i}" for i in range(5)]
    assert all(line["response"]["status_code"] == 200 for line in lines)
