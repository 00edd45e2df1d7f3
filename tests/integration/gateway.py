"""Invoke the real Lambda handlers of functions/* with real API Gateway events.

Routes come from template.yaml (the same route table `sam local start-api` and
`spine local` serve), events from `spine_tools.local.events.build_event`, whose shape is
checked against a recorded API Gateway event in tests/local.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from spine.settings import get_settings
from spine.storage import db
from spine_tools.local.events import HttpRequest, build_event
from spine_tools.local.routing import RouteTable
from spine_tools.local.runtime import LambdaContext
from spine_tools.local.template import Template, load_template

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any] = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        body = self.json()
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        return dict(body["error"])


class Gateway:
    """The functions of template.yaml, loaded fresh for one test's configuration."""

    def __init__(self) -> None:
        self.template: Template = load_template(REPO / "template.yaml")
        self.routes = RouteTable.from_template(self.template)
        self._modules: dict[str, ModuleType] = {}
        get_settings.cache_clear()
        db.reset()

    def module(self, logical_id: str) -> ModuleType:
        if logical_id not in self._modules:
            spec = self.template.functions[logical_id]
            path = spec.code_dir / (spec.module_name.replace(".", "/") + ".py")
            name = f"_spine_test_fn_{logical_id}_{uuid.uuid4().hex}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
            self._modules[logical_id] = module
        return self._modules[logical_id]

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        query: str = "",
    ) -> Result:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        match = self.routes.match(method, path)
        assert match is not None, f"no route for {method} {path} in template.yaml"
        event = build_event(
            HttpRequest(
                method=method,
                path=path,
                query_string=query,
                headers=list(all_headers.items()),
                body=body or b"",
            ),
            match,
            stage=match.route.stage,
        )
        spec = self.template.functions[match.route.function]
        context = LambdaContext.for_invocation(spec, deadline=time.monotonic() + 30)
        # A function behind Lambda Web Adapter names its ASGI app; its entry module
        # also keeps a Mangum `handler`, the buffered form this gateway invokes.
        handler_name = "handler" if spec.web_adapter else spec.handler_name
        handler = getattr(self.module(match.route.function), handler_name)
        result = handler(event, context)
        headers_out = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers_out[name.lower()] = ",".join(values)
        raw = result.get("body") or ""
        data = raw.encode() if not result.get("isBase64Encoded") else _b64(raw)
        return Result(result["statusCode"], headers_out, data, event)

    def close(self) -> None:
        # Each loop Mangum used holds a cached connection; close them with their loop.
        loop = asyncio.get_event_loop_policy().get_event_loop()
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(db.close())
        db.reset()


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
