"""Deterministic text helpers the echo answers share."""

from __future__ import annotations

from typing import Any


def count_words(text: str) -> int:
    return len(text.split())


def message_text(message: dict[str, Any]) -> str:
    """Text of an OpenAI- or Anthropic-shaped message (string or list of parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""
