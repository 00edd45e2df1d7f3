"""Lambda entry of the `maintenance` function: hourly trimming of the tables that
grow with traffic (spine.maintenance)."""

from spine.maintenance import handler

__all__ = ["handler"]
