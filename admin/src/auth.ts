import { api, clearCredential, setCredential } from "./api";
import type { Me } from "./types";

// What each page needs; the API checks the same scopes, this only hides what would
// be refused. `admin` holds every scope.
export function can(me: Me, scope: string): boolean {
  return me.admin || me.scopes.includes(scope);
}

export async function login(credential: string): Promise<Me> {
  const me = await api<Me>("GET", "/v1/me", undefined, { credential });
  setCredential(credential);
  return me;
}

export function logout(): void {
  clearCredential();
}
