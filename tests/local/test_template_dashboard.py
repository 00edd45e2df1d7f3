"""The CloudWatch dashboard in template.yaml: valid JSON once CloudFormation has
substituted it, every function it charts exists, and every metric it searches is one
the code emits, with exactly the dimensions it is emitted with (Spine's EMF metrics,
and the workers' CloudWatch metrics)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from gpu_worker.cloudwatch import ModelLoad, metric_data

REPO = Path(__file__).resolve().parents[2]
SEARCH = re.compile(
    r"SEARCH\('\{(?P<namespace>[^,}]+),(?P<dims>[^}]*)\} MetricName=(?P<names>.+?)',"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    data, problems = decode(str(REPO / "template.yaml"))
    assert not problems, problems
    return dict(data)


@pytest.fixture(scope="module")
def widgets(template: dict[str, Any]) -> list[dict[str, Any]]:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    # Every ${Name} is a parameter, a resource or a pseudo parameter
    names = set(re.findall(r"\$\{([A-Za-z0-9:]+)\}", body))
    known = (
        set(template["Parameters"]) | set(template["Resources"]) | {"AWS::Region", "AWS::StackName"}
    )
    assert names <= known, names - known
    substituted = re.sub(r"\$\{[A-Za-z0-9:]+\}", "x", body)
    parsed: list[dict[str, Any]] = json.loads(substituted)["widgets"]
    return parsed


def emitted_metrics() -> dict[str, set[frozenset[str]]]:
    """Metric name -> dimension sets, from every emit_metric call in spine (the
    `service` dimension is always added)."""
    found: dict[str, set[frozenset[str]]] = {}
    for path in (REPO / "shared" / "spine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "emit_metric"
                and node.args
            ):
                continue
            dims = frozenset({"service", *(k.arg for k in node.keywords if k.arg)})
            # A constant name, or one of two (`"CacheHits" if hit else "CacheMisses"`)
            first = node.args[0]
            options = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
            for option in options:
                assert isinstance(option, ast.Constant), ast.unparse(node)
                found.setdefault(str(option.value), set()).add(dims)
    return found


def worker_metrics() -> dict[str, set[frozenset[str]]]:
    found: dict[str, set[frozenset[str]]] = {}
    for datum in metric_data("svc", [ModelLoad("m", 1, 1, 1)]):
        dims = frozenset(d["Name"] for d in datum["Dimensions"])
        found.setdefault(datum["MetricName"], set()).add(dims)
    return found


def searches(widgets: list[dict[str, Any]]) -> list[tuple[str, frozenset[str], list[str]]]:
    out = []
    for widget in widgets:
        for row in widget.get("properties", {}).get("metrics", []):
            # CloudWatch wants each entry of `metrics` to be an array
            assert isinstance(row, list), row
            for item in row:
                if isinstance(item, dict) and "expression" in item:
                    match = SEARCH.search(item["expression"])
                    assert match, item["expression"]
                    names = re.findall(r'"([A-Za-z]+)"', match["names"])
                    out.append((match["namespace"], frozenset(match["dims"].split(",")), names))
    return out


def test_dashboard_charts_tokens_cost_errors_latency_and_worker_load(
    widgets: list[dict[str, Any]],
) -> None:
    searched = {name for _, _, names in searches(widgets) for name in names}
    assert {"InputTokens", "OutputTokens", "CostMicroUSD", "Errors", "Latency"} <= searched
    assert {"QueueDepth", "Slots", "InFlight"} <= searched
    titles = " ".join(w.get("properties", {}).get("title", "") for w in widgets)
    assert "API requests" in titles and "API latency" in titles


def test_every_searched_metric_is_emitted_with_those_dimensions(
    widgets: list[dict[str, Any]],
) -> None:
    emitted = {"Spine": emitted_metrics(), "Spine/Worker": worker_metrics()}
    for namespace, dims, names in searches(widgets):
        for name in names:
            assert dims in emitted[namespace].get(name, set()), (namespace, name, dims)


def test_dashboard_charts_every_api_function(
    template: dict[str, Any], widgets: list[dict[str, Any]]
) -> None:
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    api_functions = {
        name
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(e["Type"] == "Api" for e in resource["Properties"].get("Events", {}).values())
    }
    for name in api_functions:
        assert "${" + name + "}" in body, name
