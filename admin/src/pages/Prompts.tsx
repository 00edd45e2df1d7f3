import { diffLines } from "diff";
import { type FormEvent, useEffect, useMemo, useState } from "react";

import { api, get, query } from "../api";
import { can } from "../auth";
import { Empty, ErrorBox, Loading } from "../components/Status";
import { when } from "../format";
import { useLoad, usePaged } from "../hooks";
import { renderMarkdown } from "../markdown";
import type { Me, ModelInfo, Page, Prompt, PromptVersion } from "../types";

// The template language's placeholder (spine.prompts.templates.PLACEHOLDER).
const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}/g;

function placeholders(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1]))];
}

function failure(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export default function Prompts({ me }: { me: Me }) {
  const list = usePaged<Prompt>(
    (after, signal) => get<Page<Prompt>>(`/v1/prompts${query({ limit: 100, after })}`, signal),
    [],
  );
  const [search, setSearch] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const writer = can(me, "prompts:write");

  const shown = list.items.filter((p) =>
    `${p.slug ?? ""} ${p.name ?? ""} ${p.description ?? ""}`.toLowerCase().includes(search.toLowerCase()),
  );

  return (
    <section aria-labelledby="prompts-title">
      <div className="page-head">
        <h1 id="prompts-title">Prompts</h1>
        {writer ? (
          <button type="button" onClick={() => setCreating(true)}>
            New prompt
          </button>
        ) : null}
      </div>
      {creating ? (
        <CreatePrompt
          onDone={(id) => {
            setCreating(false);
            list.reload();
            if (id) setSelected(id);
          }}
        />
      ) : null}
      <div className="split">
        <div>
          <input type="search" placeholder="Search prompts" aria-label="Search prompts" value={search} onChange={(e) => setSearch(e.target.value)} />
          {list.loading && list.items.length === 0 ? <Loading what="prompts" /> : null}
          {list.error ? <ErrorBox error={list.error} retry={list.reload} /> : null}
          {!list.loading && shown.length === 0 ? <Empty>{search ? "No prompt matches." : "No prompts yet."}</Empty> : null}
          <ul className="picker" data-testid="prompt-list">
            {shown.map((p) => (
              <li key={p.id}>
                <button type="button" className={p.id === selected ? "link current" : "link"} onClick={() => setSelected(p.id)} aria-current={p.id === selected ? "true" : undefined}>
                  {p.slug}
                </button>{" "}
                <small>v{p.latest_version}</small>
              </li>
            ))}
          </ul>
          {list.hasMore ? (
            <button type="button" className="small secondary" onClick={list.loadMore} aria-busy={list.loading}>
              Load more
            </button>
          ) : null}
        </div>
        <div>{selected ? <PromptDetail key={selected} id={selected} writer={writer} onChanged={list.reload} /> : <Empty>Pick a prompt.</Empty>}</div>
      </div>
    </section>
  );
}

function CreatePrompt({ onDone }: { onDone: (id: string | null) => void }) {
  const [slug, setSlug] = useState("");
  const [template, setTemplate] = useState("");
  const [error, setError] = useState<Error | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    try {
      const created = await api<Prompt>("POST", "/v1/prompts", { slug, template });
      onDone(created.id);
    } catch (err) {
      setError(failure(err));
    }
  }

  return (
    <article>
      <form onSubmit={submit} aria-label="New prompt">
        <label>
          Slug
          <input value={slug} onChange={(e) => setSlug(e.target.value)} required pattern="[a-z0-9][a-z0-9_\-]{0,127}" placeholder="summarize" />
        </label>
        <label>
          Template
          <textarea value={template} onChange={(e) => setTemplate(e.target.value)} required rows={4} placeholder="Summarize for {{ audience }}: {{ text }}" />
        </label>
        {error ? <ErrorBox error={error} /> : null}
        <div className="row">
          <button type="submit">Create</button>
          <button type="button" className="secondary" onClick={() => onDone(null)}>
            Cancel
          </button>
        </div>
      </form>
    </article>
  );
}

