"""The dispatcher: API keys by prefix, JWTs by shape, anything else is 401."""

from __future__ import annotations

import pytest

from spine.auth.authenticate import authenticate
from spine.auth.jwt import issue_token
from spine.auth.principal import Principal
from spine.errors import AuthenticationError
from spine.settings import Settings
from spine.storage.db import Database


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("", "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "missing_api_key"),
        ("Bearer ", "missing_api_key"),
        ("Bearer sk-openai-not-ours", "invalid_api_key"),
        ("Bearer one.two", "invalid_api_key"),
        ("Bearer not.a.jwt", "malformed_token"),
    ],
)
async def test_refusals_keep_openai_shapes(header: str | None, code: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await authenticate(header, Settings(), Database())
    assert (caught.value.status_code, caught.value.code) == (401, code)


async def test_a_jwt_is_verified_not_looked_up() -> None:
    token = issue_token(Principal(subject="u", credential="api_key"), Settings()).token
    principal = await authenticate(f"bearer {token}", Settings(), Database())
    assert (principal.subject, principal.credential) == ("u", "jwt")
