"""The database migrations as a CloudFormation custom resource (`DatabaseMigrations`
in template.yaml): every deploy that publishes a new layer, and so possibly new
migrations, applies the pending ones before the functions are updated, and a failed
migration fails the deploy with its error, which CloudFormation shows and rolls back.

- Create and Update: `spine.storage.migrate.apply_migrations` against the deployed
  database (the URL secret). Each migration runs in its own transaction under a
  transaction-scoped advisory lock, so two deploys (or a deploy and `spine migrate`)
  never apply one twice, and it works through a transaction-mode pooler.
- Delete: nothing. Removing the stack never drops data; the physical id is fixed, so
  an Update never makes CloudFormation delete an "old" resource either.

The answer is always sent, also when the function is about to time out (CloudFormation
would otherwise wait an hour for it).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from spine.aws.cloudformation import send_response
from spine.observability import get_logger
from spine.settings import get_settings
from spine.storage import embedded
from spine.storage.migrate import apply_migrations, load_migrations

logger = get_logger(__name__)

PHYSICAL_RESOURCE_ID = "spine-database-migrations"
# Time kept back to send the answer before Lambda stops the function.
_ANSWER_MARGIN_SECONDS = 10.0


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


def apply_pending() -> dict[str, str]:
    """Migrate the configured database; what CloudFormation gets as the resource's
    attributes (`!GetAtt DatabaseMigrations.Applied`, `.Version`)."""

    settings = get_settings()
    url = embedded.database_url(settings)
    applied = apply_migrations(url, connect_timeout=settings.database.connect_timeout_seconds)
    shipped = load_migrations()
    return {
        "Applied": ",".join(m.label for m in applied),
        "Version": shipped[-1].version if shipped else "",
    }


def handle(
    event: Mapping[str, Any],
    context: LambdaContext,
    migrate: Callable[[], dict[str, str]] = apply_pending,
) -> None:
    """Answer one CloudFormation request (the Lambda handler, `migrate` injectable)."""
    request = event.get("RequestType")
    logger.info("custom resource request", extra={"request_type": request})
    if request == "Delete":
        send_response(event, "SUCCESS", physical_resource_id=_physical_id(event))
        return
    budget = context.get_remaining_time_in_millis() / 1000 - _ANSWER_MARGIN_SECONDS
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        data = pool.submit(migrate).result(timeout=max(budget, 1.0))
    except concurrent.futures.TimeoutError:
        logger.error("migrations timed out")
        send_response(
            event,
            "FAILED",
            physical_resource_id=_physical_id(event),
            reason=f"database migrations did not finish within {budget:.0f} s",
        )
        return
    except Exception as exc:
        logger.exception("migrations failed")
        send_response(
            event,
            "FAILED",
            physical_resource_id=_physical_id(event),
            reason=f"database migrations failed: {exc}",
        )
        return
    finally:
        pool.shutdown(wait=False)
    logger.info("migrations applied", extra=data)
    send_response(event, "SUCCESS", physical_resource_id=PHYSICAL_RESOURCE_ID, data=data)


def _physical_id(event: Mapping[str, Any]) -> str:
    # A failed Create has no id yet; afterwards keep the one CloudFormation knows.
    return str(event.get("PhysicalResourceId") or PHYSICAL_RESOURCE_ID)


def handler(event: dict[str, Any], context: LambdaContext) -> None:
    handle(event, context)
