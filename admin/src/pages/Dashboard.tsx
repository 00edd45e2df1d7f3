import { useMemo, useState } from "react";

import { api, ApiError, get, query } from "../api";
import { Bars, TimeChart } from "../components/Chart";
import { Empty, ErrorBox, Loading } from "../components/Status";
import { count, isoDay, percent, usd } from "../format";
import { useLoad } from "../hooks";
import type {
  LatencyFigures,
  LatencyReport,
  Me,
  ModelDeployments,
  ModelInfo,
  Page,
  UsageNumbers,
  UsageReport,
  WorkerModel,
} from "../types";

const NO_MODELS: ModelInfo[] = [];
const RANGES = { "7": 7, "30": 30, "90": 90 } as const;
type RangeKey = keyof typeof RANGES;

interface Ready {
  status: string;
  checks: Record<string, { status: string; latency_ms: number; error?: string }>;
}

export function Dashboard({ me }: { me: Me }) {
  const [range, setRange] = useState<RangeKey>("30");
  const start = useMemo(() => {
    const day = new Date();
    day.setUTCDate(day.getUTCDate() - RANGES[range] + 1);
    return isoDay(day);
  }, [range]);
  const usage = useLoad(
    (signal) =>
      get<UsageReport>(`/v1/usage${query({ start, group_by: "model,day,key", limit: 100 })}`, signal),
    [start],
  );
  const models = useLoad((signal) => get<Page<ModelInfo>>("/v1/models", signal), []);

  return (
    <section aria-labelledby="dashboard-title">
      <div className="page-head">
        <h1 id="dashboard-title">Dashboard</h1>
        <label className="inline">
          Range{" "}
          <select value={range} onChange={(e) => setRange(e.target.value as RangeKey)} aria-label="Range">
            <option value="7">last 7 days</option>
            <option value="30">last 30 days</option>
            <option value="90">last 90 days</option>
          </select>
        </label>
      </div>
      {usage.loading && !usage.data ? <Loading what="usage" /> : null}
      {usage.error ? <ErrorBox error={usage.error} retry={usage.reload} /> : null}
      {usage.data ? <UsageSummary report={usage.data} start={start} models={models.data?.data ?? NO_MODELS} /> : null}
      {me.admin ? <Latency start={start} /> : null}
      <Health admin={me.admin} />
      {me.admin ? <WorkerModels /> : null}
    </section>
  );
}

type DayRow = UsageNumbers & { date: string };

const ZERO: UsageNumbers = {
  requests: 0,
  errors: 0,
  prompt_tokens: 0,
  completion_tokens: 0,
  total_tokens: 0,
  cached_tokens: 0,
  reasoning_tokens: 0,
  cost_usd: 0,
};

// The report lists only days with traffic; the charts show every day of the range.
function everyDay(start: string, rows: DayRow[]): DayRow[] {
  const known = new Map(rows.map((r) => [r.date, r]));
  const result: DayRow[] = [];
  const today = isoDay(new Date());
  for (let day = new Date(`${start}T00:00:00Z`); isoDay(day) <= today; day.setUTCDate(day.getUTCDate() + 1)) {
    const date = isoDay(day);
    result.push(known.get(date) ?? { ...ZERO, date });
  }
  return result;
}

const smallUsd = (value: number): string =>
  value === 0 ? "$0" : value >= 0.01 ? `$${value.toFixed(2)}` : `$${value.toPrecision(2)}`;

