import { type FormEvent, useEffect, useMemo, useRef, useState } from "react";

import { api, ApiError, get, query, rawRequest } from "../api";
import { Empty, ErrorBox, Loading } from "../components/Status";
import { count, usd } from "../format";
import { useLoad, usePaged } from "../hooks";
import { renderMarkdown } from "../markdown";
import { readEvents } from "../sse";
import type { ChatSession, Me, ModelInfo, Page, SessionMessage } from "../types";

interface TurnStats {
  model: string | null;
  requestId: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  costUsd: number | null;
  stopped?: boolean;
}

interface Turn {
  id: string;
  role: "user" | "assistant";
  text: string;
  stats?: TurnStats;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part) => (part && typeof part === "object" && "text" in part ? String((part as { text: unknown }).text) : ""))
      .join(" ");
  }
  return "";
}

function costOf(model: ModelInfo | undefined, prompt: number, completion: number): number | null {
  if (!model) return null;
  return (prompt * model.pricing.input + completion * model.pricing.output) / 1_000_000;
}

export default function Chat(_: { me: Me }) {
  const models = useLoad((signal) => get<Page<ModelInfo>>("/v1/models", signal), []);
  const sessions = usePaged<ChatSession>(
    (after, signal) => get<Page<ChatSession>>(`/v1/sessions${query({ limit: 50, after })}`, signal),
    [],
  );
  const [sessionId, setSessionId] = useState<string | null>(null);
  const [model, setModel] = useState<string>("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const [input, setInput] = useState("");
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const controller = useRef<AbortController | null>(null);
  const bottom = useRef<HTMLDivElement>(null);

  const chatModels = useMemo(
    () => (models.data?.data ?? []).filter((m) => m.capabilities.includes("chat") || m.profile),
    [models.data],
  );
  useEffect(() => {
    if (!model && chatModels.length > 0) setModel(chatModels[0].id);
  }, [chatModels, model]);
  useEffect(() => {
    // Braces: newer browsers return a promise from scrollIntoView, which React
    // would take for a cleanup function.
    void bottom.current?.scrollIntoView({ block: "end" });
  }, [turns]);
  useEffect(() => () => controller.current?.abort(), []);

  async function open(session: ChatSession) {
    controller.current?.abort();
    setError(null);
    setSessionId(session.id);
    setModel(session.model);
    try {
      const page = await get<Page<SessionMessage>>(`/v1/sessions/${session.id}/messages?limit=100`);
      setTurns(
        page.data
          .filter((m) => m.role === "user" || m.role === "assistant")
          .map((m) => ({
            id: m.id,
            role: m.role as "user" | "assistant",
            text: textOf(m.content),
            stats:
              m.role === "assistant"
                ? { model: null, requestId: m.request_id, promptTokens: null, completionTokens: m.tokens, costUsd: null }
                : undefined,
          })),
      );
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  function newChat() {
    controller.current?.abort();
    setSessionId(null);
    setTurns([]);
    setError(null);
  }

  async function rename(session: ChatSession) {
    const title = window.prompt("New title", session.title ?? "");
    if (title === null || !title.trim()) return;
    try {
      await api("PATCH", `/v1/sessions/${session.id}`, { title: title.trim() });
      sessions.reload();
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async function remove(session: ChatSession) {
    if (!window.confirm(`Delete “${session.title ?? "untitled"}” and its messages?`)) return;
    try {
      await api("DELETE", `/v1/sessions/${session.id}`);
      if (session.id === sessionId) newChat();
      sessions.reload();
    } catch (err) {
      setError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  async function send(event: FormEvent) {
    event.preventDefault();
    const text = input.trim();
    if (!text || streaming || !model) return;
    setError(null);
    setInput("");
    const abort = new AbortController();
    controller.current = abort;
    setStreaming(true);
    const answerId = `a-${Date.now()}`;
    setTurns((t) => [...t, { id: `u-${Date.now()}`, role: "user", text }, { id: answerId, role: "assistant", text: "" }]);
    const update = (change: (turn: Turn) => Turn) =>
      setTurns((all) => all.map((turn) => (turn.id === answerId ? change(turn) : turn)));
    const info = chatModels.find((m) => m.id === model);
    const stats: TurnStats = { model: null, requestId: null, promptTokens: null, completionTokens: null, costUsd: null };
    try {
      let sid = sessionId;
      if (!sid) {
        const created = await api<ChatSession>("POST", "/v1/sessions", { model, title: text.slice(0, 60) });
        sid = created.id;
        setSessionId(sid);
      }
      const response = await rawRequest(
        "POST",
        "/v1/chat/completions",
        {
          model,
          session_id: sid,
          stream: true,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: text }],
        },
        { signal: abort.signal },
      );
      stats.model = response.headers.get("x-spine-model");
      stats.requestId = response.headers.get("x-request-id");
      const headerCost = response.headers.get("x-spine-cost-usd");
      for await (const item of readEvents(response)) {
        if (item.event === "error") {
          throw new ApiError(502, item.data);
        }
        const chunk = item.data as {
          choices?: { delta?: { content?: string | null } }[];
          usage?: { prompt_tokens: number; completion_tokens: number } | null;
        };
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) update((turn) => ({ ...turn, text: turn.text + delta }));
        if (chunk.usage) {
          stats.promptTokens = chunk.usage.prompt_tokens;
          stats.completionTokens = chunk.usage.completion_tokens;
          stats.costUsd = headerCost
            ? Number(headerCost)
            : costOf(info, chunk.usage.prompt_tokens, chunk.usage.completion_tokens);
        }
      }
      update((turn) => ({ ...turn, stats: { ...stats } }));
    } catch (err) {
      if (abort.signal.aborted) {
        update((turn) => ({ ...turn, stats: { ...stats, stopped: true } }));
      } else {
        setError(err instanceof Error ? err : new Error(String(err)));
      }
    } finally {
      setStreaming(false);
      controller.current = null;
      sessions.reload();
    }
  }

  return (
    <section className="chat" aria-labelledby="chat-title">
      <aside className="sessions" aria-label="Sessions">
        <div className="page-head">
          <h1 id="chat-title" className="h4">
            Chat
          </h1>
          <button type="button" className="small" onClick={newChat}>
            New chat
          </button>
        </div>
        {sessions.loading && sessions.items.length === 0 ? <Loading what="sessions" /> : null}
        {sessions.error ? <ErrorBox error={sessions.error} retry={sessions.reload} /> : null}
        {!sessions.loading && sessions.items.length === 0 ? <Empty>No sessions yet.</Empty> : null}
        <ul className="session-list" data-testid="sessions">
          {sessions.items.map((s) => (
            <li key={s.id} className={s.id === sessionId ? "current" : undefined}>
              <button type="button" className="link" onClick={() => void open(s)} aria-current={s.id === sessionId ? "true" : undefined}>
                {s.title ?? "untitled"}
              </button>
              <small>
                {s.model} · {s.message_count} messages
              </small>
              <span className="row-actions">
                <button type="button" className="small outline secondary" onClick={() => void rename(s)} aria-label={`Rename ${s.title ?? "untitled"}`}>
                  Rename
                </button>
                <button type="button" className="small outline secondary" onClick={() => void remove(s)} aria-label={`Delete ${s.title ?? "untitled"}`}>
                  Delete
                </button>
              </span>
            </li>
          ))}
        </ul>
        {sessions.hasMore ? (
          <button type="button" className="small secondary" onClick={sessions.loadMore} aria-busy={sessions.loading}>
            Load more
          </button>
        ) : null}
      </aside>
      <div className="conversation">
        <label>
          Model or profile
          <select value={model} onChange={(e) => setModel(e.target.value)} disabled={streaming} aria-label="Model or profile">
            {chatModels.map((m) => (
              <option key={m.id} value={m.id}>
                {m.profile ? `${m.id} (profile → ${m.resolves_to ?? ""})` : `${m.id} (${m.provider})`}
              </option>
            ))}
          </select>
        </label>
        {models.error ? <ErrorBox error={models.error} retry={models.reload} /> : null}
        <div className="transcript" aria-live="polite" data-testid="transcript">
          {turns.length === 0 ? <Empty>Ask something to start a session.</Empty> : null}
          {turns.map((turn) => (
            <div key={turn.id} className={`turn ${turn.role}`} data-role={turn.role}>
              {turn.role === "assistant" ? (
                // Escaped by markdown-it (html: false): see markdown.ts.
                <div className="markdown" dangerouslySetInnerHTML={{ __html: renderMarkdown(turn.text) }} />
              ) : (
                <p className="plain">{turn.text}</p>
              )}
              {turn.stats ? (
                <small className="turn-stats" data-testid="turn-stats">
                  {turn.stats.stopped ? "stopped · " : ""}
                  {turn.stats.promptTokens !== null ? `${count(turn.stats.promptTokens)} in · ` : ""}
                  {turn.stats.completionTokens !== null ? `${count(turn.stats.completionTokens)} out` : ""}
                  {turn.stats.costUsd !== null ? ` · ${usd(turn.stats.costUsd)}` : ""}
                  {turn.stats.model ? ` · ${turn.stats.model}` : ""}
                </small>
              ) : null}
            </div>
          ))}
          <div ref={bottom} />
        </div>
        {error ? <ErrorBox error={error} /> : null}
        <form onSubmit={send} className="composer">
          <textarea
            aria-label="Message"
            placeholder="Message (Enter sends, Shift+Enter for a new line)"
            value={input}
            onChange={(e) => setInput(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                e.currentTarget.form?.requestSubmit();
              }
            }}
            rows={3}
          />
          {streaming ? (
            <button type="button" className="secondary" onClick={() => controller.current?.abort()}>
              Stop
            </button>
          ) : (
            <button type="submit" disabled={!input.trim() || !model}>
              Send
            </button>
          )}
        </form>
      </div>
    </section>
  );
}
