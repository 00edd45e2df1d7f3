"""The models function: OpenAI's list/retrieve shapes plus Spine's fields."""

from __future__ import annotations

import time

from tests.integration.conftest import Env
from tests.integration.gateway import Gateway


def test_list_has_openai_shape_and_pricing(gateway: Gateway, api_key: str) -> None:
    result = gateway.request("GET", "/v1/models", key=api_key)
    assert result.status == 200
    body = result.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    gpt = by_id["gpt-test"]
    assert {"id", "object", "created", "owned_by"} <= set(gpt)
    assert gpt["object"] == "model"
    assert gpt["pricing"]["input"] == 0.15
    assert gpt["pricing"]["cached_input"] == 0.075
    assert "json_schema" in gpt["capabilities"]
    assert gpt["context_window"] == 8000
    # Profiles are listed too, with what they resolve to.
    assert by_id["prod"]["resolves_to"] == "gpt-test"
    assert by_id["prod"]["profile"]["parameters"] == {"temperature": 0.3, "max_tokens": 50}
    # And operator aliases, with the profile they point at.
    assert by_id["default"]["resolves_to"] == "gpt-test"
    assert by_id["default"]["profile"]["name"] == "prod"


def test_retrieve_by_id_alias_and_profile(gateway: Gateway, api_key: str) -> None:
    assert gateway.request("GET", "/v1/models/gpt-test", key=api_key).json()["id"] == "gpt-test"
    alias = gateway.request("GET", "/v1/models/gpt-alias", key=api_key).json()
    assert (alias["id"], alias["resolves_to"]) == ("gpt-alias", "gpt-test")
    profile = gateway.request("GET", "/v1/models/default", key=api_key).json()
    assert profile["profile"]["name"] == "prod"


def test_unknown_model_is_404_even_with_a_slash(gateway: Gateway, api_key: str) -> None:
    result = gateway.request("GET", "/v1/models/org/no-such-model", key=api_key)
    assert result.status == 404
    assert result.error["code"] == "model_not_found"
    assert result.error["param"] == "model"


def test_model_ids_with_slashes_resolve(gateway: Gateway, env: Env, api_key: str) -> None:
    env.write_models(
        env.models_path.read_text().replace("aliases: [gpt-alias]", "aliases: [gpt-alias, org/gpt]")
    )
    time.sleep(0.01)
    result = gateway.request("GET", "/v1/models/org/gpt", key=api_key)
    assert result.status == 200, result.body
    assert result.json()["resolves_to"] == "gpt-test"


def test_listing_needs_a_key(gateway: Gateway) -> None:
    result = gateway.request("GET", "/v1/models")
    assert result.status == 401
    assert result.error["type"] == "authentication_error"


def test_edit_of_models_yaml_is_served_without_restart(
    gateway: Gateway, env: Env, api_key: str
) -> None:
    # Given a running function
    assert gateway.request("GET", "/v1/models/gpt-test", key=api_key).status == 200
    original = env.models_path.read_text()
    # When an operator renames a model
    env.write_models(original.replace("id: gpt-test", "id: gpt-renamed"))
    # Then the same warm function serves the new registry
    assert gateway.request("GET", "/v1/models/gpt-renamed", key=api_key).status == 200
    assert gateway.request("GET", "/v1/models/gpt-test", key=api_key).status == 404


def test_invalid_edit_is_never_served(gateway: Gateway, env: Env, api_key: str) -> None:
    original = env.models_path.read_text()
    assert gateway.request("GET", "/v1/models/gpt-test", key=api_key).status == 200
    # When an edit fails validation (negative price, renamed model)
    env.write_models(
        original.replace("id: gpt-test", "id: gpt-broken").replace("input: 0.15", "input: -1")
    )
    # Then the last good registry keeps serving
    assert gateway.request("GET", "/v1/models/gpt-test", key=api_key).status == 200
    assert gateway.request("GET", "/v1/models/gpt-broken", key=api_key).status == 404
    # And a later good edit is picked up
    env.write_models(original.replace("id: gpt-test", "id: gpt-fixed"))
    assert gateway.request("GET", "/v1/models/gpt-fixed", key=api_key).status == 200


def test_function_refuses_to_start_with_an_invalid_models_file(env: Env) -> None:
    import pytest

    from spine.errors import ConfigError

    env.write_models("version: 1\nmodels: []\n")
    with pytest.raises(ConfigError) as caught:
        Gateway().module("ModelsFunction")
    assert "models.yaml:2: models:" in caught.value.problems[0]
