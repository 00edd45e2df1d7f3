"""The worker's load as CloudWatch metrics: what ECS service autoscaling tracks and the
stack's dashboard shows (infra/worker-ecs.yaml, template.yaml).

Every `metrics_interval_seconds` each worker puts, in `metrics_namespace`:

- per model (dimensions Service, Model): QueueDepth (requests waiting for a slot),
  InFlight (requests holding one), Slots (the admission limit);
- for the whole worker (dimension Service): the same three summed over its models.

Every task of a service puts its own datapoint under the same dimensions, so the
Average statistic of QueueDepth is the mean queue per task: the target-tracking
metric of the service's autoscaling. boto3 is imported on first publish, in a thread,
so the event loop never waits on AWS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("gpu_worker.cloudwatch")

METRICS = ("QueueDepth", "InFlight", "Slots")


@dataclass(frozen=True)
class ModelLoad:
    model: str
    queued: int
    in_flight: int
    slots: int


def metric_data(service: str, loads: Iterable[ModelLoad]) -> list[dict[str, Any]]:
    """PutMetricData entries for one sample of the worker's models."""
    loads = list(loads)
    data: list[dict[str, Any]] = []
    totals = dict.fromkeys(METRICS, 0)
    for load in loads:
        values = {"QueueDepth": load.queued, "InFlight": load.in_flight, "Slots": load.slots}
        for name, value in values.items():
            totals[name] += value
            data.append(
                {
                    "MetricName": name,
                    "Dimensions": [
                        {"Name": "Service", "Value": service},
                        {"Name": "Model", "Value": load.model},
                    ],
                    "Value": float(value),
                    "Unit": "Count",
                }
            )
    for name, value in totals.items():
        data.append(
            {
                "MetricName": name,
                "Dimensions": [{"Name": "Service", "Value": service}],
                "Value": float(value),
                "Unit": "Count",
            }
        )
    return data


class Publisher:
    """Samples `sample()` and puts it to CloudWatch, until cancelled."""

    def __init__(
        self,
        namespace: str,
        service: str,
        sample: Callable[[], Iterable[ModelLoad]],
        *,
        interval: float = 60.0,
        client: Any = None,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.sample = sample
        self.interval = interval
        self._client = client

    def _cloudwatch(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 - boto3 is imported only where an AWS service is configured

            self._client = boto3.client("cloudwatch")
        return self._client

    def publish_once(self) -> None:
        data = metric_data(self.service, self.sample())
        client = self._cloudwatch()
        # PutMetricData takes at most 1000 entries per call.
        for start in range(0, len(data), 1000):
            client.put_metric_data(Namespace=self.namespace, MetricData=data[start : start + 1000])

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.publish_once)
            except Exception:  # a failed put must never stop the worker; the next one retries
                logger.exception("publishing worker metrics failed")
            await asyncio.sleep(self.interval)
