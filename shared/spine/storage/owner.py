"""Who owns a stored row (prompts, chat sessions): a principal within a tenant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Owner:
    """A principal within a tenant ('' for none). Every statement on owned rows
    filters on both, so another principal's row is simply not found."""

    tenant: str
    subject: str

    def params(self) -> dict[str, str]:
        return {"tenant": self.tenant, "owner": self.subject}


# Nobody: the owner of the system prompts (every caller reads them, admins change
# them). No principal has an empty subject (`spine.prompts.service.owner_of`).
SYSTEM_OWNER = Owner(tenant="", subject="")


def tenant_owner(tenant: str) -> Owner:
    """The owner of a tenant's shared prompts: the tenant, no principal. Only a tenant
    has one ('' is the system prompts' owner)."""
    return Owner(tenant=tenant, subject="")