function PromptDetail({ id, writer, onChanged }: { id: string; writer: boolean; onChanged: () => void }) {
  const prompt = useLoad((signal) => get<Prompt>(`/v1/prompts/${id}`, signal), [id]);
  const versions = useLoad((signal) => get<Page<PromptVersion>>(`/v1/prompts/${id}/versions?limit=100`, signal), [id]);
  const [draft, setDraft] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [values, setValues] = useState<Record<string, string>>({});

  const latest = prompt.data?.version;
  const template = draft ?? latest?.template ?? "";
  const names = useMemo(() => placeholders(template), [template]);

  function refresh(message: string) {
    setDraft(null);
    setNotice(message);
    prompt.reload();
    versions.reload();
    onChanged();
  }

  async function save() {
    setError(null);
    try {
      const saved = await api<Prompt>("PATCH", `/v1/prompts/${id}`, { template });
      refresh(`Saved as version ${saved.version?.version ?? saved.latest_version}.`);
    } catch (err) {
      setError(failure(err));
    }
  }

  async function rollback(version: number) {
    setError(null);
    try {
      const done = await api<Prompt>("POST", `/v1/prompts/${id}/rollback`, { version });
      refresh(`Version ${version}'s content is now version ${done.version?.version ?? done.latest_version}.`);
    } catch (err) {
      setError(failure(err));
    }
  }

  async function setLabel(label: string, version: number) {
    setError(null);
    try {
      await api("PUT", `/v1/prompts/${id}/labels/${encodeURIComponent(label)}`, { version });
      refresh(`Label ${label} → version ${version}.`);
    } catch (err) {
      setError(failure(err));
    }
  }

  async function removeLabel(label: string) {
    setError(null);
    try {
      await api("DELETE", `/v1/prompts/${id}/labels/${encodeURIComponent(label)}`);
      refresh(`Label ${label} removed.`);
    } catch (err) {
      setError(failure(err));
    }
  }

  if (prompt.loading && !prompt.data) return <Loading what="the prompt" />;
  if (prompt.error) return <ErrorBox error={prompt.error} retry={prompt.reload} />;
  if (!prompt.data || !latest) return null;

  return (
    <div className="prompt-detail">
      <h2 className="h4">
        {prompt.data.slug} <small data-testid="latest-version">v{prompt.data.latest_version}</small>
      </h2>
      {notice ? <p role="status">{notice}</p> : null}
      {error ? <ErrorBox error={error} /> : null}
      <label>
        Template
        <textarea
          data-testid="template"
          rows={6}
          value={template}
          readOnly={!writer}
          onChange={(e) => setDraft(e.target.value)}
        />
      </label>
      {writer ? (
        <button type="button" onClick={() => void save()} disabled={draft === null || draft === latest.template}>
          Save as new version
        </button>
      ) : null}
      <fieldset>
        <legend>Variables</legend>
        {names.length === 0 ? <small>The template has no {"{{ placeholders }}"}.</small> : null}
        {names.map((name) => {
          // Declared with the saved version: its default fills what is left empty.
          const declared = latest.variables.find((v) => v.name === name);
          return (
            <label key={name}>
              {name}
              {declared?.description ? <small> {declared.description}</small> : null}
              <input
                value={values[name] ?? ""}
                placeholder={declared?.default ? `default: ${declared.default}` : declared?.required === false ? "optional" : "required"}
                onChange={(e) => setValues({ ...values, [name]: e.target.value })}
              />
            </label>
          );
        })}
      </fieldset>
      <LiveRender id={id} template={template} saved={draft === null} values={values} />
      <h3 className="h5">Labels</h3>
      <Labels labels={prompt.data.labels} latest={prompt.data.latest_version} writer={writer} onSet={setLabel} onRemove={removeLabel} />
      <h3 className="h5">Versions</h3>
      {versions.loading && !versions.data ? <Loading what="versions" /> : null}
      {versions.error ? <ErrorBox error={versions.error} retry={versions.reload} /> : null}
      {versions.data ? <Versions versions={versions.data.data} writer={writer} onRollback={rollback} /> : null}
      <h3 className="h5">Run</h3>
      <Run id={id} values={values} versions={(versions.data?.data ?? []).map((v) => v.version)} />
    </div>
  );
}

