-- 0009: stored responses of the Responses API (POST /v1/responses with `store`).
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- responses: one row per stored response, owned by one principal within one tenant
-- (as chat_sessions). Every query is scoped by tenant and owner in its WHERE clause,
-- so another principal's response is simply not found (404, never 403).
-- Queries:
--   get, input items, delete, previous_response_id: WHERE id AND tenant AND owner
--                                                    -> pkey
-- response:    the Response object as it was answered (GET /v1/responses/{id}).
-- input_items: the items this request sent, with their ids (its input_items list).
-- conversation: every item of the conversation up to and including this response's
--   output (earlier turns, this input, this output): a follow-up with
--   previous_response_id reads this one row, however long the chain, and deleting an
--   earlier response does not break the later ones.
-- ---------------------------------------------------------------------------
CREATE TABLE responses (
    id                   uuid        PRIMARY KEY,
    -- '' when the principal has no tenant (as sessions: NULL is not indexable by =).
    tenant               text        NOT NULL DEFAULT '',
    owner                text        NOT NULL,
    model                text        NOT NULL,
    status               text        NOT NULL,
    previous_response_id uuid,
    -- The request that produced it (usage_events.request_id).
    request_id           text        NOT NULL,
    response             jsonb       NOT NULL,
    input_items          jsonb       NOT NULL,
    conversation         jsonb       NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