function UsageSummary({ report, start, models }: { report: UsageReport; start: string; models: ModelInfo[] }) {
  const t = report.totals;
  const days = useMemo(() => everyDay(start, report.by_day?.data ?? []), [start, report]);
  const byModel = report.by_model?.data ?? [];
  const byKey = report.by_key?.data ?? [];
  const providerOf = useMemo(() => new Map(models.map((m) => [m.id, m.provider])), [models]);
  const byProvider = new Map<string, number>();
  for (const row of byModel) {
    const provider = providerOf.get(row.model) ?? "other";
    byProvider.set(provider, (byProvider.get(provider) ?? 0) + row.requests);
  }
  const dayLabels = useMemo(() => days.map((d) => d.date), [days]);
  const requestSeries = useMemo(
    () => [
      { label: "requests", values: days.map((d) => d.requests), color: "#1e88e5" },
      { label: "errors", values: days.map((d) => d.errors), color: "#e53935" },
    ],
    [days],
  );
  const tokenSeries = useMemo(
    () => [
      { label: "prompt", values: days.map((d) => d.prompt_tokens), color: "#8e24aa" },
      { label: "completion", values: days.map((d) => d.completion_tokens), color: "#43a047" },
    ],
    [days],
  );
  const costSeries = useMemo(
    () => [{ label: "cost", values: days.map((d) => d.cost_usd), color: "#fb8c00" }],
    [days],
  );

  return (
    <>
      <div className="cards" data-testid="totals">
        <article>
          <small>Requests</small>
          <p className="figure" data-testid="total-requests">{count(t.requests)}</p>
        </article>
        <article>
          <small>Errors</small>
          <p className="figure" data-testid="total-errors">
            {count(t.errors)} <small>({percent(t.errors, t.requests)})</small>
          </p>
        </article>
        <article>
          <small>Tokens</small>
          <p className="figure" data-testid="total-tokens">{count(t.total_tokens)}</p>
        </article>
        <article>
          <small>Cost</small>
          <p className="figure" data-testid="total-cost">{usd(t.cost_usd)}</p>
        </article>
      </div>
      {t.requests === 0 ? (
        <Empty>No requests in this range yet. Send one from the Chat page.</Empty>
      ) : (
        <>
          <BreakdownOverTime start={start} report={report} providerOf={providerOf} />
          <div className="grid-2">
            <article>
              <TimeChart title="Requests and errors per day" days={dayLabels} series={requestSeries} />
            </article>
            <article>
              <TimeChart title="Tokens per day" days={dayLabels} series={tokenSeries} format={count} />
            </article>
            <article>
              <TimeChart title="Cost per day (USD)" days={dayLabels} series={costSeries} format={smallUsd} />
            </article>
            <article>
              <h2 className="h6">Requests by provider</h2>
              <Bars rows={[...byProvider].map(([label, value]) => ({ label, value }))} format={count} />
            </article>
            <article>
              <h2 className="h6">Cost by model</h2>
              <Bars rows={byModel.map((r) => ({ label: r.model, value: r.cost_usd }))} format={usd} />
            </article>
            <article>
              <h2 className="h6">Requests by key</h2>
              <Bars
                rows={byKey.map((r) => ({ label: r.api_key_id ? r.api_key_id.slice(0, 8) : "JWT", value: r.requests }))}
                format={count}
              />
            </article>
          </div>
        </>
      )}
    </>
  );
}

function Health({ admin }: { admin: boolean }) {
  const ready = useLoad(async (signal) => {
    try {
      return await get<Ready>("/ready", signal);
    } catch (err) {
      // /ready answers 503 with the same body when a dependency is down.
      if (err instanceof ApiError && err.status === 503) return { status: "unavailable", checks: {} } as Ready;
      throw err;
    }
  }, []);
  return (
    <article aria-labelledby="health-title">
      <h2 id="health-title" className="h5">
        Health
      </h2>
      {ready.loading ? <Loading what="health" /> : null}
      {ready.error ? <ErrorBox error={ready.error} retry={ready.reload} /> : null}
      {ready.data ? (
        <ul className="health" data-testid="health">
          <li>
            gateway: <mark className={ready.data.status === "ready" ? "ok" : "bad"}>{ready.data.status}</mark>
          </li>
          {Object.entries(ready.data.checks).map(([name, check]) => (
            <li key={name}>
              {name}: <mark className={check.status === "ok" ? "ok" : "bad"}>{check.status}</mark>{" "}
              <small>{check.latency_ms} ms</small>
            </li>
          ))}
        </ul>
      ) : null}
      {admin ? <ProviderHealth /> : null}
    </article>
  );
}