function LiveRender({ id, template, saved, values }: { id: string; template: string; saved: boolean; values: Record<string, string> }) {
  // A saved template is rendered by the API (the real renderer, with the declared
  // defaults); an unsaved draft is previewed here with the same placeholder rule.
  const [rendered, setRendered] = useState<string>("");
  const [error, setError] = useState<Error | null>(null);
  useEffect(() => {
    if (!saved) {
      setRendered(template.replace(PLACEHOLDER, (_m, name: string) => values[name] ?? `{{ ${name} }}`));
      setError(null);
      return;
    }
    const controller = new AbortController();
    const timer = window.setTimeout(() => {
      const variables = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ""));
      api<{ text: string }>("POST", `/v1/prompts/${id}/render`, { variables }, { signal: controller.signal })
        .then((r) => {
          setRendered(r.text);
          setError(null);
        })
        .catch((err: unknown) => {
          if (!controller.signal.aborted) setError(failure(err));
        });
    }, 250);
    return () => {
      controller.abort();
      window.clearTimeout(timer);
    };
  }, [id, template, saved, values]);
  return (
    <div>
      <small>Rendered{saved ? "" : " (draft, not saved)"}</small>
      {error ? <small className="error-text"> {error.message}</small> : null}
      <pre className="rendered" data-testid="rendered">
        {rendered}
      </pre>
    </div>
  );
}

function Labels({
  labels,
  latest,
  writer,
  onSet,
  onRemove,
}: {
  labels: Record<string, number>;
  latest: number;
  writer: boolean;
  onSet: (label: string, version: number) => void;
  onRemove: (label: string) => void;
}) {
  const [label, setLabel] = useState("");
  const [version, setVersion] = useState(String(latest));
  const entries = Object.entries(labels);
  return (
    <div>
      {entries.length === 0 ? <small>No labels.</small> : null}
      <ul className="labels" data-testid="labels">
        {entries.map(([name, v]) => (
          <li key={name}>
            <mark>{name}</mark> → v{v}{" "}
            {writer ? (
              <button type="button" className="small outline secondary" onClick={() => onRemove(name)} aria-label={`Remove label ${name}`}>
                Remove
              </button>
            ) : null}
          </li>
        ))}
      </ul>
      {writer ? (
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            onSet(label, Number(version));
            setLabel("");
          }}
        >
          <input aria-label="Label" placeholder="production" value={label} onChange={(e) => setLabel(e.target.value)} required />
          <input aria-label="Version" type="number" min={1} max={latest} value={version} onChange={(e) => setVersion(e.target.value)} required />
          <button type="submit" className="secondary">
            Set label
          </button>
        </form>
      ) : null}
    </div>
  );
}

