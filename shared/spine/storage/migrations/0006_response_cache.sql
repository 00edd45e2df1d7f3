-- 0006: the exact-match response cache (docs/cache.md).
-- Runs inside one transaction (see spine/storage/migrate.py).
--
-- One row per cached answer. `cache_key` is the SHA-256 of the caller's scope (tenant,
-- else subject) and the normalized effective request (spine/chat/cache.py), so one
-- tenant's rows are never found by another's requests. `scope` is kept in clear too:
-- lookups also filter on it, and an operator can purge one tenant's rows.
-- Queries:
--   lookup:   WHERE cache_key = $1 AND scope = $2 AND expires_at > now()
--             AND created_at > now() - reader's ttl                     -> pkey
--   store:    INSERT ... ON CONFLICT (cache_key) DO UPDATE             -> pkey
--   cleanup:  WHERE expires_at < now(), batched                        -> expires_at idx
-- Expired rows are never served (the lookup checks expires_at); the maintenance job
-- deletes them in batches (spine.storage.response_cache.delete_expired).
CREATE TABLE response_cache (
    cache_key   bytea       PRIMARY KEY CHECK (octet_length(cache_key) = 32),
    scope       text        NOT NULL,
    endpoint    text        NOT NULL,  -- 'chat.completions' | 'completions'
    model_id    text        NOT NULL,  -- the registry model that answered
    provider    text        NOT NULL,
    deployment  text        NOT NULL,
    request_id  text        NOT NULL,  -- the request whose answer this is
    response    jsonb       NOT NULL,  -- the chat.completion / text_completion body
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX response_cache_expires_at_idx ON response_cache (expires_at);
