"""Who is calling: API keys now, JWTs next; both end as a `Principal`."""

from spine.auth.principal import Principal

__all__ = ["Principal"]
