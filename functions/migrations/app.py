"""Lambda entry of the `migrations` function: the custom resource that applies the
database migrations on every deploy (spine.migrations_resource)."""

from spine.migrations_resource import handler

__all__ = ["handler"]
