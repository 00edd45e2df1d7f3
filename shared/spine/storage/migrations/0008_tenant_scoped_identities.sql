-- 0008: identities scoped by tenant.
-- Runs inside one transaction (see spine/storage/migrate.py).
--
-- Rate-limit and budget counters were keyed 'principal:<subject>', so principal
-- 'bob' of tenant acme and principal 'bob' of tenant globex shared one counter (and
-- one budget). From here on a principal's counters are keyed by tenant and subject:
--   'principal:<length of tenant>:<tenant>:<subject>'   ('' when there is no tenant)
-- The length prefix keeps the key unambiguous whatever characters the tenant holds
-- (a tenant 'a:b' and subject 'c' never meet tenant 'a' and subject 'b:c').
-- spine.limits.admission.principal_counter_subject builds the same string.

CREATE FUNCTION spine_principal_subject(p_tenant text, p_subject text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 'principal:' || length(coalesce(p_tenant, '')) || ':'
           || coalesce(p_tenant, '') || ':' || p_subject
$$;

-- The old, tenant-blind counters go. The budgets of the current day and month are
-- rebuilt from the ledger, per tenant and principal, so nobody's spend so far is
-- forgotten by the upgrade; minute windows simply start afresh.
DELETE FROM rate_counters WHERE subject LIKE 'principal:%';

INSERT INTO rate_counters (subject, metric, window_start, window_end, used)
SELECT spine_principal_subject(u.tenant, u.principal), w.metric, w.window_start,
       w.window_start + w.span, sum(u.cost_usd)
FROM (VALUES
        ('usd_day', date_trunc('day', now(), 'UTC'), interval '1 day'),
        ('usd_month', date_trunc('month', now(), 'UTC'), interval '1 month')
     ) AS w(metric, window_start, span)
JOIN usage_events AS u ON u.created_at >= w.window_start
WHERE u.principal IS NOT NULL
GROUP BY 1, 2, 3, 4
HAVING sum(u.cost_usd) > 0;

-- GET /v1/usage for a tenant's administrator: every principal of one tenant.
CREATE INDEX usage_events_tenant_created_at_idx
    ON usage_events (tenant, created_at) INCLUDE (cost_usd)
    WHERE tenant IS NOT NULL;

-- ---------------------------------------------------------------------------
-- spine_authenticate_admit (0007), with the key principal's counters keyed by
-- tenant and subject.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION spine_authenticate_admit(
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
                              spine_principal_subject(k.tenant, coalesce(k.principal, 'key:' || k.id::text))),
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
