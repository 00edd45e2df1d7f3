"""Pipeline definitions (`/v1/pipelines`): steps that call models and steps that
decide, fan out and reshape, with variables flowing between them by name.

A definition is data, checked whole before it is stored (`spine.workflows.definition`):

    inputs: [ticket]                   # the names a run's `inputs` must give
    steps:
      - id: brief                      # its output is the variable `brief`
        type: capability
        capability: summarize
        with: {content: ticket}        # field -> JMESPath over the variables
      - id: urgent
        type: condition
        if: "contains(brief.summary, 'outage')"
      - id: page
        type: prompt
        prompt: page-oncall            # a stored prompt's slug, at its label
        when: urgent                   # skipped (output null) when falsy
        with: {summary: brief.summary}
      - id: tags
        type: map                      # the inner step once per item, 4 at a time
        over: ticket_lines
        concurrency: 4
        step: {type: chat, model: default, prompt: "Tag: {{ item }}", with: {item: item}}
      - id: result
        type: transform
        expression: "{summary: brief.summary, tags: tags}"
    output: result

Expressions are JMESPath (no code runs: a query language over JSON); chat prompts
use the prompt template language (`{{ name }}` and nothing else). A step runs once
every variable its expressions name is known, so order is inferred, and a cycle is
refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from spine.schemas.prompts import Slug
from spine.schemas.public import PublicModel

# A variable or step id: what JMESPath reads as a plain field name.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Expression = Annotated[str, Field(min_length=1, max_length=4000)]
MAX_STEPS = 50
MAX_MAP_CONCURRENCY = 16

CapabilityName = Literal[
    "summarize", "extract", "classify", "rewrite", "infer-title", "generate-commit", "translate"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _StepBase(_Strict):
    # The variable the step's output becomes; required of top-level steps, absent
    # from a map's inner step (spine.workflows.definition checks both).
    id: Identifier | None = None
    # Skipped (output null) when this expression is falsy.
    when: Expression | None = None


class _CallStep(_StepBase):
    # Values the step is given: name -> expression over the run's variables.
    with_: dict[Identifier, Expression] = Field(default_factory=dict, alias="with")


class PromptStep(_CallStep):
    """A stored prompt, rendered with `with` and run on its model (or `model`)."""

    type: Literal["prompt"]
    prompt: Slug
    label: Slug = "production"
    model: str | None = Field(default=None, max_length=256)


class CapabilityStep(_CallStep):
    """One of the capabilities (`/v1/summarize`, ...): `with` gives its request's
    fields; its output is the capability's answer."""

    type: Literal["capability"]
    capability: CapabilityName
    model: str | None = Field(default=None, max_length=256)


class ChatStep(_CallStep):
    """A chat call: `prompt` (a template over `with`) as the user turn."""

    type: Literal["chat"]
    model: str = Field(min_length=1, max_length=256)
    system: str | None = Field(default=None, max_length=100_000)
    prompt: str = Field(min_length=1, max_length=100_000)


class TransformStep(_StepBase):
    """A JMESPath expression over the variables; its value is the output."""

    type: Literal["transform"]
    expression: Expression


class ConditionStep(_StepBase):
    """A JMESPath expression whose truth is the output: later steps name it in `when`."""

    type: Literal["condition"]
    if_: Expression = Field(alias="if")


InnerStep = Annotated[
    PromptStep | CapabilityStep | ChatStep | TransformStep, Field(discriminator="type")
]


class MapStep(_StepBase):
    """The inner step once per item of `over`, the item as the variable `as`;
    `concurrency` of them at once. The output is the list of their outputs."""

    type: Literal["map"]
    over: Expression
    as_: Identifier = Field(default="item", alias="as")
    concurrency: Annotated[int, Field(ge=1, le=MAX_MAP_CONCURRENCY, strict=True)] = 4
    step: InnerStep


Step = Annotated[
    PromptStep | CapabilityStep | ChatStep | TransformStep | ConditionStep | MapStep,
    Field(discriminator="type"),
]


class PipelineDefinition(_Strict):
    inputs: list[Identifier] = Field(default_factory=list, max_length=100)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    # The run's output: an expression over the variables (the last step's by default).
    output: Expression | None = None


# --- the API ---------------------------------------------------------------------------


def _from_yaml(value: Any) -> Any:
    """A definition given as YAML text (as one writes it by hand), read as the object
    it spells; anything else is left to the model's own checks."""
    if not isinstance(value, str):
        return value
    import yaml  # noqa: PLC0415 - only definitions written as YAML need it

    class NoAliases(yaml.SafeLoader):
        """YAML without anchors' aliases: a few bytes of nested aliases expand to
        gigabytes (the "billion laughs"), and a definition never needs one."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, "aliases are not allowed", mark)
            return super().compose_node(parent, index)

    try:
        loaded = yaml.load(value, Loader=NoAliases)  # noqa: S506 - a SafeLoader, less aliases
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(loaded, dict):
        raise ValueError("YAML that is not a mapping of inputs, steps and output")
    return loaded


# A definition as an object, or as YAML text.
Definition = Annotated[PipelineDefinition, BeforeValidator(_from_yaml)]


class PipelineCreate(_Strict):
    slug: Slug
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: Definition


class PipelineVersionCreate(_Strict):
    definition: Definition
    description: str | None = Field(default=None, max_length=2000)


class PipelineVersionView(PublicModel):
    object: Literal["pipeline.version"] = "pipeline.version"
    pipeline_id: str
    version: int
    definition: dict[str, Any]
    # The steps in an order that runs each after what it reads.
    order: list[str]
    description: str | None = None
    created_at: int


class PipelineView(PublicModel):
    object: Literal["pipeline"] = "pipeline"
    id: str
    slug: str
    name: str
    description: str | None = None
    latest_version: int
    created_at: int
    updated_at: int
    definition: dict[str, Any] | None = None  # the latest version's


# --- runs --------------------------------------------------------------------------------


class RunCreate(_Strict):
    """`POST /v1/pipelines/{id}/runs`: the inputs the definition names, and the version
    to run (the latest by default)."""

    inputs: dict[Identifier, Any] = Field(default_factory=dict)
    version: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)] | None = None


RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class RunView(PublicModel):
    object: Literal["pipeline.run"] = "pipeline.run"
    id: str
    pipeline_id: str
    version: int
    status: RunStatus
    inputs: dict[str, Any]
    output: Any = None
    error: dict[str, Any] | None = None
    cancel_requested: bool
    created_at: int
    started_at: int | None = None
    finished_at: int | None = None


class RunStepView(PublicModel):
    object: Literal["pipeline.run.step"] = "pipeline.run.step"
    id: str
    status: Literal["pending", "running", "succeeded", "failed", "skipped", "cancelled"]
    needs: list[str]
    attempts: int
    input: Any = None
    output: Any = None
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    started_at: int | None = None
    finished_at: int | None = None


class RunStepList(PublicModel):
    object: Literal["list"] = "list"
    data: list[RunStepView]
