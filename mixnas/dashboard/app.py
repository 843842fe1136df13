"""The dashboard web app: HTML pages, static files and a JSON API over the study database.

Read-only by construction: every route answers GET (and HEAD) only, the store opens the database
read-only, and nothing here trains or builds a model (torch is never imported). This module wires
the pages, static files and security middleware; the endpoints are in `dashboard/api.py`.
"""

from __future__ import annotations

import functools
import gzip
from html import escape
from pathlib import Path

import plotly
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mixnas.dashboard.api import STUDY_VIEW, Api, check_ids, check_view, query
from mixnas.dashboard.store import Store

STATIC = Path(__file__).parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        b"connect-src 'self'; object-src 'none'; frame-ancestors 'none'",
    ),
]
# plotly's parallel coordinates draw with WebGL (regl), which compiles its shaders with
# `new Function`: the "what matters" page alone allows that, still only for scripts from here.
EVAL_CSP = {
    "content-security-policy": SECURITY_HEADERS[-1][1].decode().replace(
        "default-src 'self';", "default-src 'self'; script-src 'self' 'unsafe-eval';")
}


def create_app(storage_url: str, allowed_hosts: list[str] | None = None) -> Starlette:
    """The dashboard's ASGI app.

    Args:
        storage_url: SQLAlchemy URL of the study database, opened read-only.
        allowed_hosts: Host names the app answers; `serve` sets the loopback names for a
            loopback server, which guards it against DNS rebinding. None answers any host.

    Returns:
        The Starlette app: the pages, the static files and the JSON API.
    """
    store = Store(storage_url)
    api = Api(store)
    _gzipped(PLOTLY_JS)  # at start-up rather than in the first page load
    routes = [
        Route("/", _page(store, "studies.html")),
        Route("/studies/{name}", _page(store, "study.html", *STUDY_VIEW)),
        Route("/studies/{name}/trials/{number:int}", _page(store, "trial.html")),
        Route("/studies/{name}/insight",
              _page(store, "insight.html", "objective", headers=EVAL_CSP)),
        Route("/compare", _compare_page(api)),
        Route("/vendor/plotly.min.js", _plotly_js),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/studies", api.studies),
        Route("/api/studies/{name}", api.study),
        Route("/api/studies/{name}/trials", api.trials),
        Route("/api/studies/{name}/pareto", api.pareto),
        Route("/api/studies/{name}/hypervolume", api.hypervolume),
        Route("/api/studies/{name}/insight", api.insight),
        Route("/api/compare", api.compare),
        Route("/api/studies/{name}/trials/{number:int}", api.trial),
        Route("/api/studies/{name}/trials/{number:int}/code", api.code),
        Route("/api/trials/{id:int}", api.trial),
        Route("/api/trials/{id:int}/code", api.code),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(GZipMiddleware, minimum_size=2048)]
    if allowed_hosts:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )


def _page(store: Store, name: str, *view: str, headers: dict | None = None):
    """The endpoint of one HTML page: a 404 when its study (or trial) does not exist, a 400 when
    its view parameters (`view`, in the URL) name unknown objectives or scales."""

    def endpoint(request: Request):
        params = query(request, *view)
        p = request.path_params
        check_ids(p)
        if "name" in p and not store.exists(p["name"], p.get("number")):
            what = f"trial {p['number']} of " if "number" in p else ""
            raise HTTPException(404, f"no {what}study {p['name']!r}")
        if "name" in p and "number" not in p:
            check_view(store.study(p["name"], False), params)
        extra = {"cache-control": "no-cache", **(headers or {})}
        return FileResponse(STATIC / name, headers=extra)

    return endpoint


def _compare_page(api: Api):
    """The compare page: 400/404 unless `?a=&b=` name two existing studies and its view
    (`&x=&y=&front=`) their shared objectives."""

    def endpoint(request: Request):
        api.check_compare_view(request)
        return FileResponse(STATIC / "compare.html", headers={"cache-control": "no-cache"})

    return endpoint


def _plotly_js(request: Request):
    headers = {"cache-control": "max-age=86400", "vary": "accept-encoding"}
    if "gzip" not in request.headers.get("accept-encoding", ""):
        return FileResponse(PLOTLY_JS, headers=headers)
    headers["content-encoding"] = "gzip"  # GZipMiddleware leaves encoded answers alone
    return Response(_gzipped(PLOTLY_JS), media_type="text/javascript", headers=headers)


def _http_error(request: Request, error: HTTPException):
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)
    return HTMLResponse(_error_page(error.status_code, error.detail), error.status_code)


class SecurityHeaders:
    """Adds the headers that keep the pages from being framed, sniffed or fed foreign scripts."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}  # a page may set its own CSP
                message["headers"] = headers + [h for h in SECURITY_HEADERS if h[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _check_bind(host: str, port: int) -> None:
    """Refuse, in one line, a port out of range or an address the server could not listen on."""
    import socket

    from mixnas.errors import MixnasError

    if not 0 < port < 65536:
        raise MixnasError(f"--port: must be from 1 to 65535, got {port}")
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as exc:
        raise MixnasError(f"--host {host} --port {port}: cannot listen there: "
                          f"{exc.strerror or exc}") from None


@functools.cache
def _gzipped(path: Path) -> bytes:
    """plotly.min.js is 4.6 MB: compress it once, not on every page load."""
    return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


def _error_page(status: int, detail: str) -> str:
    return (
        "<!doctype html><meta charset='utf-8'><title>mixnas dashboard</title>"
        "<link rel='stylesheet' href='/static/app.css'>"
        f"<main class='error'><h1>{status}</h1><p>{escape(str(detail))}</p>"
        "<p><a href='/'>All studies</a></p></main>"
    )


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the dashboard with uvicorn (blocking). Binds the loopback interface by default."""
    import uvicorn

    _check_bind(host, port)
    loopback = host in LOOPBACK_HOSTS
    app = create_app(storage_url, allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    print(f"mixnas dashboard on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
