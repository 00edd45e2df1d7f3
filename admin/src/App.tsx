import { lazy, Suspense, useEffect, useState } from "react";

import { ApiError, get, getCredential, UNAUTHORIZED_EVENT } from "./api";
import { can, logout } from "./auth";
import { Loading } from "./components/Status";
import { navigate, useRoute } from "./hooks";
import { Dashboard } from "./pages/Dashboard";
import { Login } from "./pages/Login";
import type { Me } from "./types";

// The dashboard is in the first load; every other page is its own chunk, fetched
// when first opened (the markdown renderer and the diff come with their pages).
const Chat = lazy(() => import("./pages/Chat"));
const Prompts = lazy(() => import("./pages/Prompts"));
const Keys = lazy(() => import("./pages/Keys"));
const Usage = lazy(() => import("./pages/Usage"));
const Models = lazy(() => import("./pages/Models"));
const NotBuilt = lazy(() => import("./pages/NotBuilt"));

interface PageSpec {
  path: string;
  title: string;
  allowed: (me: Me) => boolean;
}

export const PAGES: PageSpec[] = [
  { path: "/", title: "Dashboard", allowed: () => true },
  { path: "/chat", title: "Chat", allowed: () => true },
  { path: "/prompts", title: "Prompts", allowed: () => true },
  { path: "/keys", title: "Keys", allowed: (me) => can(me, "keys:read") },
  { path: "/usage", title: "Usage", allowed: () => true },
  { path: "/models", title: "Models", allowed: () => true },
  { path: "/capabilities", title: "Capabilities", allowed: () => true },
  { path: "/reviews", title: "Reviews", allowed: () => true },
  { path: "/pipelines", title: "Pipelines", allowed: () => true },
  { path: "/batches", title: "Batches", allowed: () => true },
];

function page(path: string, me: Me) {
  switch (path) {
    case "/":
      return <Dashboard me={me} />;
    case "/chat":
      return <Chat me={me} />;
    case "/prompts":
      return <Prompts me={me} />;
    case "/keys":
      return <Keys me={me} />;
    case "/usage":
      return <Usage me={me} />;
    case "/models":
      return <Models me={me} />;
    default: {
      const spec = PAGES.find((p) => p.path === path);
      return spec ? <NotBuilt title={spec.title} /> : <p>There is no page at {path}.</p>;
    }
  }
}

export function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [checking, setChecking] = useState(() => getCredential() !== null);
  const [menuOpen, setMenuOpen] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    // A credential kept in this tab's session storage: check it is still good.
    if (!getCredential()) return;
    get<Me>("/v1/me")
      .then(setMe)
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401) logout();
      })
      .finally(() => setChecking(false));
  }, []);

  useEffect(() => {
    setMenuOpen(false);
  }, [route]);

  useEffect(() => {
    const expired = () => {
      logout();
      setMe(null);
      setNotice("Your credential is no longer accepted (expired or revoked). Sign in again.");
    };
    window.addEventListener(UNAUTHORIZED_EVENT, expired);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, expired);
  }, []);

  if (checking) return <main className="container"><Loading what="your session" /></main>;
  if (!me) {
    return (
      <Login
        notice={notice}
        onLogin={(who) => {
          setNotice(null);
          setMe(who);
        }}
      />
    );
  }

  const current = PAGES.find((p) => p.path === route);
  const allowed = current ? current.allowed(me) : true;
  const signOut = () => {
    logout();
    setMe(null);
    navigate("/");
  };

  return (
    <>
      <a className="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById("main")?.focus(); }}>
        Skip to content
      </a>
      <header className="topbar">
        <nav className="container-fluid">
          <ul>
            <li>
              <strong>Spine</strong>
            </li>
            <li className="menu-toggle">
              <button type="button" className="outline secondary small" aria-expanded={menuOpen} aria-controls="pages" onClick={() => setMenuOpen(!menuOpen)}>
                Menu
              </button>
            </li>
          </ul>
          <ul id="pages" className={menuOpen ? "pages open" : "pages"} aria-label="Pages">
            {PAGES.filter((p) => p.allowed(me)).map((p) => (
              <li key={p.path}>
                <a href={`#${p.path}`} aria-current={route === p.path ? "page" : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
          <ul>
            <li className="whoami" title={me.scopes.join(", ") || "no scopes"}>
              <span data-testid="whoami">{me.subject}</span>
              {me.admin ? <mark>admin</mark> : null}
            </li>
            <li>
              <button type="button" className="secondary small" onClick={signOut}>
                Log out
              </button>
            </li>
          </ul>
        </nav>
      </header>
      <main className="container" id="main" tabIndex={-1}>
        {allowed ? (
          <Suspense fallback={<Loading what="the page" />}>{page(route, me)}</Suspense>
        ) : (
          <div role="alert" className="status-error" data-testid="not-allowed">
            This page needs a credential with more scopes than yours ({me.scopes.join(", ") || "none"}).
          </div>
        )}
      </main>
    </>
  );
}
