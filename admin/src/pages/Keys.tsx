import { type FormEvent, useState } from "react";

import { api, get } from "../api";
import { can } from "../auth";
import { Empty, ErrorBox, Loading } from "../components/Status";
import { when } from "../format";
import { useLoad } from "../hooks";
import type { ApiKey, Me, Page } from "../types";

function failure(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export default function Keys({ me }: { me: Me }) {
  const [showRevoked, setShowRevoked] = useState(false);
  const list = useLoad(
    (signal) => get<Page<ApiKey>>(`/v1/keys${showRevoked ? "?include_revoked=true" : ""}`, signal),
    [showRevoked],
  );
  const [created, setCreated] = useState<ApiKey | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const writer = can(me, "keys:write");

  async function revoke(key: ApiKey) {
    if (!window.confirm(`Revoke “${key.name}”? Requests with it are refused from now on.`)) return;
    setError(null);
    try {
      await api("DELETE", `/v1/keys/${key.id}`);
      list.reload();
    } catch (err) {
      setError(failure(err));
    }
  }

  return (
    <section aria-labelledby="keys-title">
      <div className="page-head">
        <h1 id="keys-title">API keys</h1>
        <label className="inline">
          <input type="checkbox" role="switch" checked={showRevoked} onChange={(e) => setShowRevoked(e.target.checked)} />
          Show revoked
        </label>
      </div>
      {writer ? (
        <CreateKey
          onCreated={(key) => {
            setCreated(key);
            list.reload();
          }}
        />
      ) : null}
      {created?.key ? <NewKey apiKey={created} onDismiss={() => setCreated(null)} /> : null}
      {error ? <ErrorBox error={error} /> : null}
      {list.loading && !list.data ? <Loading what="keys" /> : null}
      {list.error ? <ErrorBox error={list.error} retry={list.reload} /> : null}
      {list.data && list.data.data.length === 0 ? <Empty>No keys.</Empty> : null}
      {list.data && list.data.data.length > 0 ? (
        <div className="overflow-auto">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Owner</th>
                <th scope="col">Scopes</th>
                <th scope="col">Limits (rpm / tpm / daily / monthly)</th>
                <th scope="col">Last used</th>
                <th scope="col">Status</th>
                {writer ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody data-testid="keys">
              {list.data.data.map((key) => (
                <tr key={key.id} data-testid={`key-${key.name}`}>
                  <td>{key.name}</td>
                  <td>
                    <code>{key.prefix}</code>
                  </td>
                  <td>{key.principal ?? "—"}</td>
                  <td>{key.scopes.join(", ") || "—"}</td>
                  <td>
                    {editing === key.id ? (
                      <EditLimits
                        apiKey={key}
                        onDone={() => {
                          setEditing(null);
                          list.reload();
                        }}
                      />
                    ) : (
                      [key.limits.rpm, key.limits.tpm, key.limits.daily_budget_usd, key.limits.monthly_budget_usd]
                        .map((v) => (v === null ? "default" : String(v)))
                        .join(" / ")
                    )}
                  </td>
                  <td>{when(key.last_used_at)}</td>
                  <td>{key.revoked_at ? <mark className="bad">revoked</mark> : <mark className="ok">active</mark>}</td>
                  {writer ? (
                    <td className="actions">
                      {!key.revoked_at ? (
                        <>
                          <button type="button" className="small outline secondary" onClick={() => setEditing(editing === key.id ? null : key.id)}>
                            Limits
                          </button>
                          <button type="button" className="small outline contrast" onClick={() => void revoke(key)} aria-label={`Revoke ${key.name}`}>
                            Revoke
                          </button>
                        </>
                      ) : null}
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

function CreateKey({ onCreated }: { onCreated: (key: ApiKey) => void }) {
  const [name, setName] = useState("");
  const [principal, setPrincipal] = useState("");
  const [scopes, setScopes] = useState("");
  const [error, setError] = useState<Error | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    try {
      const key = await api<ApiKey>("POST", "/v1/keys", {
        name,
        ...(principal ? { principal } : {}),
        scopes: scopes
          .split(/[\s,]+/)
          .map((s) => s.trim())
          .filter(Boolean),
      });
      setName("");
      setPrincipal("");
      setScopes("");
      onCreated(key);
    } catch (err) {
      setError(failure(err));
    }
  }

  return (
    <details>
      <summary role="button" className="outline">
        Create a key
      </summary>
      <form onSubmit={submit} aria-label="Create a key">
        <div className="grid">
          <label>
            Name
            <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={200} />
          </label>
          <label>
            Owner (principal, optional)
            <input value={principal} onChange={(e) => setPrincipal(e.target.value)} maxLength={200} />
          </label>
          <label>
            Scopes (comma separated)
            <input value={scopes} onChange={(e) => setScopes(e.target.value)} placeholder="prompts:write" />
          </label>
        </div>
        {error ? <ErrorBox error={error} /> : null}
        <button type="submit">Create key</button>
      </form>
    </details>
  );
}

function NewKey({ apiKey, onDismiss }: { apiKey: ApiKey; onDismiss: () => void }) {
  const [copied, setCopied] = useState(false);
  return (
    <article className="new-key" role="status" aria-live="polite">
      <p>
        <strong>Key “{apiKey.name}” created.</strong> Copy it now: it is shown only once and cannot be read back.
      </p>
      <div className="row">
        <code data-testid="new-key">{apiKey.key}</code>
        <button
          type="button"
          className="small"
          onClick={() => {
            void navigator.clipboard?.writeText(apiKey.key ?? "").then(() => setCopied(true));
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        <button type="button" className="small secondary" onClick={onDismiss}>
          Done
        </button>
      </div>
    </article>
  );
}

function EditLimits({ apiKey, onDone }: { apiKey: ApiKey; onDone: () => void }) {
  const [rpm, setRpm] = useState(apiKey.limits.rpm?.toString() ?? "");
  const [tpm, setTpm] = useState(apiKey.limits.tpm?.toString() ?? "");
  const [daily, setDaily] = useState(apiKey.limits.daily_budget_usd ?? "");
  const [monthly, setMonthly] = useState(apiKey.limits.monthly_budget_usd ?? "");
  const [error, setError] = useState<Error | null>(null);
  // Empty hands the limit back to config.toml's default (null); 0 lifts it.
  const number = (text: string) => (text.trim() === "" ? null : Number(text));
  const money = (text: string) => (text.trim() === "" ? null : text.trim());

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    try {
      await api("PATCH", `/v1/keys/${apiKey.id}`, {
        limits: { rpm: number(rpm), tpm: number(tpm), daily_budget_usd: money(daily), monthly_budget_usd: money(monthly) },
      });
      onDone();
    } catch (err) {
      setError(failure(err));
    }
  }

  return (
    <form onSubmit={submit} className="limits" aria-label={`Limits of ${apiKey.name}`}>
      <input aria-label="Requests per minute" placeholder="rpm" inputMode="numeric" value={rpm} onChange={(e) => setRpm(e.target.value)} />
      <input aria-label="Tokens per minute" placeholder="tpm" inputMode="numeric" value={tpm} onChange={(e) => setTpm(e.target.value)} />
      <input aria-label="Daily budget USD" placeholder="daily $" inputMode="decimal" value={daily} onChange={(e) => setDaily(e.target.value)} />
      <input aria-label="Monthly budget USD" placeholder="monthly $" inputMode="decimal" value={monthly} onChange={(e) => setMonthly(e.target.value)} />
      <button type="submit" className="small">
        Save
      </button>
      {error ? <ErrorBox error={error} /> : null}
    </form>
  );
}
