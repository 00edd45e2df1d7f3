"""Prometheus metrics of the control plane, plus each engine's own, relabelled.

A registry per app (not prometheus_client's global one), so several apps in one test
process never share counters. Engine metrics get `model="<id>"` added to every sample
and their HELP/TYPE lines written once, so the merged text stays valid exposition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_LOAD_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?(?P<rest>\s.*)$")


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "spine_worker_queue_depth", "Requests waiting for a slot", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "spine_worker_in_flight", "Requests holding a slot", ["model"], registry=r
        )
        self.slots = Gauge("spine_worker_slots", "Admission limit per model", ["model"], registry=r)
        self.loaded = Gauge(
            "spine_worker_model_ready", "1 when the model's engine is ready", ["model"], registry=r
        )
        self.requests = Counter(
            "spine_worker_requests", "Requests by endpoint and status",
            ["model", "endpoint", "status"], registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "spine_worker_queue_rejections", "Requests refused because the queue was full",
            ["model"], registry=r,
        )  # fmt: skip
        self.loads = Counter(
            "spine_worker_model_loads", "Model loads by result", ["model", "result"], registry=r
        )
        self.unloads = Counter(
            "spine_worker_model_unloads", "Model unloads by reason", ["model", "reason"], registry=r
        )
        self.restarts = Counter(
            "spine_worker_engine_restarts", "Engines restarted after a crash", ["model"], registry=r
        )
        self.load_seconds = Histogram(
            "spine_worker_model_load_seconds", "Time to start an engine and load its model",
            ["model"], buckets=_LOAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.unload_seconds = Histogram(
            "spine_worker_model_unload_seconds", "Time to stop an engine",
            ["model"], buckets=_LOAD_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens_in = Counter(
            "spine_worker_prompt_tokens", "Prompt tokens processed", ["model"], registry=r
        )
        self.tokens_out = Counter(
            "spine_worker_completion_tokens", "Tokens generated", ["model"], registry=r
        )
        self.ttft = Histogram(
            "spine_worker_time_to_first_token_seconds",
            "From request arrival (queue wait included) to the first streamed token",
            ["model"], buckets=_TTFT_BUCKETS, registry=r,
        )  # fmt: skip

    def record_usage(self, model: str, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and prompt > 0:
            self.tokens_in.labels(model).inc(prompt)
        if isinstance(completion, int) and completion > 0:
            self.tokens_out.labels(model).inc(completion)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def relabel_engine_metrics(engines: Iterable[tuple[str, str]]) -> str:
    """Merge `(model_id, exposition_text)` pairs, adding `model="<id>"` to every sample."""
    meta: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for model_id, text in engines:
        label = f'model="{_escape(model_id)}"'
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(maxsplit=3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    meta.setdefault(parts[2], [])
                    if not any(m.split(maxsplit=2)[1] == parts[1] for m in meta[parts[2]]):
                        meta[parts[2]].append(line)
                continue
            match = _SAMPLE.match(line)
            if match is None:
                continue
            labels = match["labels"]
            merged = f"{label},{labels}" if labels else label
            samples.setdefault(match["name"], []).append(
                f"{match['name']}{{{merged}}}{match['rest']}"
            )
    out: list[str] = []
    for name in dict.fromkeys([*meta, *samples]):
        out += meta.get(name, [])
        out += samples.get(name, [])
    return "\n".join(out) + ("\n" if out else "")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
