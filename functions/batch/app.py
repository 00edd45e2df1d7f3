"""Lambda entry of the `batch` function: the batch work queue's consumer and the
batches' expiry schedule (spine.batches.handler)."""

from spine.batches.handler import handler

__all__ = ["handler"]
