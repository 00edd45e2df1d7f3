import { type FormEvent, useState } from "react";

import { api, get } from "../api";
import { Empty, ErrorBox, Loading } from "../components/Status";
import { count } from "../format";
import { useLoad } from "../hooks";
import { when } from "../format";
import type { Me, ModelDeployments, ModelInfo, Page } from "../types";

interface CheckResult {
  valid: boolean;
  models: string[];
  problems: { line: number; field: string; message: string; text: string }[];
}

export default function Models({ me }: { me: Me }) {
  const models = useLoad((signal) => get<Page<ModelInfo>>("/v1/models", signal), []);
  const entries = (models.data?.data ?? []).filter((m) => !m.resolves_to);
  const named = (models.data?.data ?? []).filter((m) => m.resolves_to);
  return (
    <section aria-labelledby="models-title">
      <h1 id="models-title">Models</h1>
      {models.loading && !models.data ? <Loading what="the registry" /> : null}
      {models.error ? <ErrorBox error={models.error} retry={models.reload} /> : null}
      {models.data && entries.length === 0 ? <Empty>models.yaml lists no model.</Empty> : null}
      {entries.length > 0 ? (
        <div className="overflow-auto">
          <table className="striped">
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Provider</th>
                <th scope="col">Context</th>
                <th scope="col">$ / 1M in · out · cached</th>
                <th scope="col">Capabilities</th>
                <th scope="col">Aliases</th>
                <th scope="col">Fallbacks</th>
              </tr>
            </thead>
            <tbody data-testid="models">
              {entries.map((m) => (
                <tr key={m.id}>
                  <td>{m.id}</td>
                  <td>{m.provider}</td>
                  <td>{count(m.context_window)}</td>
                  <td>
                    {m.pricing.input} · {m.pricing.output} · {m.pricing.cached_input}
                  </td>
                  <td>{m.capabilities.join(", ")}</td>
                  <td>{m.aliases.join(", ") || "—"}</td>
                  <td>{m.fallbacks.join(" → ") || "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      {named.length > 0 ? (
        <>
          <h2 className="h5">Profiles and aliases</h2>
          <ul>
            {named.map((m) => (
              <li key={m.id}>
                <code>{m.id}</code> → <code>{m.resolves_to}</code>
                {m.profile ? <small> profile {JSON.stringify(m.profile.parameters)}</small> : null}
              </li>
            ))}
          </ul>
        </>
      ) : null}
      {me.admin ? <Deployments /> : null}
      {me.admin ? <CheckModels /> : null}
    </section>
  );
}

function CheckModels() {
  const [content, setContent] = useState("");
  const [result, setResult] = useState<CheckResult | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setResult(await api<CheckResult>("POST", "/v1/admin/models/check", { content }));
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <article aria-labelledby="check-title" data-testid="models-check">
      <h2 id="check-title" className="h5">
        Check a models.yaml
      </h2>
      <form onSubmit={submit}>
        <textarea
          aria-label="models.yaml content"
          rows={10}
          className="code"
          placeholder={"version: 1\nmodels:\n  - id: …"}
          value={content}
          onChange={(e) => setContent(e.target.value)}
          required
        />
        <button type="submit" aria-busy={busy} disabled={busy}>
          Check
        </button>
      </form>
      {error ? <ErrorBox error={error} /> : null}
      {result?.valid ? (
        <p role="status" className="ok-text">
          Valid: {result.models.length} models ({result.models.join(", ")}).
        </p>
      ) : null}
      {result && !result.valid ? (
        <ul className="problems" role="status" data-testid="problems">
          {result.problems.map((p) => (
            <li key={p.text}>
              <code>models.yaml:{p.line}</code> <strong>{p.field}</strong>: {p.message}
            </li>
          ))}
        </ul>
      ) : null}
    </article>
  );
}

function Deployments() {
  const list = useLoad((signal) => get<Page<ModelDeployments>>("/v1/admin/deployments", signal), []);
  return (
    <article aria-labelledby="deployments-title" data-testid="deployments">
      <h2 id="deployments-title" className="h5">
        Deployments and cooldowns
      </h2>
      {list.loading && !list.data ? <Loading what="deployments" /> : null}
      {list.error ? <ErrorBox error={list.error} retry={list.reload} /> : null}
      {list.data ? (
        <div className="overflow-auto">
          <table>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Deployment</th>
                <th scope="col">Provider model</th>
                <th scope="col">Weight</th>
                <th scope="col">Cooldown</th>
              </tr>
            </thead>
            <tbody>
              {list.data.data.flatMap((m) =>
                m.deployments.map((d) => (
                  <tr key={`${m.model}/${d.name}`}>
                    <td>{m.model}</td>
                    <td>
                      {d.name} <small>({d.provider})</small>
                    </td>
                    <td>{d.model}</td>
                    <td>{d.weight}</td>
                    <td>
                      {d.cooldown === null ? (
                        <mark className="ok">healthy</mark>
                      ) : d.cooldown.cooling ? (
                        <>
                          <mark className="bad">cooling down</mark> <small>until {when(d.cooldown.cooled_until)}</small>
                        </>
                      ) : (
                        <mark className="neutral">{d.cooldown.failures} recent failures</mark>
                      )}
                      {d.cooldown?.last_error ? <small> {d.cooldown.last_error}</small> : null}
                    </td>
                  </tr>
                )),
              )}
            </tbody>
          </table>
        </div>
      ) : null}
    </article>
  );
}
