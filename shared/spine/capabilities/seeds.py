"""The system prompts behind the capabilities, seeded into the prompt registry on
first use. Each capability renders its prompt with the request's fields as
variables; the version's system prompt carries the instructions. Editing a prompt
through the prompts API (a new version, or `production` pointed at one) changes the
capability; a rollback restores it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from spine.schemas.capabilities import (
    ClassificationsAnswer,
    CommitAnswer,
    EntitiesAnswer,
    RewriteMode,
    SummaryAnswer,
    TitleAnswer,
)

CATEGORY = "capability"


@dataclass(frozen=True)
class Seed:
    slug: str
    name: str
    system_prompt: str
    template: str
    # The answer's shape (JSON); None: the answer is plain text.
    answer: type[BaseModel] | None = None

    @property
    def description(self) -> str:
        return f"Instructions of the {self.name} capability."


SUMMARIZE = Seed(
    slug="summarize",
    name="Summarize",
    system_prompt=(
        "You summarize text faithfully. Never add facts that are not in the text. "
        "Answer with a JSON object: 'summary' (the summary) and 'key_points' (the "
        "main points, one short sentence each)."
    ),
    template=(
        "Summarize the content below in at most {{ max_sentences }} sentences, "
        "written as {{ output_format }}. Focus on: {{ focus }}.\n\n"
        "Content:\n{{ content }}"
    ),
    answer=SummaryAnswer,
)

EXTRACT = Seed(
    slug="extract-entities",
    name="Extract entities",
    system_prompt=(
        "You extract named entities. Copy each entity's text exactly as it appears in "
        "the content. Answer with a JSON object: 'entities', a list of objects with "
        "'text', 'type' (one of the requested types) and 'confidence' (0 to 1)."
    ),
    template="Entity types: {{ entity_types }}\n\nContent:\n{{ content }}",
    answer=EntitiesAnswer,
)

CLASSIFY = Seed(
    slug="classify",
    name="Classify",
    system_prompt=(
        "You classify text into the given categories only. Answer with a JSON object: "
        "'classifications', a list of objects with 'category' (exactly one of the "
        "given categories) and 'confidence' (0 to 1), most likely first."
    ),
    template=("Categories: {{ categories }}\n{{ label_rule }}\n\nContent:\n{{ content }}"),
    answer=ClassificationsAnswer,
)

INFER_TITLE = Seed(
    slug="infer-title",
    name="Infer title",
    system_prompt=(
        "You write short, specific titles. Answer with a JSON object: 'title', without "
        "quotes or a final period."
    ),
    template="Write a title of at most {{ max_words }} words for:\n\n{{ content }}",
    answer=TitleAnswer,
)

GENERATE_COMMIT = Seed(
    slug="generate-commit",
    name="Generate commit message",
    system_prompt=(
        "You write git commit messages from diffs. Answer with a JSON object: "
        "'commit_message', 'feature_groups' (objects with 'scope', 'description' and "
        "'files', the changed paths they cover) and 'suggested_tags'."
    ),
    template=(
        "Style: {{ style }}. {{ scope_rule }} At most {{ max_length }} characters.\n"
        "Conversation about the change:\n{{ chat_context }}\n\nChanged files:\n{{ files }}"
    ),
    answer=CommitAnswer,
)

TRANSLATE = Seed(
    slug="translate",
    name="Translate",
    system_prompt=(
        "You translate text. Answer with the translation only, nothing before or after "
        "it. Text of the form [[CODE_BLOCK_n]] is a placeholder: copy it unchanged."
    ),
    template=(
        "Translate from {{ source_language }} into {{ target_language }}. "
        "{{ formatting_rule }}\n\n{{ content }}"
    ),
)

_REWRITE_STYLE = {
    RewriteMode.CLEAN: "Fix spelling, grammar and punctuation; change nothing else.",
    RewriteMode.FORMAT: "Give it clear structure with headings, lists and paragraphs.",
    RewriteMode.ORGANIZE: "Reorder it so related points sit together, in a logical order.",
    RewriteMode.PROFESSIONAL: "Make the tone professional and precise.",
    RewriteMode.CASUAL: "Make the tone casual and friendly.",
    RewriteMode.SUMMARIZE: "Make it shorter, keeping every important point.",
    RewriteMode.TECHNICAL: "Make it technically precise, for engineers.",
}


def _rewrite(mode: RewriteMode) -> Seed:
    return Seed(
        slug=f"rewrite-{mode.value}",
        name=f"Rewrite ({mode.value})",
        system_prompt=(
            "You rewrite text. " + _REWRITE_STYLE[mode] + " Answer with the rewritten "
            "text only. Text of the form [[CODE_BLOCK_n]] is a placeholder for code: "
            "keep each one exactly once, unchanged."
        ),
        template="Context: {{ context }}\n\nText to rewrite:\n{{ content }}",
    )


REWRITE = {mode: _rewrite(mode) for mode in RewriteMode}

SEEDS: dict[str, Seed] = {
    seed.slug: seed
    for seed in (SUMMARIZE, EXTRACT, CLASSIFY, INFER_TITLE, GENERATE_COMMIT, TRANSLATE)
} | {seed.slug: seed for seed in REWRITE.values()}
