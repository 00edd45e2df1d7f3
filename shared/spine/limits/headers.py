"""OpenAI-style x-ratelimit-* header values."""

from __future__ import annotations

import math


def reset_text(seconds: float) -> str:
    """OpenAI's duration format: '20ms', '1s', '6m0s', '1h2m3s'."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
