"""Logging, metrics and tracing, in one place for every layer (never under functions/).

- Logger: Powertools JSON logger; the correlation id is the request id.
- Metrics: CloudWatch EMF through Powertools' `single_metric`, which flushes each
  metric on its own. The shared `Metrics` store is process-global, which mixes
  dimensions when the local emulator serves several requests at once; a single
  metric per call has no such state.
- Tracer: X-Ray through Powertools, created on first use (it is disabled outside
  Lambda, and importing the X-Ray SDK is not free).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "spine")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Spine")


class _CurrentStdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at the time of the record, not the one at
    import: tools and tests that redirect stdout (pytest's capture) see the logs."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


# The service's one parent logger owns the JSON handler; modules get children of it
# (Powertools refuses a child whose parent does not exist).
ROOT_LOGGER = Logger(service=SERVICE, logger_handler=_CurrentStdoutHandler())


def get_logger(name: str) -> Logger:
    """One logger per module; all share the service's handler and keys."""
    return Logger(service=SERVICE, child=True)


def bind_function(function_name: str, **keys: object) -> None:
    """Name the Lambda function (and invocation) in this thread's logs.

    Thread-safe keys, not Powertools' `inject_lambda_context` (global keys): the
    emulator runs every function as threads of one process, where global keys named
    whichever function ran last."""
    ROOT_LOGGER.thread_safe_append_keys(function_name=function_name, **keys)


def bind_request(logger: Logger, request_id: str, **keys: object) -> None:
    """Attach the request id (as correlation id) and keys to this request's logs.

    Thread-safe keys: the emulator runs several containers in one process.
    """
    logger.thread_safe_append_keys(correlation_id=request_id, **keys)


def unbind_request(logger: Logger, *keys: str) -> None:
    logger.thread_safe_remove_keys(["correlation_id", *keys])


def emit_metric(name: str, value: float, unit: str, **dimensions: str) -> None:
    """Emit one EMF metric with its own dimensions (e.g. model, provider)."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() in ("1", "true"):
        return
    from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: PLC0415 - the metrics module only when one is emitted

    with single_metric(
        name=name, unit=MetricUnit(unit), value=value, namespace=NAMESPACE
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dim_value in dimensions.items():
            metric.add_dimension(name=key, value=dim_value)


@lru_cache(maxsize=1)
def get_tracer() -> Tracer:
    from aws_lambda_powertools import Tracer  # noqa: PLC0415 - the X-Ray SDK only where tracing is on

    return Tracer(service=SERVICE)


def trace_annotations(**annotations: Any) -> None:
    """Annotate the current X-Ray segment when tracing is on (deployed only)."""
    if not os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or os.environ.get(
        "POWERTOOLS_TRACE_DISABLED", ""
    ).lower() in ("1", "true"):
        return
    tracer = get_tracer()
    for key, value in annotations.items():
        tracer.put_annotation(key=key, value=value)
