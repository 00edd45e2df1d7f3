"""The admin web app's built files (`admin/dist`, from `make admin`) under `/admin/`.

Deployed, the same files sit in an S3 bucket behind CloudFront, whose response
headers policy sets the same Content-Security-Policy (template.yaml): the app may
load scripts, styles and images from its own origin only, call the API on its own
origin only, and never be framed. Model output and prompt text are shown by the app;
this policy is what keeps a `<script>` in them from running if a rendering bug ever
let one through.
"""

from __future__ import annotations

import gzip
import mimetypes
from functools import lru_cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

PREFIX = "/admin"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # Pico's form controls draw their icons as data: SVGs.
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def default_dist(template_path: Path) -> Path:
    """`admin/dist` beside the template (the repository root)."""
    return template_path.resolve().parent / "admin" / "dist"


def admin_routes(dist: Path) -> list[BaseRoute]:
    """`/admin` redirects to `/admin/`; `/admin/<file>` is the file; any other path
    under it is `index.html` (the app routes in the URL's fragment, but a reload of a
    mistyped path should still land in the app)."""
    root = dist.resolve()

    async def redirect(_: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    async def serve(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _with_headers(PlainTextResponse("Method Not Allowed", status_code=405))
        index = root / "index.html"
        if not index.is_file():
            return _with_headers(
                PlainTextResponse("The admin app is not built: run `make admin`.", status_code=404)
            )
        relative = request.path_params.get("path", "")
        file = (root / relative).resolve() if relative else index
        if not file.is_relative_to(root) or not file.is_file():
            if relative.startswith("assets/"):
                return _with_headers(PlainTextResponse("Not Found", status_code=404))
            file = index
        accepts_gzip = "gzip" in request.headers.get("accept-encoding", "")
        return _file_response(file, immutable=file.parent.name == "assets", gzipped=accepts_gzip)

    return [
        Route(PREFIX, redirect, methods=["GET", "HEAD"]),
        Route(PREFIX + "/{path:path}", serve, methods=["GET", "HEAD", "POST", "PUT", "DELETE"]),
    ]


COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


def _file_response(file: Path, *, immutable: bool, gzipped: bool) -> Response:
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    stat = file.stat()
    # Compressed as CloudFront compresses them deployed, so that local measurements
    # of the first load (tests/benchmarks/bench_admin.py) mean what they say.
    if gzipped and media_type.startswith(COMPRESSIBLE):
        response = Response(_gzipped(file, stat.st_mtime_ns, stat.st_size), media_type=media_type)
        response.headers["content-encoding"] = "gzip"
    else:
        response = Response(file.read_bytes(), media_type=media_type)
    response.headers["vary"] = "accept-encoding"
    # Built assets carry a content hash in their names; index.html must be re-read.
    response.headers["cache-control"] = (
        "public, max-age=31536000, immutable" if immutable else "no-cache"
    )
    return _with_headers(response)


def _with_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@lru_cache(maxsize=256)
def _gzipped(file: Path, mtime_ns: int, size: int) -> bytes:
    # Keyed by modification time and size as well: a rebuild is served fresh.
    return gzip.compress(file.read_bytes(), compresslevel=9)
