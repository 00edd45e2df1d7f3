"""The fakes answer the SDKs' less-used calls too (the adapters do not use them yet)."""

from __future__ import annotations

import openai

from tests.fakes import Fail, FakeProviders, Reply
from tests.fakes import openai_api as wire


async def test_openai_models_list(fake_providers: FakeProviders) -> None:
    async with openai.AsyncOpenAI(base_url=fake_providers.openai_url, api_key="k") as client:
        page = await client.models.list()
    assert "gpt-4o-mini" in [m.id for m in page.data]
    assert fake_providers.last("openai").method == "GET"


async def test_scripts_are_consumed_in_order(fake_providers: FakeProviders) -> None:
    fake_providers.script("openai", Fail(500), Reply(wire.chat_completion("second")))
    async with openai.AsyncOpenAI(
        base_url=fake_providers.openai_url, api_key="k", max_retries=1
    ) as client:
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert answer.choices[0].message.content == "second"
    assert fake_providers.pending("openai") == 0
    assert len(fake_providers.requests("openai")) == 2
