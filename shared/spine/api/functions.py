"""The app of each Lambda function: which routers it mounts."""

from __future__ import annotations

from fastapi import FastAPI

from spine.api.app import create_app


def chat_app() -> FastAPI:
    from spine.api.routes import chat

    return create_app("chat", [chat.router])


def models_app() -> FastAPI:
    from spine.api.routes import models

    return create_app("models", [models.router])


def health_app() -> FastAPI:
    from spine.api.routes import health

    return create_app("health", [health.router])
