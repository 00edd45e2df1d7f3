-- 0015: native provider batches (docs/batch.md, "Native provider batches").
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- native_batches: a batch that goes whole to its provider's batch API (OpenAI Batch,
-- Anthropic Message Batches, Gemini batch mode) instead of running its lines; one
-- row per such batch, beside its `batches` row (which keeps the status, counts and
-- files the API shows). The batch function's schedule submits it (provider_batch_id
-- NULL until then) and polls it until it is done.
-- requested_model: the model name the lines sent (their usage rows' `model`).
-- budget_holds: the budget counters the batch's estimated cost was taken from at
--   creation ([{"subject", "metric", "window_start"}]); each line's cost is added to
--   them when its usage row is written, and the estimate given back once, at the end.
-- leased_until: a poll holds the batch until then, so two overlapping schedule runs
--   never write its files at once.
-- Queries: by batch -> pkey; the schedule's open batches -> native_batches_open.
-- ---------------------------------------------------------------------------
CREATE TABLE native_batches (
    batch_id          text        PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    provider          text        NOT NULL,
    model_id          text        NOT NULL,
    requested_model   text        NOT NULL,
    provider_batch_id text,
    provider_status   text        NOT NULL DEFAULT 'submitting',
    estimate_usd      numeric     NOT NULL DEFAULT 0,
    budget_holds      jsonb       NOT NULL DEFAULT '[]',
    done              boolean     NOT NULL DEFAULT false,
    leased_until      timestamptz,
    polled_at         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX native_batches_open ON native_batches (created_at) WHERE NOT done;
