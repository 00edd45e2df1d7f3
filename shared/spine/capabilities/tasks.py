"""Each capability declared once, as data: its request type, its prompt, the
variables its prompt is rendered with, and how the checked answer becomes its
response. `spine.api.routes.capabilities` runs every one the same way."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from spine.capabilities import seeds
from spine.capabilities.code_blocks import Protected, protect, unprotected
from spine.capabilities.offsets import locate
from spine.capabilities.run import Answered, InvalidAnswer
from spine.capabilities.seeds import Seed
from spine.schemas.capabilities import (
    Classification,
    ClassificationAnswer,
    ClassificationsAnswer,
    ClassifyRequest,
    ClassifyResponse,
    CommitAnswer,
    EntitiesAnswer,
    ExtractRequest,
    ExtractResponse,
    FeatureGroup,
    GenerateCommitRequest,
    GenerateCommitResponse,
    InferTitleRequest,
    InferTitleResponse,
    RewriteRequest,
    RewriteResponse,
    SummarizeRequest,
    SummarizeResponse,
    SummaryAnswer,
    TitleAnswer,
    TranslateRequest,
    TranslateResponse,
)

RequestT = TypeVar("RequestT", bound=BaseModel)
ResponseT = TypeVar("ResponseT", bound=BaseModel)
Values = dict[str, str | int | float | bool]


@dataclass(frozen=True)
class Task(Generic[RequestT, ResponseT]):
    # The route's name: the usage row's endpoint is `capability.<name>`.
    name: str
    request_type: type[RequestT]
    response_type: type[ResponseT]
    seed: Callable[[RequestT], Seed]
    values: Callable[[RequestT], Values]
    # The parsed answer checked against the request (raises InvalidAnswer).
    check: Callable[[RequestT, Any], Any]
    respond: Callable[[RequestT, Answered], ResponseT]
    # Whether `stream: true` is taken (the text capabilities: the request has `stream`).
    streams: bool = False


def _words(text: str) -> int:
    return len(text.split())


# --- summarize ------------------------------------------------------------------------


def _summarize_values(body: SummarizeRequest) -> Values:
    return {
        "content": body.content,
        "max_sentences": body.max_sentences,
        "output_format": "bullet points"
        if body.output_format == "bullet_points"
        else "a paragraph",
        "focus": body.focus or "the main points",
    }


def _summarize_response(body: SummarizeRequest, answered: Answered) -> SummarizeResponse:
    answer: SummaryAnswer = answered.value
    count = _words(answer.summary)
    return SummarizeResponse(
        summary=answer.summary,
        key_points=answer.key_points,
        word_count=count,
        compression_ratio=round(count / max(1, _words(body.content)), 4),
        usage=answered.usage,
    )


SUMMARIZE: Task[SummarizeRequest, SummarizeResponse] = Task(
    name="summarize",
    request_type=SummarizeRequest,
    response_type=SummarizeResponse,
    seed=lambda body: seeds.SUMMARIZE,
    values=_summarize_values,
    check=lambda body, answer: answer,
    respond=_summarize_response,
    streams=True,
)


# --- extract --------------------------------------------------------------------------


def _extract_response(body: ExtractRequest, answered: Answered) -> ExtractResponse:
    answer: EntitiesAnswer = answered.value
    located = locate(
        body.content,
        answer.entities,
        types=body.entity_types,
        include_context=body.include_context,
    )
    return ExtractResponse(
        entities=located.entities,
        entity_count=len(located.entities),
        dropped_entities=located.dropped,
        usage=answered.usage,
    )


EXTRACT: Task[ExtractRequest, ExtractResponse] = Task(
    name="extract",
    request_type=ExtractRequest,
    response_type=ExtractResponse,
    seed=lambda body: seeds.EXTRACT,
    values=lambda body: {"content": body.content, "entity_types": ", ".join(body.entity_types)},
    check=lambda body, answer: answer,
    respond=_extract_response,
)


# --- classify -------------------------------------------------------------------------


def _classify_check(body: ClassifyRequest, answer: ClassificationsAnswer) -> ClassificationsAnswer:
    unknown = [c.category for c in answer.classifications if c.category not in body.categories]
    if unknown:
        raise InvalidAnswer(
            f"category '{unknown[0][:100]}' is not one of the given categories {body.categories}"
        )
    return answer


def _classify_response(body: ClassifyRequest, answered: Answered) -> ClassifyResponse:
    answer: ClassificationsAnswer = answered.value
    ranked = sorted(answer.classifications, key=lambda c: c.confidence, reverse=True)
    unique: list[ClassificationAnswer] = []
    for candidate in ranked:  # the most confident of each category
        if all(c.category != candidate.category for c in unique):
            unique.append(candidate)
    chosen = unique if body.multi_label else unique[:1]
    return ClassifyResponse(
        classifications=[
            Classification(
                category=c.category, confidence=c.confidence if body.include_confidence else None
            )
            for c in chosen
        ],
        primary_category=chosen[0].category,
        usage=answered.usage,
    )


CLASSIFY: Task[ClassifyRequest, ClassifyResponse] = Task(
    name="classify",
    request_type=ClassifyRequest,
    response_type=ClassifyResponse,
    seed=lambda body: seeds.CLASSIFY,
    values=lambda body: {
        "content": body.content,
        "categories": ", ".join(body.categories),
        "label_rule": (
            "Give every category that applies."
            if body.multi_label
            else "Give the one category that fits best."
        ),
    },
    check=_classify_check,
    respond=_classify_response,
)


# --- rewrite and translate (text, code blocks kept) -----------------------------------


def _protected(content: str, keep: bool) -> Protected:
    return protect(content) if keep else unprotected(content)


def _rewrite_response(body: RewriteRequest, answered: Answered) -> RewriteResponse:
    return RewriteResponse(
        original=body.content,
        rewritten=answered.value,
        mode=body.mode.value,
        code_blocks_preserved=len(_protected(body.content, body.preserve_code_blocks).blocks),
        usage=answered.usage,
    )


REWRITE: Task[RewriteRequest, RewriteResponse] = Task(
    name="rewrite",
    request_type=RewriteRequest,
    response_type=RewriteResponse,
    seed=lambda body: seeds.REWRITE[body.mode],
    values=lambda body: {
        "content": _protected(body.content, body.preserve_code_blocks).text,
        "context": body.context or "none given",
    },
    check=lambda body, text: _protected(body.content, body.preserve_code_blocks).restore(text),
    respond=_rewrite_response,
    streams=True,
)


TRANSLATE: Task[TranslateRequest, TranslateResponse] = Task(
    name="translate",
    request_type=TranslateRequest,
    response_type=TranslateResponse,
    seed=lambda body: seeds.TRANSLATE,
    values=lambda body: {
        "content": _protected(body.content, body.preserve_formatting).text,
        "source_language": body.source_language or "the language it is written in",
        "target_language": body.target_language,
        "formatting_rule": (
            "Keep the formatting (line breaks, lists, markup) as it is."
            if body.preserve_formatting
            else ""
        ),
    },
    check=lambda body, text: _protected(body.content, body.preserve_formatting).restore(text),
    respond=lambda body, answered: TranslateResponse(
        translated_text=answered.value,
        source_language=body.source_language,
        target_language=body.target_language,
        usage=answered.usage,
    ),
    streams=True,
)


# --- infer-title ----------------------------------------------------------------------


def _title_check(body: InferTitleRequest, answer: TitleAnswer) -> str:
    title = answer.title.strip().strip("\"'").rstrip(".").strip()
    if not title:
        raise InvalidAnswer("the title is empty")
    if _words(title) > body.max_words:
        raise InvalidAnswer(f"the title has {_words(title)} words; at most {body.max_words}")
    return title


INFER_TITLE: Task[InferTitleRequest, InferTitleResponse] = Task(
    name="infer-title",
    request_type=InferTitleRequest,
    response_type=InferTitleResponse,
    seed=lambda body: seeds.INFER_TITLE,
    values=lambda body: {"content": body.content, "max_words": body.max_words},
    check=_title_check,
    respond=lambda body, answered: InferTitleResponse(title=answered.value, usage=answered.usage),
)


# --- generate-commit ------------------------------------------------------------------

_CONVENTIONAL = re.compile(r"^[a-z]+(\([^)\n]+\))?!?: \S")


def _commit_values(body: GenerateCommitRequest) -> Values:
    files = "\n\n".join(f"{f.status}: {f.path}\n{f.diff}".rstrip() for f in body.files)
    return {
        "style": body.style,
        "scope_rule": "Include a scope." if body.include_scope else "Include no scope.",
        "max_length": body.max_length,
        "chat_context": "\n".join(body.chat_context) or "none",
        "files": files,
    }


def _commit_check(body: GenerateCommitRequest, answer: CommitAnswer) -> CommitAnswer:
    message = answer.commit_message.strip()
    if len(message) > body.max_length:
        raise InvalidAnswer(
            f"the commit message has {len(message)} characters; at most {body.max_length}"
        )
    if body.style == "conventional" and not _CONVENTIONAL.match(message):
        raise InvalidAnswer(
            "the commit message's first line is not a conventional commit ('type(scope): subject')"
        )
    paths = {f.path for f in body.files}
    for group in answer.feature_groups:
        strangers = [p for p in group.files if p not in paths]
        if strangers:
            raise InvalidAnswer(
                f"feature group '{group.scope}' names a file not changed: {strangers[0]}"
            )
    return answer


def _commit_response(body: GenerateCommitRequest, answered: Answered) -> GenerateCommitResponse:
    answer: CommitAnswer = answered.value
    return GenerateCommitResponse(
        commit_message=answer.commit_message.strip(),
        feature_groups=[
            FeatureGroup(scope=g.scope, description=g.description, files=g.files)
            for g in answer.feature_groups
        ],
        suggested_tags=answer.suggested_tags,
        files_analyzed=len(body.files),
        usage=answered.usage,
    )


GENERATE_COMMIT: Task[GenerateCommitRequest, GenerateCommitResponse] = Task(
    name="generate-commit",
    request_type=GenerateCommitRequest,
    response_type=GenerateCommitResponse,
    seed=lambda body: seeds.GENERATE_COMMIT,
    values=_commit_values,
    check=_commit_check,
    respond=_commit_response,
)

TASKS: dict[str, Task[Any, Any]] = {
    task.name: task
    for task in (SUMMARIZE, EXTRACT, CLASSIFY, REWRITE, INFER_TITLE, GENERATE_COMMIT, TRANSLATE)
}
