-- 0011: OpenAI's Files, Uploads and Batch APIs (docs/batch.md).
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- files: metadata of a file whose content is one S3 object (s3_key). Owned by one
-- principal within one tenant, as sessions: every statement filters on both, so
-- another tenant's file is not found (404, never 403).
-- summary: what validation read from a batch input file, so that creating a batch
-- needs no second read of a large file: its line count, and the first line of each
-- url and each model it names ({"urls": {"/v1/chat/completions": 1}, "models": ...}).
-- Queries: get, delete, content -> pkey; list newest first -> files_owner_created.
-- ---------------------------------------------------------------------------
CREATE TABLE files (
    id          text        PRIMARY KEY,
    tenant      text        NOT NULL DEFAULT '',
    owner       text        NOT NULL,
    purpose     text        NOT NULL,
    filename    text        NOT NULL,
    bytes       bigint      NOT NULL,
    s3_key      text        NOT NULL,
    summary     jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX files_owner_created ON files (tenant, owner, created_at DESC, id DESC);

-- ---------------------------------------------------------------------------
-- uploads: an OpenAI Upload, one S3 multipart upload (s3_upload_id) whose parts
-- arrive one request each (parts: [{"id", "number", "etag", "bytes"}], in order).
-- Completing it makes a `files` row (file_id).
-- ---------------------------------------------------------------------------
CREATE TABLE uploads (
    id           text        PRIMARY KEY,
    tenant       text        NOT NULL DEFAULT '',
    owner        text        NOT NULL,
    purpose      text        NOT NULL,
    filename     text        NOT NULL,
    bytes        bigint      NOT NULL,
    mime_type    text        NOT NULL,
    s3_key       text        NOT NULL,
    s3_upload_id text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending',
    parts        jsonb       NOT NULL DEFAULT '[]',
    file_id      text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL
);

-- ---------------------------------------------------------------------------
-- batches: one OpenAI Batch. The caller's identity is kept (api_key_id, subject,
-- credential, scopes, tier) so each line is admitted against its limits and budgets
-- and billed to it when the batch function runs it, long after the request.
-- completed / failed / cancelled count the lines accounted for; the line that makes
-- them reach `total` moves the batch to finalizing (one statement: exactly once).
-- Queries: get, cancel -> pkey; list newest first -> batches_owner_created; the
-- schedule's sweep of open batches -> batches_open.
-- ---------------------------------------------------------------------------
CREATE TABLE batches (
    id                text        PRIMARY KEY,
    tenant            text        NOT NULL DEFAULT '',
    owner             text        NOT NULL,
    api_key_id        uuid,
    credential        text        NOT NULL,
    scopes            text[]      NOT NULL DEFAULT '{}',
    tier              text        NOT NULL DEFAULT 'standard',
    endpoint          text        NOT NULL,
    input_file_id     text        NOT NULL,
    completion_window text        NOT NULL,
    metadata          jsonb,
    status            text        NOT NULL,
    total             integer     NOT NULL,
    completed         integer     NOT NULL DEFAULT 0,
    failed            integer     NOT NULL DEFAULT 0,
    cancelled         integer     NOT NULL DEFAULT 0,
    output_file_id    text,
    error_file_id     text,
    errors            jsonb,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at        timestamptz NOT NULL,
    in_progress_at    timestamptz,
    finalizing_at     timestamptz,
    completed_at      timestamptz,
    failed_at         timestamptz,
    expired_at        timestamptz,
    cancelling_at     timestamptz,
    cancelled_at      timestamptz
);
CREATE INDEX batches_owner_created ON batches (tenant, owner, created_at DESC, id DESC);
CREATE INDEX batches_open ON batches (status, expires_at)
    WHERE status IN ('validating', 'in_progress', 'cancelling', 'finalizing');

-- ---------------------------------------------------------------------------
-- batch_lines: one row per input line, the unit of idempotency. A delivery claims a
-- pending line (or one whose claim expired: its consumer died) with a lease; a
-- second delivery of the same message finds it claimed or done and does not run it.
-- result: the output or error file's line, as JSON text, written with the status.
-- Finalization streams them in line order -> pkey on (batch_id, line).
-- ---------------------------------------------------------------------------
CREATE TABLE batch_lines (
    batch_id     text        NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    line         integer     NOT NULL,
    custom_id    text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending',
    attempts     integer     NOT NULL DEFAULT 0,
    leased_until timestamptz,
    result       text,
    PRIMARY KEY (batch_id, line),
    CONSTRAINT batch_lines_custom_id_key UNIQUE (batch_id, custom_id)
);
