"""`models.yaml` from AWS AppConfig (a hosted configuration or any profile AppConfig
serves), read through the AppConfig Data API.

One session per container: `StartConfigurationSession` once, then each check is one
`GetLatestConfiguration` with the token the previous call returned. AppConfig answers
an empty body while the deployed version is the one this session already has, so an
unchanged config costs no download and no parse. A failed call drops the session;
the next check starts a new one, whose first answer is the full config again, which
the content digest then recognizes as already seen.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Hashable
from pathlib import Path

from spine.aws.clients import aws_client
from spine.registry.source import Clock, Fetched, RefreshingRegistrySource

# AppConfig refuses a RequiredMinimumPollIntervalInSeconds below 15.
MIN_POLL_SECONDS = 15


class AppConfigRegistrySource(RefreshingRegistrySource):
    kind = "appconfig"

    def __init__(
        self,
        application: str,
        environment: str,
        profile: str,
        *,
        ttl: float,
        fallback: Path | None = None,
        background: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        self.application = application
        self.environment = environment
        self.profile = profile
        self.ttl = ttl
        self._token: str | None = None
        super().__init__(
            interval=ttl,
            origin=f"appconfig://{application}/{environment}/{profile}",
            fallback=fallback,
            background=background,
            clock=clock,
        )
        self._start()

    def _fetch(self, seen: Hashable | None) -> Fetched | None:
        client = aws_client("appconfigdata")
        token = self._token or self._start_session(client)
        self._token = None  # each token is good for one call, even a failed one
        response = client.get_latest_configuration(ConfigurationToken=token)
        self._token = response["NextPollConfigurationToken"]
        # Never poll faster than AppConfig asks: it refuses early polls.
        self.interval = max(self.ttl, float(response.get("NextPollIntervalInSeconds") or 0))
        content = response["Configuration"].read()
        if not content:
            if seen is None:
                raise LookupError(f"{self.origin}: no configuration deployed")
            return None
        return Fetched(hashlib.sha256(content).hexdigest(), content, self.origin)

    def _start_session(self, client: object) -> str:
        response = client.start_configuration_session(  # type: ignore[attr-defined]
            ApplicationIdentifier=self.application,
            EnvironmentIdentifier=self.environment,
            ConfigurationProfileIdentifier=self.profile,
            RequiredMinimumPollIntervalInSeconds=max(MIN_POLL_SECONDS, int(self.ttl)),
        )
        return str(response["InitialConfigurationToken"])