function Versions({ versions, writer, onRollback }: { versions: PromptVersion[]; writer: boolean; onRollback: (version: number) => void }) {
  const newest = versions[0]?.version ?? 1;
  const [left, setLeft] = useState(Math.max(1, newest - 1));
  const [right, setRight] = useState(newest);
  useEffect(() => {
    setLeft(Math.max(1, newest - 1));
    setRight(newest);
  }, [newest]);
  const a = versions.find((v) => v.version === left);
  const b = versions.find((v) => v.version === right);
  const parts = a && b ? diffLines(a.template, b.template) : [];
  return (
    <div>
      <div className="overflow-auto">
        <table>
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Created</th>
              <th scope="col">Template</th>
              {writer ? <th scope="col">Rollback</th> : null}
            </tr>
          </thead>
          <tbody data-testid="versions">
            {versions.map((v) => (
              <tr key={v.version}>
                <td>v{v.version}</td>
                <td>{when(v.created_at)}</td>
                <td className="clip">{v.template}</td>
                {writer ? (
                  <td>
                    <button type="button" className="small outline" disabled={v.version === newest} onClick={() => onRollback(v.version)} aria-label={`Roll back to version ${v.version}`}>
                      Roll back
                    </button>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="row">
        <label>
          Compare
          <select aria-label="Compare from version" value={left} onChange={(e) => setLeft(Number(e.target.value))}>
            {versions.map((v) => (
              <option key={v.version} value={v.version}>
                v{v.version}
              </option>
            ))}
          </select>
        </label>
        <label>
          with
          <select aria-label="Compare to version" value={right} onChange={(e) => setRight(Number(e.target.value))}>
            {versions.map((v) => (
              <option key={v.version} value={v.version}>
                v{v.version}
              </option>
            ))}
          </select>
        </label>
      </div>
      <pre className="diff" data-testid="diff" aria-label={`Changes from version ${left} to version ${right}`}>
        {parts.map((part, i) => (
          <span key={i} className={part.added ? "added" : part.removed ? "removed" : "same"}>
            {part.value
              .replace(/\n$/, "")
              .split("\n")
              .map((line) => `${part.added ? "+ " : part.removed ? "- " : "  "}${line}`)
              .join("\n") + "\n"}
          </span>
        ))}
      </pre>
    </div>
  );
}

interface Completion {
  choices: { message: { content: string | null } }[];
  usage?: { total_tokens: number };
  model: string;
}

interface Side {
  model: string;
  version: string;
}

function Run({ id, values, versions }: { id: string; values: Record<string, string>; versions: number[] }) {
  // One run, or two side by side on the same variables: two models, two versions, or both.
  const models = useLoad((signal) => get<Page<ModelInfo>>("/v1/models", signal), []);
  const choices = (models.data?.data ?? []).filter((m) => m.capabilities.includes("chat") || m.profile);
  const [first, setFirst] = useState<Side>({ model: "", version: "" });
  const [second, setSecond] = useState<Side | null>(null);
  const [answers, setAnswers] = useState<(string | Error | null)[]>([]);
  const [busy, setBusy] = useState(false);

  async function run() {
    setBusy(true);
    const variables = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ""));
    const sides = second ? [first, second] : [first];
    const results = await Promise.all(
      sides.map((side) =>
        api<Completion>("POST", "/v1/execute-prompt", {
          prompt: id,
          variables,
          ...(side.model ? { model: side.model } : {}),
          ...(side.version ? { version: Number(side.version) } : {}),
        })
          .then((c) => c.choices[0]?.message.content ?? "")
          .catch((err: unknown) => failure(err)),
      ),
    );
    setAnswers(results);
    setBusy(false);
  }

  function picker(side: Side, set: (side: Side) => void, label: string) {
    return (
      <div className="row">
        <label>
          {label} model
          <select aria-label={`${label} model`} value={side.model} onChange={(e) => set({ ...side, model: e.target.value })}>
            <option value="">the version's model</option>
            {choices.map((m) => (
              <option key={m.id}>{m.id}</option>
            ))}
          </select>
        </label>
        <label>
          version
          <select aria-label={`${label} version`} value={side.version} onChange={(e) => set({ ...side, version: e.target.value })}>
            <option value="">newest</option>
            {versions.map((v) => (
              <option key={v} value={v}>
                v{v}
              </option>
            ))}
          </select>
        </label>
      </div>
    );
  }

  return (
    <div>
      {picker(first, setFirst, "Run with")}
      {second ? picker(second, setSecond, "Compare with") : null}
      <div className="row">
        <label className="inline">
          <input
            type="checkbox"
            role="switch"
            checked={second !== null}
            onChange={(e) => setSecond(e.target.checked ? { ...first } : null)}
          />
          Side by side
        </label>
        <button type="button" onClick={() => void run()} aria-busy={busy} disabled={busy}>
          Run
        </button>
      </div>
      <div className={answers.length > 1 ? "grid-2" : undefined} data-testid="run-answers">
        {answers.map((answer, i) =>
          answer instanceof Error ? (
            <ErrorBox key={i} error={answer} />
          ) : (
            <article key={i} className="markdown" dangerouslySetInnerHTML={{ __html: renderMarkdown(answer ?? "") }} />
          ),
        )}
      </div>
    </div>
  );
}
