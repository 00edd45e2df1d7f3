"""The prompt template language: placeholders only, one pass, errors that name."""

from __future__ import annotations

import pytest

from spine.errors import InvalidRequestError
from spine.prompts.templates import declare, placeholders, redeclare, render
from spine.schemas.prompt_content import PromptContent, Variable
from spine.schemas.prompts import MAX_TEMPLATE_CHARS


def content(template: str, *variables: Variable) -> PromptContent:
    return PromptContent(template, variables or declare(template, None))


def test_placeholders_in_order_of_first_use_with_optional_spaces() -> None:
    assert placeholders("{{b}} {{ a }} {{  b  }} {{a}}") == ["b", "a"]


@pytest.mark.parametrize(
    "literal",
    [
        "{{ a.b }}",  # no attribute access
        "{{ a|upper }}",  # no filters
        "{{ a() }}",
        "{% for x in y %}",
        "{{ 1a }}",
        "{ a }",
        "{{ a }",
        "{0.__class__.__mro__}",  # str.format's escape hatch is plain text here
        "${a} $a",  # string.Template syntax is plain text
    ],
)
def test_anything_but_a_bare_name_is_literal_text(literal: str) -> None:
    assert placeholders(literal) == []
    assert render(PromptContent(literal, ()), {}) == literal


def test_render_is_one_pass_values_are_never_rescanned() -> None:
    c = content("{{a}}-{{b}}")
    assert render(c, {"a": "{{b}}", "b": "{{a}}"}) == "{{b}}-{{a}}"


def test_render_replaces_every_occurrence_and_keeps_backslashes() -> None:
    c = content("{{x}} and {{ x }}")
    assert render(c, {"x": r"\1 \g<0>"}) == r"\1 \g<0> and \1 \g<0>"


def test_non_string_values_use_json_spelling() -> None:
    c = content("{{a}} {{b}} {{c}}")
    assert render(c, {"a": True, "b": 3, "c": 2.5}) == "true 3 2.5"


def test_defaults_and_optional_variables() -> None:
    c = content(
        "{{a}}|{{b}}|{{c}}",
        Variable("a"),
        Variable("b", default="B"),
        Variable("c", required=False),
    )
    assert render(c, {"a": "A"}) == "A|B|"
    assert render(c, {"a": "A", "b": "x", "c": "y"}) == "A|x|y"


def test_missing_required_variable_is_named() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        render(content("{{ first }} {{ second }}"), {"first": "x"})
    assert caught.value.param == "variables.second"
    assert caught.value.code == "missing_variable"
    assert "second" in caught.value.message


def test_extra_variable_is_named() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        render(content("{{ a }}"), {"a": "x", "zeta": "y"})
    assert caught.value.param == "variables.zeta"
    assert caught.value.code == "unknown_variable"


def test_declared_variables_must_match_the_template() -> None:
    with pytest.raises(InvalidRequestError, match="undeclared variable\\(s\\): b"):
        declare("{{a}} {{b}}", [Variable("a")])
    with pytest.raises(InvalidRequestError, match="not used by the template: c") as caught:
        declare("{{a}}", [Variable("a"), Variable("c")])
    assert caught.value.param == "variables[1]"
    with pytest.raises(InvalidRequestError, match="declared twice"):
        declare("{{a}}", [Variable("a"), Variable("a")])


def test_a_variable_with_a_default_is_stored_as_optional() -> None:
    [variable] = declare("{{a}}", [Variable("a", required=True, default="x")])
    assert variable.required is False and variable.default == "x"


def test_redeclare_keeps_known_declarations_and_adds_new_names() -> None:
    previous = (Variable("a", default="A", description="kept"), Variable("gone"))
    assert redeclare("{{ a }} {{ new }}", previous) == (previous[0], Variable("new"))


def test_template_size_limit() -> None:
    declare("x" * MAX_TEMPLATE_CHARS, None)
    with pytest.raises(InvalidRequestError) as caught:
        declare("x" * (MAX_TEMPLATE_CHARS + 1), None)
    assert caught.value.param == "template"


def test_content_hash_covers_every_part_of_the_content() -> None:
    base = PromptContent("{{a}}", (Variable("a"),), "m", {"temperature": 0.1})
    variants = [
        PromptContent("{{ a}}", (Variable("a"),), "m", {"temperature": 0.1}),
        PromptContent("{{a}}", (Variable("a", description="d"),), "m", {"temperature": 0.1}),
        PromptContent("{{a}}", (Variable("a"),), None, {"temperature": 0.1}),
        PromptContent("{{a}}", (Variable("a"),), "m", {"temperature": 0.2}),
    ]
    hashes = {v.content_hash() for v in variants}
    assert base.content_hash() not in hashes and len(hashes) == len(variants)
    same = PromptContent("{{a}}", (Variable("a"),), "m", {"temperature": 0.1})
    assert same.content_hash() == base.content_hash()
