"""Lambda entry of the `workflows` function: one pipeline step per SQS message
(spine.workflows.handler)."""

from spine.workflows.handler import handler

__all__ = ["handler"]
