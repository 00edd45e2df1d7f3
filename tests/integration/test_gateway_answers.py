"""What API Gateway answers itself (template.yaml's GatewayResponses, which `spine local`
renders as deployed API Gateway does): an unknown URL or method is OpenAI's 404
"Invalid URL" in OpenAI's error shape with x-request-id, so an SDK raises NotFoundError
instead of PermissionDeniedError (which sent users checking their key)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.integration.conftest import Env
from tests.integration.emulator import emulator_url

__all__ = ["emulator_url"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),  # a wrong method
        ("POST", "/chat/completions"),  # a missing /v1
        ("GET", "/v1/no-such-route"),
        ("OPTIONS", "/v1/models"),
    ],
)
def test_an_unknown_url_or_method_is_openais_404(
    emulator_url: str, api_key: str, env: Env, method: str, path: str
) -> None:
    response = httpx.request(
        method, emulator_url + path, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 404, response.text
    body = response.json()
    assert body == {
        "error": {
            "message": f"Invalid URL ({method} {path})",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }
    assert response.headers["x-request-id"]


def test_the_sdk_raises_not_found_for_a_wrong_base_url(
    emulator_url: str, api_key: str, env: Env
) -> None:
    # A base URL without /v1: the SDK's error must point at the URL, not the key
    with (
        openai.OpenAI(base_url=emulator_url, api_key=api_key, max_retries=0) as sdk,
        pytest.raises(openai.NotFoundError) as caught,
    ):
        sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert "Invalid URL (POST /chat/completions)" in str(caught.value)


def test_a_streaming_function_past_the_gateways_timeout_is_openais_504(
    env: Env, api_key: str
) -> None:
    from tests.fakes.script import Hang
    from tests.integration.emulator import running_emulator

    # Given a provider that says nothing, and a gateway that waits 1 s for a response
    env.fakes.script("openai", Hang(10))
    with running_emulator(env, pool_size=1, gateway_timeout=1.0) as url:
        # When a stream is asked of the chat function (served by Lambda Web Adapter)
        response = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={
                "model": "gpt-test",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
            timeout=30,
        )
    # Then API Gateway's own answer is shaped by GatewayResponses, as for any function
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "gateway_timeout"
    assert response.headers["x-request-id"]
