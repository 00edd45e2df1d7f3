"""The ledger's read queries use its indexes (LiteLLM's spend table did not).

200k rows over 100 days, 200 keys, 20 models, 1000 principals, inserted in time
order as production writes them; after ANALYZE, each query's plan must reach the
table through the index meant for it, never a sequential scan.
"""

from __future__ import annotations

import json
from typing import Any

from spine.storage.db import Connection

ROWS = 200_000

_GENERATE = """
INSERT INTO usage_events (request_id, created_at, api_key_id, principal, model, endpoint,
                          status, prompt_tokens, completion_tokens, cost_usd)
SELECT 'req-' || g,
       timestamptz '2025-01-01' + (g * interval '100 days') / %(rows)s,
       ('00000000-0000-0000-0000-' || lpad((g %% 200)::text, 12, '0'))::uuid,
       'user-' || (g %% 1000),
       'model-' || (g %% 20),
       'chat.completions', 'ok', 100, 20, 0.0001
FROM generate_series(1, %(rows)s) AS g
"""

QUERIES = {
    "usage_events_api_key_created_at_idx": (
        "SELECT sum(cost_usd), count(*) FROM usage_events"
        " WHERE api_key_id = '00000000-0000-0000-0000-000000000007'"
        " AND created_at >= '2025-02-01' AND created_at < '2025-02-08'"
    ),
    "usage_events_model_created_at_idx": (
        "SELECT sum(prompt_tokens), sum(completion_tokens) FROM usage_events"
        " WHERE model = 'model-3' AND created_at >= '2025-02-01' AND created_at < '2025-02-02'"
    ),
    "usage_events_principal_created_at_idx": (
        "SELECT sum(cost_usd) FROM usage_events"
        " WHERE principal = 'user-42' AND created_at >= '2025-01-01' AND created_at < '2025-04-01'"
    ),
    "usage_events_created_at_brin": (
        "SELECT model, sum(cost_usd) FROM usage_events"
        " WHERE created_at >= '2025-03-01' AND created_at < '2025-03-02' GROUP BY model"
    ),
}


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def test_usage_queries_use_their_indexes(db_conn: Connection) -> None:
    # Given a ledger of 200k rows with fresh statistics
    await db_conn.execute(_GENERATE, {"rows": ROWS})
    await db_conn.execute("VACUUM ANALYZE usage_events")

    # When each report query is planned
    problems = []
    for index, query in QUERIES.items():
        cur = await db_conn.execute("EXPLAIN (FORMAT JSON) " + query)
        row = await cur.fetchone()
        assert row is not None
        raw = row[0]
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        nodes = _nodes(plan)

        # Then it reaches usage_events through its index, never a sequential scan
        scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "usage_events"]
        if "Seq Scan" in scans or index not in {n.get("Index Name") for n in nodes}:
            problems.append(f"{index}: {query}\n{json.dumps(plan, indent=1)}")
    assert not problems, "\n\n".join(problems)
