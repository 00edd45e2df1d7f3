-- 0005: chat sessions (chat history).
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- chat_sessions: one row per conversation, owned by one principal within one
-- tenant. Every query is scoped by tenant and owner in its WHERE clause, so another
-- principal's session is simply not found (404, never 403).
-- Queries:
--   get / load with history: WHERE id = $1 AND tenant = $2 AND owner = $3 -> pkey
--   list: WHERE tenant, owner ORDER BY created_at DESC, id DESC, keyset
--                                                  -> chat_sessions_scope_created_idx
--   append a turn: UPDATE ... WHERE id, tenant, owner (row lock: consecutive seq)
-- message_count is the next message's position: bumped by the statement that
-- inserts the messages, under this row's lock, so concurrent appends to one session
-- get consecutive, never clashing, positions.
-- ---------------------------------------------------------------------------
CREATE TABLE chat_sessions (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- '' when the principal has no tenant (as prompts: NULL is not indexable by =).
    tenant        text        NOT NULL DEFAULT '',
    owner         text        NOT NULL,
    title         text        NOT NULL DEFAULT '',
    model         text        NOT NULL,
    system_prompt text,
    message_count integer     NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX chat_sessions_scope_created_idx
    ON chat_sessions (tenant, owner, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------
-- chat_messages: the transcript, append-only; deleted with its session (cascade).
-- Queries:
--   history (newest N, for the model):  WHERE session_id ORDER BY seq DESC LIMIT n
--   transcript page (oldest first):     WHERE session_id AND seq > cursor ORDER BY seq
--                                          -> pkey (session_id, seq), both directions
--   cursor lookup:                      WHERE id = $1 -> chat_messages_id_key
-- content is the text; parts keeps the original content parts (images) when the
-- message had them, so the model sees the same message again.
-- ---------------------------------------------------------------------------
CREATE TABLE chat_messages (
    session_id   uuid        NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq          integer     NOT NULL CHECK (seq >= 0),
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    role         text        NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content      text,
    parts        jsonb,
    name         text,
    tool_calls   jsonb,
    tool_call_id text,
    -- The request that produced the message (usage_events.request_id).
    request_id   text        NOT NULL,
    -- Completion tokens of a reply (the provider's count); the estimated prompt
    -- tokens of a user or tool message; NULL when unknown.
    tokens       integer     CHECK (tokens >= 0),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (session_id, seq),
    CONSTRAINT chat_messages_id_key UNIQUE (id)
);
