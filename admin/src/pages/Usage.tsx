import { type FormEvent, useMemo, useState } from "react";

import { get, query } from "../api";
import { Empty, ErrorBox, Loading } from "../components/Status";
import { count, isoDay, usd } from "../format";
import { useLoad } from "../hooks";
import type { Me, UsageNumbers, UsageReport } from "../types";

type Group = "model" | "day" | "key";

interface Filters {
  start: string;
  end: string;
  model: string;
  key: string;
  group: Group;
}

const COLUMNS: (keyof UsageNumbers)[] = [
  "requests",
  "errors",
  "prompt_tokens",
  "completion_tokens",
  "cached_tokens",
  "total_tokens",
  "cost_usd",
];

function firstColumn(group: Group): string {
  return group === "day" ? "date" : group === "key" ? "api_key_id" : "model";
}

// RFC 4180: quote every field, double the quotes inside.
function toCsv(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (value: unknown) => `"${String(value ?? "").replaceAll('"', '""')}"`;
  return [columns.map(cell).join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))].join("\r\n") + "\r\n";
}

export default function Usage(_: { me: Me }) {
  const today = new Date();
  const monthAgo = new Date(today.getTime() - 29 * 86_400_000);
  const tomorrow = new Date(today.getTime() + 86_400_000);
  const [form, setForm] = useState<Filters>({ start: isoDay(monthAgo), end: isoDay(tomorrow), model: "", key: "", group: "day" });
  const [applied, setApplied] = useState<Filters>(form);
  const report = useLoad(
    (signal) =>
      get<UsageReport>(
        `/v1/usage${query({ start: applied.start, end: applied.end, model: applied.model, key: applied.key, group_by: applied.group, limit: 1000 })}`,
        signal,
      ),
    [applied],
  );
  const key = applied.group === "day" ? "by_day" : applied.group === "key" ? "by_key" : "by_model";
  const rows = useMemo(
    () => ((report.data?.[key]?.data ?? []) as unknown as Record<string, unknown>[]),
    [report.data, key],
  );
  const columns = [firstColumn(applied.group), ...COLUMNS];

  function submit(event: FormEvent) {
    event.preventDefault();
    setApplied(form);
  }

  function exportCsv() {
    const blob = new Blob([toCsv(rows, columns)], { type: "text/csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `spine-usage-${applied.group}-${applied.start}-${applied.end}.csv`;
    link.click();
    URL.revokeObjectURL(link.href);
  }

  return (
    <section aria-labelledby="usage-title">
      <h1 id="usage-title">Usage</h1>
      <form className="filters" onSubmit={submit} aria-label="Filters">
        <label>
          From
          <input type="date" value={form.start} onChange={(e) => setForm({ ...form, start: e.target.value })} required />
        </label>
        <label>
          To (exclusive)
          <input type="date" value={form.end} onChange={(e) => setForm({ ...form, end: e.target.value })} required />
        </label>
        <label>
          Model
          <input value={form.model} placeholder="any" onChange={(e) => setForm({ ...form, model: e.target.value })} />
        </label>
        <label>
          Key id
          <input value={form.key} placeholder="any" onChange={(e) => setForm({ ...form, key: e.target.value.trim() })} />
        </label>
        <label>
          Group by
          <select value={form.group} onChange={(e) => setForm({ ...form, group: e.target.value as Group })}>
            <option value="day">day</option>
            <option value="model">model</option>
            <option value="key">key</option>
          </select>
        </label>
        <button type="submit">Apply</button>
      </form>
      {report.loading && !report.data ? <Loading what="usage" /> : null}
      {report.error ? <ErrorBox error={report.error} retry={report.reload} /> : null}
      {report.data ? (
        <>
          <p data-testid="usage-totals">
            <strong>{count(report.data.totals.requests)}</strong> requests, <strong>{count(report.data.totals.errors)}</strong> errors,{" "}
            <strong>{count(report.data.totals.total_tokens)}</strong> tokens, <strong>{usd(report.data.totals.cost_usd)}</strong>
          </p>
          {rows.length === 0 ? (
            <Empty>No usage matches these filters.</Empty>
          ) : (
            <>
              <button type="button" className="secondary small" onClick={exportCsv}>
                Export CSV
              </button>
              <div className="overflow-auto">
                <table className="striped">
                  <thead>
                    <tr>
                      {columns.map((c) => (
                        <th key={c} scope="col">
                          {c.replaceAll("_", " ")}
                        </th>
                      ))}
                    </tr>
                  </thead>
                  <tbody data-testid="usage-rows">
                    {rows.map((row, i) => (
                      <tr key={i}>
                        {columns.map((c) => (
                          <td key={c}>{c === "cost_usd" ? usd(row[c] as number) : typeof row[c] === "number" ? count(row[c] as number) : String(row[c] ?? "JWT")}</td>
                        ))}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}
        </>
      ) : null}
    </section>
  );
}
