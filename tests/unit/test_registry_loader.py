"""models.yaml validation: every problem is reported as FILE:LINE: field: problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from spine.errors import ConfigError, ModelNotFoundError
from spine.registry import load_registry, parse_registry
from spine_tools.cli import main

REPO = Path(__file__).resolve().parents[2]

GOOD = textwrap.dedent(
    """\
    version: 1
    models:
      - id: fast
        provider: openai
        model: gpt-4o-mini
        aliases: [quick]
        api_key: {env: OPENAI_API_KEY}
        pricing: {input: 0.15, output: 0.6, cached_input: 0.075}
        context_window: 128000
        max_output_tokens: 16384
        defaults: {temperature: 0.5}
        fallbacks: [slow]
      - id: slow
        provider: gemini
        model: gemini-2.5-flash
        context_window: 1048576
    profiles:
      production:
        model: quick
        temperature: 0.7
        max_tokens: 100
        system_prompt: Be brief.
    aliases:
      default: production
      cheap: fast
    """
)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_registry(text)
    return caught.value.problems


def test_shipped_models_yaml_is_valid() -> None:
    registry = load_registry(REPO / "models.yaml")
    providers = {m.provider.value for m in registry.models}
    assert {"openai", "gemini", "llamacpp"} <= providers
    assert registry.resolve("default").entry.provider.value == "llamacpp"


def test_resolves_ids_aliases_profiles_and_top_level_aliases() -> None:
    registry = parse_registry(GOOD)
    assert registry.resolve("fast").entry.id == "fast"
    assert registry.resolve("quick").entry.id == "fast"
    assert registry.resolve("cheap").entry.id == "fast"
    profile = registry.resolve("default")
    assert profile.entry.id == "fast"
    assert profile.profile == "production"
    assert profile.profile_params == {"temperature": 0.7, "max_tokens": 100}
    assert profile.system_prompt == "Be brief."
    with pytest.raises(ModelNotFoundError):
        registry.resolve("nope")


def test_missing_version() -> None:
    text = GOOD.replace("version: 1\n", "")
    assert problems_of(text) == ["models.yaml:1: version: missing"]


def test_unknown_provider_names_its_line() -> None:
    text = GOOD.replace("provider: gemini", "provider: gemeni")
    [problem] = problems_of(text)
    assert problem.startswith("models.yaml:14: models[1].provider: must be one of")
    assert "'gemeni'" in problem


def test_negative_price_names_the_field() -> None:
    text = GOOD.replace("input: 0.15", "input: -0.15")
    [problem] = problems_of(text)
    assert problem.startswith("models.yaml:8: models[0].pricing.input:")
    assert "greater than or equal to 0" in problem


def test_duplicate_id() -> None:
    text = GOOD.replace("  - id: slow", "  - id: fast").replace("fallbacks: [slow]", "")
    problems = problems_of(text)
    assert any(
        p.startswith("models.yaml:13: models[1].id: duplicate id 'fast'") for p in problems
    ), problems


def test_fallback_to_missing_model() -> None:
    text = GOOD.replace("fallbacks: [slow]", "fallbacks: [slower]")
    assert problems_of(text) == [
        "models.yaml:12: models[0].fallbacks[0]: fallback to a missing model 'slower'"
    ]


def test_fallback_cycle() -> None:
    text = GOOD.replace(
        "    context_window: 1048576\n", "    context_window: 1048576\n    fallbacks: [quick]\n"
    )
    [problem] = problems_of(text)
    assert "fallback cycle: fast -> slow -> fast" in problem


def test_alias_cycle() -> None:
    text = GOOD.replace("  cheap: fast", "  cheap: dear\n  dear: cheap")
    assert problems_of(text) == [
        "models.yaml:25: aliases.cheap: alias cycle: cheap -> dear -> cheap"
    ]


def test_unknown_field_and_every_problem_at_once() -> None:
    text = (
        GOOD.replace("version: 1\n", "")
        .replace("context_window: 128000", "context_window: 128000\n    contxt: 5")
        .replace("fallbacks: [slow]", "fallbacks: [gone]")
    )
    problems = problems_of(text)
    assert len(problems) == 3, problems
    assert problems[0] == "models.yaml:1: version: missing"
    assert "models[0].contxt: unknown field" in problems[1]
    assert "fallback to a missing model 'gone'" in problems[2]


def test_duplicate_yaml_key_is_an_error() -> None:
    text = GOOD.replace("context_window: 128000", "context_window: 128000\n    context_window: 5")
    assert any("duplicate key" in p for p in problems_of(text))


def test_invalid_yaml() -> None:
    [problem] = problems_of("version: 1\nmodels: [\n")
    assert problem.startswith("models.yaml:") and "invalid YAML" in problem


def test_provider_specific_requirements() -> None:
    text = GOOD.replace("provider: gemini", "provider: openai_compatible")
    [problem] = problems_of(text)
    assert "needs a 'base_url'" in problem


def test_cli_validate_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "models.yaml"
    good.write_text(GOOD)
    assert main(["models", "validate", str(good)]) == 0
    assert "ok (2 models, 1 profiles)" in capsys.readouterr().out

    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("input: 0.15", "input: -1"))
    assert main(["models", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:8: models[0].pricing.input:" in err
    assert "1 problem" in err


def test_cli_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "validate", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err
