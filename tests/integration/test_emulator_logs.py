"""Log lines through `spine local` name the function that wrote them: functions share
the emulator's process, and a streamed chat once logged under the name of whichever
function a buffered request had run last."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url

__all__ = ["emulator_url"]


def test_chat_logs_name_the_chat_function_after_another_function_ran(
    emulator_url: str, api_key: str, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    # Given a buffered request to another function (models)
    assert httpx.get(f"{emulator_url}/v1/models", headers=headers).status_code == 200
    capsys.readouterr()
    # When a chat completion runs (the web-adapter path)
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"{emulator_url}/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    # Then its log lines name the chat function and carry its request id
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    finished = [x for x in lines if x.get("message") == "request finished"]
    assert finished, lines
    assert {x.get("function_name") for x in finished} == {"ChatFunction"}
    assert finished[-1]["correlation_id"] == answer.headers["x-request-id"]
