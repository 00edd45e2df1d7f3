"""Match request paths against API Gateway REST resources, as API Gateway does.

A resource path is a list of segments: literals, `{name}` (exactly one segment) and a
final `{name+}` (greedy: one or more segments, '/' included). When several resources
match, API Gateway takes the most specific one: at the first segment where they
differ, a literal beats a parameter, which beats a greedy parameter. A method falls
back to the resource's `ANY` method. No resource or no method: 403, never 404/405.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spine_tools.local.template import Template

ANY = "ANY"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str  # logical id
    api_id: str
    stage: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.path.split("/") if s)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


def _kind(segment: str) -> int:
    """0 literal, 1 parameter, 2 greedy parameter (lower is more specific)."""
    if segment.startswith("{") and segment.endswith("+}"):
        return 2
    if segment.startswith("{") and segment.endswith("}"):
        return 1
    return 0


def _match_segments(pattern: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for index, segment in enumerate(pattern):
        kind = _kind(segment)
        if kind == 2:
            rest = parts[index:]
            if not rest:
                return None
            params[segment[1:-2]] = "/".join(rest)
            return params
        if index >= len(parts):
            return None
        if kind == 1:
            params[segment[1:-1]] = parts[index]
        elif segment != parts[index]:
            return None
    return params if len(parts) == len(pattern) else None


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        # Most specific resource first, so the first match is API Gateway's choice.
        self.routes = sorted(
            routes, key=lambda r: (tuple(_kind(s) for s in r.segments), r.path, r.method)
        )
        # Grouped once by resource, in the same order: matching runs on every request.
        by_path: dict[str, list[Route]] = {}
        for route in self.routes:
            by_path.setdefault(route.path, []).append(route)
        self._resources = [(methods[0].segments, methods) for methods in by_path.values()]

    @classmethod
    def from_template(cls, template: Template) -> RouteTable:
        return cls(
            Route(
                method=event.method,
                path=event.path,
                function=spec.logical_id,
                api_id=event.api_id,
                stage=template.apis[event.api_id].stage,
            )
            for spec in template.functions.values()
            for event in spec.events
        )

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for this request, or None (API Gateway's 403)."""
        parts = [p for p in path.split("/") if p]
        method = method.upper()
        for segments, candidates in self._resources:
            params = _match_segments(segments, parts)
            if params is None:
                continue
            # The most specific resource decides; its methods either serve or 403.
            for wanted in (method, ANY):
                for route in candidates:
                    if route.method == wanted:
                        return RouteMatch(route, params)
            return None
        return None
