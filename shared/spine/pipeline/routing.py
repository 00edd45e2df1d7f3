"""Which deployment of a model serves a request, and in which order the others
are tried when it fails.

The order is weighted sampling without replacement (Efraimidis and Spirakis: each
deployment draws u in (0, 1) and ranks by ln(u) / weight), so the first choice
follows the weights and the rest are fallbacks in weighted order. With
`sticky_deployments` the draw is a hash of (user, model, deployment) instead of a
random number: weighted rendezvous hashing, so a user keeps their deployment across
requests and instances (an A/B test compares users), and removing a deployment moves
only its own users.
"""

from __future__ import annotations

import hashlib
import math
import random

from spine.registry.schema import Deployment, ModelEntry

_HASH_SPAN = float(2**64)


def deployment_order(entry: ModelEntry, user: str | None = None) -> list[ModelEntry]:
    """The model once per deployment, best first (`ModelEntry.served_by`); the model
    itself when it has no deployments. `user` is used only for sticky models."""
    if not entry.deployments:
        return [entry]
    sticky_key = user if entry.sticky_deployments else None

    def rank(deployment: Deployment) -> float:
        return math.log(_draw(sticky_key, entry.id, deployment.name)) / deployment.weight

    ranked = sorted(entry.deployments, key=rank, reverse=True)
    return [entry.served_by(deployment) for deployment in ranked]


def _draw(sticky_key: str | None, model: str, deployment: str) -> float:
    """A number in (0, 1): random, or fixed by the sticky key."""
    if sticky_key is None:
        return 1.0 - random.random()  # noqa: S311 - load spreading, not secrecy
    digest = hashlib.blake2b(
        f"{sticky_key}\x00{model}\x00{deployment}".encode(), digest_size=8
    ).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _HASH_SPAN
