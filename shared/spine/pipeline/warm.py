"""What a function serving no HTTP (a queue's consumer: batch lines, pipeline steps)
keeps while its container is warm: its settings, database, live registry and usage
recorder. Built on the first event, never at import; built again only when the
settings object changes (tests change it between stacks in one process)."""

from __future__ import annotations

from dataclasses import dataclass

from spine.aws.live_registry import open_registry_source
from spine.ledger.recorder import PostgresUsageRecorder
from spine.ledger.spool import spool_for
from spine.registry.source import RegistrySource
from spine.settings import Settings, get_settings
from spine.storage.db import Database


@dataclass(frozen=True)
class WarmParts:
    settings: Settings
    database: Database
    registry: RegistrySource
    recorder: PostgresUsageRecorder


_built: list[WarmParts] = []


def warm_parts() -> WarmParts:
    settings = get_settings()
    if not _built or _built[0].settings is not settings:
        database = Database()
        _built[:] = [
            WarmParts(
                settings,
                database,
                open_registry_source(settings),
                PostgresUsageRecorder(database, spool_for(settings)),
            )
        ]
    return _built[0]
