// The Spine API as the app calls it: same origin by default (the emulator and the
// CloudFront distribution both serve the API beside /admin/), or the URL the build
// was given in VITE_SPINE_API_BASE (an API on another origin, with CORS).

const API_BASE: string = (import.meta.env.VITE_SPINE_API_BASE as string | undefined) ?? "";
const CREDENTIAL_KEY = "spine.credential";
export const UNAUTHORIZED_EVENT = "spine:unauthorized";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly param: string | null;
  readonly type: string;

  constructor(status: number, body: unknown) {
    const error = (body as { error?: Record<string, unknown> } | null)?.error ?? {};
    const message = typeof error.message === "string" ? error.message : `HTTP ${status}`;
    super(message);
    this.status = status;
    this.code = typeof error.code === "string" ? error.code : null;
    this.param = typeof error.param === "string" ? error.param : null;
    this.type = typeof error.type === "string" ? error.type : "error";
  }
}

// The credential lives in sessionStorage: it goes when the tab closes, and logout
// removes it at once. It is never written to localStorage or a cookie.
export function getCredential(): string | null {
  return sessionStorage.getItem(CREDENTIAL_KEY);
}

export function setCredential(value: string): void {
  sessionStorage.setItem(CREDENTIAL_KEY, value);
}

export function clearCredential(): void {
  sessionStorage.removeItem(CREDENTIAL_KEY);
}

export function apiUrl(path: string): string {
  return API_BASE + path;
}

function headers(extra?: HeadersInit, credential?: string): Headers {
  const result = new Headers(extra);
  const token = credential ?? getCredential();
  if (token) result.set("Authorization", `Bearer ${token}`);
  return result;
}

export async function rawRequest(
  method: string,
  path: string,
  body?: unknown,
  init?: { signal?: AbortSignal; credential?: string },
): Promise<Response> {
  const extra: Record<string, string> = {};
  if (body !== undefined) extra["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path), {
    method,
    headers: headers(extra, init?.credential),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: init?.signal,
  });
  if (response.status === 401 && !init?.credential) {
    // The signed-in credential stopped working (a JWT expired, a key was revoked):
    // the app goes back to the sign-in page (App listens for this event).
    window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
  }
  if (!response.ok) {
    let parsed: unknown = null;
    try {
      parsed = await response.json();
    } catch {
      parsed = null;
    }
    throw new ApiError(response.status, parsed);
  }
  return response;
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  init?: { signal?: AbortSignal; credential?: string },
): Promise<T> {
  const response = await rawRequest(method, path, body, init);
  return (await response.json()) as T;
}

export const get = <T>(path: string, signal?: AbortSignal): Promise<T> =>
  api<T>("GET", path, undefined, { signal });

export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