// Admin only: providers whose deployments failed lately (the shared cooldown table).
function ProviderHealth() {
  const list = useLoad((signal) => get<Page<ModelDeployments>>("/v1/admin/deployments", signal), []);
  if (list.error) return <ErrorBox error={list.error} retry={list.reload} />;
  if (!list.data) return null;
  const providers = new Map<string, { cooling: number; failing: number; total: number }>();
  for (const model of list.data.data) {
    for (const d of model.deployments) {
      const entry = providers.get(d.provider) ?? { cooling: 0, failing: 0, total: 0 };
      entry.total += 1;
      if (d.cooldown?.cooling) entry.cooling += 1;
      else if (d.cooldown) entry.failing += 1;
      providers.set(d.provider, entry);
    }
  }
  return (
    <ul className="health" data-testid="provider-health">
      {[...providers].map(([provider, p]) => (
        <li key={provider}>
          {provider}:{" "}
          <mark className={p.cooling ? "bad" : p.failing ? "neutral" : "ok"}>
            {p.cooling ? `${p.cooling} of ${p.total} cooling down` : p.failing ? "recent failures" : "ok"}
          </mark>
        </li>
      ))}
    </ul>
  );
}

function WorkerModels() {
  const list = useLoad((signal) => get<Page<WorkerModel>>("/v1/admin/worker/models", signal), []);
  const [busy, setBusy] = useState<string | null>(null);
  const [failure, setFailure] = useState<Error | null>(null);

  async function act(action: "load" | "unload" | "reload", model: string) {
    setBusy(`${action}:${model}`);
    setFailure(null);
    try {
      await api("POST", `/v1/admin/worker/models/${action}`, { model });
    } catch (err) {
      setFailure(err instanceof Error ? err : new Error(String(err)));
    } finally {
      setBusy(null);
      list.reload();
    }
  }

  return (
    <article aria-labelledby="worker-title" data-testid="worker-models">
      <h2 id="worker-title" className="h5">
        Local models (llama.cpp worker)
      </h2>
      {list.loading && !list.data ? <Loading what="the worker's models" /> : null}
      {list.error ? <ErrorBox error={list.error} retry={list.reload} /> : null}
      {failure ? <ErrorBox error={failure} /> : null}
      {list.data && list.data.data.length === 0 ? <Empty>The worker serves no model.</Empty> : null}
      {list.data && list.data.data.length > 0 ? (
        <div className="overflow-auto">
          <table>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">State</th>
                <th scope="col">In flight / queued</th>
                <th scope="col">Memory</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.data.data.map((m) => (
                <tr key={m.id} data-testid={`worker-model-${m.id}`}>
                  <td>{m.id}</td>
                  <td>
                    <mark className={m.state === "ready" ? "ok" : "neutral"} data-testid="state">
                      {m.state}
                    </mark>
                    {m.last_error ? <small className="error-text"> {m.last_error}</small> : null}
                  </td>
                  <td>
                    {m.in_flight} / {m.queued}
                  </td>
                  <td>{m.memory_bytes ? `${(m.memory_bytes / 2 ** 20).toFixed(0)} MiB` : "—"}</td>
                  <td className="actions">
                    {(["load", "unload", "reload"] as const).map((action) => (
                      <button
                        key={action}
                        type="button"
                        className="small secondary"
                        aria-busy={busy === `${action}:${m.id}`}
                        disabled={busy !== null}
                        onClick={() => void act(action, m.id)}
                      >
                        {action[0].toUpperCase() + action.slice(1)}
                      </button>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </article>
  );
}

const ms = (value: number | null): string => (value === null ? "—" : `${Math.round(value)} ms`);

function Latency({ start }: { start: string }) {
  // Admin only: the ledger of every principal, by provider and by model.
  const report = useLoad((signal) => get<LatencyReport>(`/v1/admin/latency${query({ start })}`, signal), [start]);
  const rows: (LatencyFigures & { name: string })[] = report.data
    ? [
        ...report.data.by_provider.map((r) => ({ ...r, name: `provider: ${r.provider}` })),
        ...report.data.by_model.map((r) => ({ ...r, name: `model: ${r.model}` })),
      ]
    : [];
  return (
    <article aria-labelledby="latency-title" data-testid="latency">
      <h2 id="latency-title" className="h5">
        Latency and errors (all callers)
      </h2>
      {report.loading && !report.data ? <Loading what="latency" /> : null}
      {report.error ? <ErrorBox error={report.error} retry={report.reload} /> : null}
      {report.data && report.data.totals.requests === 0 ? <Empty>No calls in this range.</Empty> : null}
      {report.data && report.data.totals.requests > 0 ? (
        <div className="overflow-auto">
          <table className="striped">
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Requests</th>
                <th scope="col">Error rate</th>
                <th scope="col">p50</th>
                <th scope="col">p90</th>
                <th scope="col">p99</th>
              </tr>
            </thead>
            <tbody>
              {[{ ...report.data.totals, name: "all" }, ...rows].map((r) => (
                <tr key={r.name}>
                  <td>{r.name}</td>
                  <td>{count(r.requests)}</td>
                  <td>{percent(r.errors, r.requests)}</td>
                  <td>{ms(r.p50_ms)}</td>
                  <td>{ms(r.p90_ms)}</td>
                  <td>{ms(r.p99_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </article>
  );
}

const PALETTE = ["#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#e53935", "#00897b"];
const TOP = 5;
type Dimension = "model" | "provider" | "key";
type Measure = "requests" | "total_tokens" | "cost_usd";

// Per-day series of the top models or keys by spend: GET /v1/usage?group_by=day with
// a model= or key= filter for each (the report has no model x day breakdown);
// providers are the sum of their models.
function BreakdownOverTime({
  start,
  report,
  providerOf,
}: {
  start: string;
  report: UsageReport;
  providerOf: Map<string, string>;
}) {
  const [dimension, setDimension] = useState<Dimension>("model");
  const [measure, setMeasure] = useState<Measure>("requests");
  const filters = useMemo(() => {
    if (dimension === "key") {
      return (report.by_key?.data ?? [])
        .filter((r) => r.api_key_id)
        .slice(0, TOP)
        .map((r) => ({ label: (r.api_key_id ?? "").slice(0, 8), group: (r.api_key_id ?? "").slice(0, 8), param: { key: r.api_key_id } }));
    }
    const models = (report.by_model?.data ?? []).slice(0, dimension === "model" ? TOP : 50);
    return models.map((r) => ({
      label: r.model,
      group: dimension === "provider" ? providerOf.get(r.model) ?? "other" : r.model,
      param: { model: r.model },
    }));
  }, [dimension, report, providerOf]);
  const series = useLoad(
    (signal) =>
      Promise.all(
        filters.map((f) =>
          get<UsageReport>(`/v1/usage${query({ start, group_by: "day", limit: 400, ...f.param })}`, signal).then((r) => ({
            group: f.group,
            days: everyDay(start, r.by_day?.data ?? []),
          })),
        ),
      ),
    [filters, start],
  );
  const { days, lines } = useMemo(() => {
    const grouped = new Map<string, number[]>();
    let labels: string[] = [];
    for (const item of series.data ?? []) {
      labels = item.days.map((d) => d.date);
      const values = item.days.map((d) => d[measure]);
      const sum = grouped.get(item.group);
      grouped.set(item.group, sum ? sum.map((v, i) => v + values[i]) : values);
    }
    return {
      days: labels,
      lines: [...grouped].slice(0, TOP).map(([label, values], i) => ({ label, values, color: PALETTE[i % PALETTE.length] })),
    };
  }, [series.data, measure]);
  const names: Record<Measure, string> = { requests: "Requests", total_tokens: "Tokens", cost_usd: "Cost (USD)" };
  return (
    <article className="breakdown" data-testid="breakdown">
      <div className="row">
        <label>
          By
          <select aria-label="Breakdown by" value={dimension} onChange={(e) => setDimension(e.target.value as Dimension)}>
            <option value="model">model</option>
            <option value="provider">provider</option>
            <option value="key">key</option>
          </select>
        </label>
        <label>
          Show
          <select aria-label="Breakdown measure" value={measure} onChange={(e) => setMeasure(e.target.value as Measure)}>
            <option value="requests">requests</option>
            <option value="total_tokens">tokens</option>
            <option value="cost_usd">cost</option>
          </select>
        </label>
      </div>
      {series.loading && !series.data ? <Loading what="the breakdown" /> : null}
      {series.error ? <ErrorBox error={series.error} retry={series.reload} /> : null}
      {series.data && lines.length > 0 ? (
        <TimeChart
          title={`${names[measure]} per day by ${dimension} (top ${TOP})`}
          days={days}
          series={lines}
          format={measure === "cost_usd" ? smallUsd : count}
        />
      ) : null}
    </article>
  );
}
