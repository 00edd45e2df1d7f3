import { useCallback, useEffect, useState, useSyncExternalStore } from "react";

import { ApiError } from "./api";

// Hash routing: the app is static files (S3, the emulator), so no server has to
// answer deep links; `#/prompts` is always index.html.
function subscribe(callback: () => void): () => void {
  window.addEventListener("hashchange", callback);
  return () => window.removeEventListener("hashchange", callback);
}

export function useRoute(): string {
  const hash = useSyncExternalStore(subscribe, () => window.location.hash);
  const path = hash.replace(/^#/, "");
  return path.startsWith("/") ? path : "/";
}

export function navigate(path: string): void {
  window.location.hash = path;
}

export interface Loaded<T> {
  data: T | null;
  error: ApiError | Error | null;
  loading: boolean;
  reload: () => void;
}

// One request per mount (and per `deps` change), cancelled when the page goes away.
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    setError(null);
    load(controller.signal)
      .then((value) => {
        if (!controller.signal.aborted) setData(value);
      })
      .catch((err: unknown) => {
        if (controller.signal.aborted) return;
        setError(err instanceof Error ? err : new Error(String(err)));
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
    // `load` is a new closure each render; `deps` says when it asks for new data.
  }, [...deps, tick]);

  return { data, error, loading, reload };
}

export interface Paged<T> {
  items: T[];
  error: Error | null;
  loading: boolean;
  hasMore: boolean;
  loadMore: () => void;
  reload: () => void;
}

// An OpenAI-shaped list read page by page (`after` = the last id of the page before).
export function usePaged<T extends { id: string }>(
  fetchPage: (after: string | null, signal: AbortSignal) => Promise<{ data: T[]; has_more: boolean }>,
  deps: unknown[],
): Paged<T> {
  const [items, setItems] = useState<T[]>([]);
  const [after, setAfter] = useState<string | null>(null);
  const [hasMore, setHasMore] = useState(false);
  const first = useLoad((signal) => fetchPage(null, signal), deps);
  const [more, setMore] = useState<{ loading: boolean; error: Error | null }>({ loading: false, error: null });

  useEffect(() => {
    if (!first.data) return;
    setItems(first.data.data);
    setHasMore(first.data.has_more);
    setAfter(first.data.data.at(-1)?.id ?? null);
  }, [first.data]);

  const loadMore = useCallback(() => {
    if (!after) return;
    setMore({ loading: true, error: null });
    fetchPage(after, new AbortController().signal)
      .then((page) => {
        setItems((current) => [...current, ...page.data]);
        setHasMore(page.has_more);
        setAfter(page.data.at(-1)?.id ?? after);
        setMore({ loading: false, error: null });
      })
      .catch((err: unknown) => setMore({ loading: false, error: err instanceof Error ? err : new Error(String(err)) }));
    // `fetchPage` is a new closure each render; `after` is what a new page depends on.
  }, [after]);

  return {
    items,
    error: first.error ?? more.error,
    loading: first.loading || more.loading,
    hasMore,
    loadMore,
    reload: first.reload,
  };
}
