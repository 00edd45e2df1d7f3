"""The app of each Lambda function: which routers it mounts."""

from __future__ import annotations

from fastapi import FastAPI

from spine.api.app import create_app


def chat_app() -> FastAPI:
    # Every call a model answers: chat, text completions, embeddings, OpenAI's
    # Responses API and Anthropic's Messages API.
    from spine.api.routes import chat, embeddings, messages, responses

    return create_app("chat", [chat.router, embeddings.router, responses.router, messages.router])


def models_app() -> FastAPI:
    from spine.api.routes import models

    return create_app("models", [models.router])


def prompts_app() -> FastAPI:
    # execute-prompt lives here, not in chat: it needs the prompt store, and the
    # provider SDKs it may call are imported on first use, so CRUD calls never pay
    # for them.
    # Pipeline definitions too: they are versioned like prompts.
    from spine.api.routes import pipelines, prompts

    return create_app("prompts", [prompts.router, pipelines.router])


def capabilities_app() -> FastAPI:
    # GenAI Spine's task routes (summarize, extract, ...), apart from `prompts`: each
    # API event adds to a function's resource policy (Lambda's limit is 20 KB), and
    # these calls scale and fail like model calls, not like prompt edits. The
    # provider SDKs are imported on first use, as in `prompts`. Multi-model reviews
    # live here too: they are capability calls (seeded prompts, checked answers).
    from spine.api.routes import capabilities, reviews

    return create_app("capabilities", [capabilities.router, reviews.router])


def sessions_app() -> FastAPI:
    # POST /v1/sessions/{id}/messages calls models: the provider SDKs are imported
    # on first use, so the CRUD calls never pay for them.
    from spine.api.routes import sessions

    return create_app("sessions", [sessions.router])


def auth_app() -> FastAPI:
    # Identity: the token exchange and key administration.
    from spine.api.routes import auth, keys

    return create_app("auth", [auth.router, keys.router])


def usage_app() -> FastAPI:
    # The executions log is a view over the same ledger.
    from spine.api.routes import executions, usage

    return create_app("usage", [usage.router, executions.router])


def batches_app() -> FastAPI:
    # OpenAI's Files, Uploads and Batch APIs; the lines run in the `batch` function
    # (spine.batches.handler). Its bodies carry file content, up to Lambda's 6 MB.
    from spine.api.routes import batches, files
    from spine.settings import get_settings

    return create_app(
        "batches",
        [files.router, batches.router],
        max_body_bytes=get_settings().batch.max_upload_body_bytes + 64 * 1024,
    )


def health_app() -> FastAPI:
    from spine.api.routes import health

    return create_app("health", [health.router])


def admin_app() -> FastAPI:
    # The admin web app's routes: the caller's identity, the worker's model lifecycle,
    # a models.yaml check.
    from spine.api.routes import admin

    return create_app("admin", [admin.router])
