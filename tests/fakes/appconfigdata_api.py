"""A wire-level fake of the AWS AppConfig Data API (moto has AppConfig's control
plane but not `appconfigdata`).

It speaks the real REST-JSON protocol on 127.0.0.1, so the real boto3 client talks
to it through `AWS_ENDPOINT_URL_APPCONFIGDATA`, and it keeps AppConfig's rules that a
client must get right: a session per (application, environment, profile), every
configuration token good for exactly one call, an empty body while the session
already has the deployed version, a minimum poll interval of 15 s asked at session
start. A test deploys new content with `deploy` and can make calls fail.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ProfileKey = tuple[str, str, str]  # application, environment, profile


@dataclass
class _Deployed:
    content: bytes
    version: int
    content_type: str


@dataclass
class _Session:
    profile: ProfileKey
    last_version: int | None = None


@dataclass
class AppConfigDataFake:
    """State shared with the HTTP handler; every field is guarded by `lock`."""

    next_poll_seconds: int = 0  # what GetLatestConfiguration tells the client to wait
    failures: int = 0  # answer the next N calls with a 500
    deployed: dict[ProfileKey, _Deployed] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)  # live tokens only
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # --- what a test does -------------------------------------------------------------

    def deploy(
        self,
        application: str,
        environment: str,
        profile: str,
        content: str | bytes,
        content_type: str = "application/x-yaml",
    ) -> int:
        data = content.encode() if isinstance(content, str) else content
        key = (application, environment, profile)
        with self.lock:
            version = self.deployed[key].version + 1 if key in self.deployed else 1
            self.deployed[key] = _Deployed(data, version, content_type)
        return version

    def operations(self) -> list[str]:
        with self.lock:
            return [name for name, _ in self.calls]

    def start(self) -> AppConfigDataFake:
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the API ----------------------------------------------------------------------

    def start_session(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        key = (
            body.get("ApplicationIdentifier", ""),
            body.get("EnvironmentIdentifier", ""),
            body.get("ConfigurationProfileIdentifier", ""),
        )
        minimum = body.get("RequiredMinimumPollIntervalInSeconds", 60)
        if not 15 <= minimum <= 86400:
            return _error(400, "BadRequestException", "RequiredMinimumPollIntervalInSeconds")
        if key not in self.deployed:
            return _error(404, "ResourceNotFoundException", "Deployment not found")
        token = uuid.uuid4().hex
        self.sessions[token] = _Session(key)
        return 201, {}, json.dumps({"InitialConfigurationToken": token}).encode()

    def latest(self, token: str) -> tuple[int, dict[str, str], bytes]:
        session = self.sessions.pop(token, None)  # a token is good for one call
        if session is None:
            return _error(400, "BadRequestException", "Invalid or expired token")
        deployed = self.deployed[session.profile]
        next_token = uuid.uuid4().hex
        self.sessions[next_token] = _Session(session.profile, deployed.version)
        headers = {
            "Next-Poll-Configuration-Token": next_token,
            "Next-Poll-Interval-In-Seconds": str(self.next_poll_seconds),
            "Content-Type": deployed.content_type,
        }
        if session.last_version == deployed.version:
            return 200, headers, b""
        headers["Version-Label"] = f"v{deployed.version}"
        return 200, headers, deployed.content


class _Handler(BaseHTTPRequestHandler):
    state: AppConfigDataFake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self._answer("StartConfigurationSession", body, lambda: self.state.start_session(body))

    def do_GET(self) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        token = query.get("configuration_token", "")
        self._answer("GetLatestConfiguration", query, lambda: self.state.latest(token))

    def _answer(self, operation: str, params: dict[str, Any], handle: Any) -> None:
        with self.state.lock:
            self.state.calls.append((operation, params))
            if self.state.failures > 0:
                self.state.failures -= 1
                status, headers, body = _error(500, "InternalServerException", "injected")
            else:
                status, headers, body = handle()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
    return status, headers, json.dumps({"Message": message}).encode()
