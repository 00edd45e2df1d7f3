-- 0007: API-key authentication and rate-limit admission in one call.
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- spine_authenticate_admit: the key lookup of spine.storage.api_keys.authenticate
-- (with its rare last_used_at refresh) and spine_admit, for the chat path's one
-- round trip. A function rather than one SQL statement: connections keep no
-- prepared statements (transaction-mode poolers), so a statement of this size is
-- planned on every request (~0.45 ms measured), while plpgsql caches the plans of
-- its queries for the life of the connection.
--
-- Returns no row for an unknown, revoked or expired key (nothing is taken). For a
-- known key: one row per limited counter (as spine_admit returns them, after the
-- key's columns), or one row with NULL counter columns when nothing is limited.
-- Principal counters carry p_placeholder as their subject, replaced here by the
-- key's ('principal:' || owner, or 'principal:key:<id>').
-- p_limited: whether any counter has a default or model limit; when false and the
-- key overrides nothing, spine_admit is not called at all.
-- ---------------------------------------------------------------------------
CREATE FUNCTION spine_authenticate_admit(
    p_hash         text,
    p_touch_after  interval,
    p_placeholder  text,
    p_subjects     text[],
    p_metrics      text[],
    p_windows      text[],
    p_amounts      numeric[],
    p_limits       numeric[],
    p_key_override boolean[],
    p_cleanup      boolean,
    p_limited      boolean
) RETURNS TABLE (
    id                   uuid,
    name                 text,
    prefix               text,
    principal            text,
    tenant               text,
    scopes               text[],
    tier                 text,
    created_at           timestamptz,
    expires_at           timestamptz,
    revoked_at           timestamptz,
    last_used_at         timestamptz,
    rpm                  integer,
    tpm                  integer,
    daily_budget_usd     numeric,
    monthly_budget_usd   numeric,
    counter_index        integer,
    counter_limit        numeric,
    counter_used         numeric,
    counter_window_start timestamptz,
    counter_window_end   timestamptz,
    admitted             boolean,
    now                  timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    k api_keys%ROWTYPE;
BEGIN
    SELECT * INTO k FROM api_keys AS a
    WHERE a.key_hash = p_hash
      AND a.revoked_at IS NULL
      AND (a.expires_at IS NULL OR a.expires_at > pg_catalog.now());
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF k.last_used_at IS NULL OR k.last_used_at < pg_catalog.now() - p_touch_after THEN
        UPDATE api_keys AS a SET last_used_at = pg_catalog.now() WHERE a.id = k.id;
    END IF;
    IF p_limited OR k.rpm IS NOT NULL OR k.tpm IS NOT NULL
       OR k.daily_budget_usd IS NOT NULL OR k.monthly_budget_usd IS NOT NULL THEN
        RETURN QUERY
            SELECT k.id, k.name, k.prefix, k.principal, k.tenant, k.scopes, k.tier,
                   k.created_at, k.expires_at, k.revoked_at, k.last_used_at,
                   k.rpm, k.tpm, k.daily_budget_usd::numeric, k.monthly_budget_usd::numeric,
                   s.counter_index, s.counter_limit, s.counter_used,
                   s.counter_window_start, s.counter_window_end, s.admitted, pg_catalog.now()
            FROM spine_admit(
                k.id,
                array_replace(p_subjects, p_placeholder,
                              'principal:' || coalesce(k.principal, 'key:' || k.id::text)),
                p_metrics, p_windows, p_amounts, p_limits, p_key_override, p_cleanup) AS s;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        SELECT k.id, k.name, k.prefix, k.principal, k.tenant, k.scopes, k.tier,
               k.created_at, k.expires_at, k.revoked_at, k.last_used_at,
               k.rpm, k.tpm, k.daily_budget_usd::numeric, k.monthly_budget_usd::numeric,
               NULL::integer, NULL::numeric, NULL::numeric,
               NULL::timestamptz, NULL::timestamptz, NULL::boolean, pg_catalog.now();
END;
$$;
