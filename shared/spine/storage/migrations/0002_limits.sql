-- 0002: exact rate limits and USD budgets.
-- Runs inside one transaction (see spine/storage/migrate.py).

-- ---------------------------------------------------------------------------
-- Per-key overrides of the [limits] defaults in config.toml. NULL: the default
-- applies; 0: no limit for this key.
-- ---------------------------------------------------------------------------
ALTER TABLE api_keys
    ADD COLUMN rpm                integer       CHECK (rpm >= 0),
    ADD COLUMN tpm                integer       CHECK (tpm >= 0),
    ADD COLUMN daily_budget_usd   numeric(18,6) CHECK (daily_budget_usd >= 0),
    ADD COLUMN monthly_budget_usd numeric(18,6) CHECK (monthly_budget_usd >= 0);

-- ---------------------------------------------------------------------------
-- rate_counters: one row per (subject, metric, fixed window).
--   subject: 'principal:<subject>' | 'model:<model id>'
--   metric:  'requests' | 'tokens' (per minute) | 'usd_day' | 'usd_month'
-- Queries:
--   admit:   upsert by primary key (every limited request)
--   settle:  update by primary key
--   cleanup: WHERE window_end < cutoff, batched  -> rate_counters_window_end_idx
-- Counting happens in Postgres, never in process memory: Lambda runs one request per
-- instance, so only the database sees every instance's requests.
-- ---------------------------------------------------------------------------
CREATE TABLE rate_counters (
    subject      text        NOT NULL,
    metric       text        NOT NULL CHECK (metric IN ('requests', 'tokens', 'usd_day', 'usd_month')),
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    used         numeric     NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, metric, window_start)
);

CREATE INDEX rate_counters_window_end_idx ON rate_counters (window_end);

-- ---------------------------------------------------------------------------
-- spine_admit: take `amounts[i]` from every counter i, all or none, in one round
-- trip. Each counter is one INSERT ... ON CONFLICT DO UPDATE ... WHERE used + n <=
-- limit: the row lock taken by the upsert serializes concurrent requests, so N
-- requests against a limit L admit exactly L whatever the number of processes.
-- When a counter refuses, the inner block raises and its subtransaction undoes the
-- counters already taken; the refusing counter is returned with admitted = false.
-- Callers pass counters sorted by (subject, metric) so that two requests never wait
-- on each other's rows in opposite orders (no deadlocks).
-- Limits: limits[i] is the default; where key_override[i], the key's own column
-- (rpm, tpm, daily_budget_usd, monthly_budget_usd) wins when not NULL. A resolved
-- limit NULL or 0 means unlimited: the counter is skipped and not returned.
-- cleanup: also delete a batch of windows that ended over an hour ago (the caller
-- asks on a small fraction of requests, so the table stays small at no extra trip).
-- ---------------------------------------------------------------------------
CREATE FUNCTION spine_admit(
    p_key          uuid,
    p_subjects     text[],
    p_metrics      text[],
    p_windows      text[],   -- date_trunc unit: 'minute' | 'day' | 'month'
    p_amounts      numeric[],
    p_limits       numeric[],
    p_key_override boolean[],
    p_cleanup      boolean
) RETURNS TABLE (
    counter_index        integer,
    counter_limit        numeric,
    counter_used         numeric,
    counter_window_start timestamptz,
    counter_window_end   timestamptz,
    admitted             boolean
)
LANGUAGE plpgsql AS $$
DECLARE
    k_rpm     numeric;
    k_tpm     numeric;
    k_day     numeric;
    k_month   numeric;
    v_lim     numeric;
    v_start   timestamptz;
    v_end     timestamptz;
    v_used    numeric;
    failed    integer := 0;
    f_lim     numeric;
    f_start   timestamptz;
    f_end     timestamptz;
    r_idx     integer[] := '{}';
    r_lim     numeric[] := '{}';
    r_used    numeric[] := '{}';
    r_start   timestamptz[] := '{}';
    r_end     timestamptz[] := '{}';
BEGIN
    IF p_cleanup THEN
        DELETE FROM rate_counters AS rc
        WHERE rc.ctid = ANY (ARRAY(
            SELECT old.ctid FROM rate_counters AS old
            WHERE old.window_end < now() - interval '1 hour'
            LIMIT 1000));
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT a.rpm, a.tpm, a.daily_budget_usd, a.monthly_budget_usd
        INTO k_rpm, k_tpm, k_day, k_month
        FROM api_keys AS a WHERE a.id = p_key;
    END IF;
    BEGIN
        FOR i IN 1 .. coalesce(array_length(p_subjects, 1), 0) LOOP
            v_lim := p_limits[i];
            IF p_key_override[i] THEN
                v_lim := coalesce(
                    CASE p_metrics[i]
                        WHEN 'requests' THEN k_rpm
                        WHEN 'tokens' THEN k_tpm
                        WHEN 'usd_day' THEN k_day
                        WHEN 'usd_month' THEN k_month
                    END,
                    v_lim);
            END IF;
            CONTINUE WHEN v_lim IS NULL OR v_lim <= 0;
            v_start := date_trunc(p_windows[i], now(), 'UTC');
            v_end := v_start + ('1 ' || p_windows[i])::interval;
            v_used := NULL;
            INSERT INTO rate_counters AS c (subject, metric, window_start, window_end, used)
            SELECT p_subjects[i], p_metrics[i], v_start, v_end, p_amounts[i]
            WHERE p_amounts[i] <= v_lim
            ON CONFLICT (subject, metric, window_start) DO UPDATE
                SET used = c.used + EXCLUDED.used
                WHERE c.used < v_lim AND c.used + EXCLUDED.used <= v_lim
            RETURNING c.used INTO v_used;
            IF v_used IS NULL THEN
                failed := i;
                f_lim := v_lim;
                f_start := v_start;
                f_end := v_end;
                RAISE EXCEPTION USING ERRCODE = 'SP429';
            END IF;
            r_idx := r_idx || i;
            r_lim := r_lim || v_lim;
            r_used := r_used || v_used;
            r_start := r_start || v_start;
            r_end := r_end || v_end;
        END LOOP;
    EXCEPTION WHEN SQLSTATE 'SP429' THEN
        NULL;  -- the block's upserts are rolled back; report the refusing counter
    END;
    IF failed > 0 THEN
        SELECT c.used INTO v_used FROM rate_counters AS c
        WHERE c.subject = p_subjects[failed] AND c.metric = p_metrics[failed]
          AND c.window_start = f_start;
        RETURN QUERY SELECT failed, f_lim, coalesce(v_used, 0::numeric), f_start, f_end, false;
        RETURN;
    END IF;
    RETURN QUERY SELECT r.ix, r.lim, r.amount, r.ws, r.we, true
        FROM unnest(r_idx, r_lim, r_used, r_start, r_end) AS r(ix, lim, amount, ws, we);
END;
$$;
