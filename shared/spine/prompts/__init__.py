"""Prompts with immutable versions, labels and a small, safe template language."""
