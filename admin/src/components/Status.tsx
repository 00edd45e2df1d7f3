import type { ReactNode } from "react";

import { ApiError } from "../api";

export function Loading({ what }: { what: string }) {
  return (
    <p aria-busy="true" className="status-loading">
      Loading {what}…
    </p>
  );
}

export function ErrorBox({ error, retry }: { error: Error; retry?: () => void }) {
  const detail = error instanceof ApiError ? ` (${error.status}${error.code ? `, ${error.code}` : ""})` : "";
  return (
    <div role="alert" className="status-error">
      <strong>Something went wrong{detail}.</strong> <span>{error.message}</span>
      {retry ? (
        <button type="button" className="secondary outline small" onClick={retry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="status-empty">{children}</p>;
}
