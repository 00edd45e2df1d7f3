import { type FormEvent, useState } from "react";

import { ApiError } from "../api";
import { login } from "../auth";
import type { Me } from "../types";

export function Login({ onLogin, notice }: { onLogin: (me: Me) => void; notice?: string | null }) {
  const [credential, setCredential] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await login(credential.trim()));
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401
          ? "That key or token was not accepted."
          : err instanceof Error
            ? err.message
            : String(err),
      );
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="container login">
      <article>
        <header>
          <h1>Spine admin</h1>
          <p>Sign in with a Spine API key (sk-spine-…) or a JWT from your identity provider.</p>
        </header>
        {notice ? (
          <p role="alert" className="status-error" data-testid="login-notice">
            {notice}
          </p>
        ) : null}
        <form onSubmit={submit}>
          <label htmlFor="credential">API key or JWT</label>
          <input
            id="credential"
            name="credential"
            type="password"
            autoComplete="off"
            autoFocus
            required
            value={credential}
            onChange={(e) => setCredential(e.target.value)}
            aria-invalid={error ? true : undefined}
            aria-describedby="login-help"
          />
          <small id="login-help">{error ?? "Kept in this tab only (session storage), removed when you log out."}</small>
          <button type="submit" aria-busy={busy} disabled={busy || !credential.trim()}>
            Sign in
          </button>
        </form>
      </article>
    </main>
  );
}
