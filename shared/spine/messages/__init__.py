"""Anthropic's Messages API over the one pipeline: Claude natively, other models translated."""
