-- 0012: stored multi-model reviews (POST /v1/reviews).
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- reviews: one row per review, owned by one principal within one tenant (as
-- chat_sessions and responses). Every query is scoped by tenant and owner in its
-- WHERE clause, so another principal's review is simply not found (404).
-- Queries:
--   get:  WHERE id AND tenant AND owner                          -> pkey
--   list: WHERE tenant AND owner ORDER BY created_at DESC, id DESC -> reviews_owner_created
-- review: the review object as answered (every round, every reviewer's answer and
--   usage); the columns beside it are what the list shows.
-- ---------------------------------------------------------------------------
CREATE TABLE reviews (
    id             uuid             PRIMARY KEY,
    tenant         text             NOT NULL DEFAULT '',
    owner          text             NOT NULL,
    -- The request that ran it; its model calls' usage rows are <request_id>.review.*
    request_id     text             NOT NULL,
    status         text             NOT NULL CHECK (status IN ('completed', 'failed')),
    judge_model    text             NOT NULL,
    rounds         integer          NOT NULL,
    weighted_score double precision,
    agreement      double precision,
    review         jsonb            NOT NULL,
    created_at     timestamptz      NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX reviews_owner_created ON reviews (tenant, owner, created_at DESC, id DESC);
