"""The dashboard web app: HTML pages, static files and a JSON API over the study database.

Read-only by construction: every route answers GET (and HEAD) only, the store opens the database
read-only, and nothing here trains or builds a model (torch is never imported). Pareto fronts and
hypervolume are computed here so the browser receives small payloads.
"""

from __future__ import annotations

import functools
import gzip
import math
import re
from datetime import datetime
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
    PlainTextResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mixnas.dashboard.store import NotFound, Store, finite
from mixnas.pareto import hypervolume_history, reference_point, to_loss
from mixnas.storage import TRIAL_STATES

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


class BadRequest(HTTPException):
    def __init__(self, detail: str):
        super().__init__(400, detail)


def create_app(storage_url: str, allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app over `storage_url`; `allowed_hosts` guards a loopback server against DNS
    rebinding (`serve` sets it)."""
    store = Store(storage_url)
    _gzipped(PLOTLY_JS)  # at start-up rather than in the first page load

    # -- helpers -------------------------------------------------------------------------------

    def query(request: Request, *allowed: str) -> dict[str, str]:
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            known = ", ".join(allowed) or "none"
            raise BadRequest(f"unknown query parameter {unknown[0]!r} (accepted: {known})")
        return dict(request.query_params)

    def study_of(request: Request, summary: bool = False) -> dict:
        try:
            return store.study(request.path_params["name"], summary)
        except NotFound as error:
            raise HTTPException(404, str(error)) from error

    def objectives_of(study: dict, names: list[str]) -> list[dict]:
        by_name = {o["name"]: o for o in study["objectives"]}
        for name in names:
            if name not in by_name:
                raise BadRequest(
                    f"unknown objective {name!r}; study {study['name']!r} has: "
                    + ", ".join(by_name)
                )
        if len(set(names)) != len(names):
            raise BadRequest(f"objectives must differ, got {names}")
        return [by_name[name] for name in names]

    def axes(study: dict, params: dict[str, str], default: list[str]) -> list[dict]:
        if ("x" in params) != ("y" in params):
            raise BadRequest("give both x and y, or neither")
        names = [params["x"], params["y"]] if "x" in params else default
        return objectives_of(study, names)

    def trial_of(request: Request) -> dict:
        p = request.path_params
        _check_ids(p)
        try:
            if "id" in p:
                return store.trial(None, None, trial_id=p["id"])
            return store.trial(p["name"], p["number"])
        except NotFound as error:
            raise HTTPException(404, str(error)) from error

    # -- pages ---------------------------------------------------------------------------------

    def page(name: str):
        def endpoint(request: Request):
            query(request)
            p = request.path_params
            _check_ids(p)
            if "name" in p and not store.exists(p["name"], p.get("number")):
                what = f"trial {p['number']} of " if "number" in p else ""
                raise HTTPException(404, f"no {what}study {p['name']!r}")
            return FileResponse(STATIC / name, headers={"cache-control": "no-cache"})

        return endpoint

    def plotly_js(request: Request):
        headers = {"cache-control": "max-age=86400", "vary": "accept-encoding"}
        if "gzip" not in request.headers.get("accept-encoding", ""):
            return FileResponse(PLOTLY_JS, headers=headers)
        headers["content-encoding"] = "gzip"  # GZipMiddleware leaves encoded answers alone
        return Response(_gzipped(PLOTLY_JS), media_type="text/javascript", headers=headers)

    # -- API -----------------------------------------------------------------------------------

    def api_studies(request: Request):
        query(request)
        return JSONResponse({"studies": store.studies()})

    def api_study(request: Request):
        query(request)
        return JSONResponse(study_of(request, summary=True))

    def api_trials(request: Request):
        params = query(request, "state", "since")
        study = study_of(request)
        states = [s for s in params.get("state", "").split(",") if s]
        for state in states:
            if state not in TRIAL_STATES:
                raise BadRequest(f"unknown state {state!r}; states are: {', '.join(TRIAL_STATES)}")
        since = None
        if "since" in params:
            try:
                since = datetime.fromisoformat(params["since"])
            except ValueError as error:
                raise BadRequest(
                    f"since must be the ISO timestamp cursor of an earlier answer, "
                    f"got {params['since']!r}"
                ) from error
        names = [o["name"] for o in study["objectives"]]
        return JSONResponse(store.trial_rows(study["id"], names, states, since))

    def api_pareto(request: Request):
        study = study_of(request)
        objectives = axes(study, query(request, "x", "y"), [o["name"] for o in study["objectives"]])
        front = store.front(study["id"], objectives)
        return JSONResponse(
            {
                "objectives": objectives,
                "trials": [p.number for p in front],
                "values": [[finite(v) for v in p.values] for p in front],
            }
        )

    def api_hypervolume(request: Request):
        study = study_of(request)
        names = [o["name"] for o in study["objectives"]]
        if len(names) < 2:
            raise BadRequest(f"study {study['name']!r} has one objective; hypervolume needs two")
        objectives = axes(study, query(request, "x", "y"), names[:2])
        names = [o["name"] for o in objectives]
        directions = [o["direction"] for o in objectives]
        points = [
            (p.number, to_loss(p.values, directions))
            for p in store.points(study["id"], names)
            if all(math.isfinite(v) for v in p.values)
        ]
        ref = reference_point([p for _, p in points]) if points else None
        return JSONResponse(
            {
                "objectives": objectives,
                "reference": ref and list(to_loss(ref, directions)),
                "trials": [number for number, _ in points],
                "hypervolume": hypervolume_history([p for _, p in points], ref) if points else [],
            }
        )

    def api_trial(request: Request):
        query(request)
        trial = trial_of(request)
        front = store.front(trial["study_id"], trial["objectives"])
        # one point per design: a trial that reused a front design's result is on the front too
        trial["on_front"] = trial["state"] == "complete" and any(
            p.number == trial["number"] or (p.design and p.design == trial["arch_hash"])
            for p in front
        )
        del trial["arch_json"]  # the page uses the parsed `arch`
        return JSONResponse(trial)

    def api_code(request: Request):
        params = query(request, "vocab_size", "download")
        trial = trial_of(request)
        if not trial["arch_json"]:
            raise HTTPException(404, f"trial {trial['number']} has no architecture")
        vocab_size = trial["vocab_size"]
        if "vocab_size" in params:
            if not re.fullmatch(r"[1-9][0-9]{0,8}", params["vocab_size"]):
                raise BadRequest(
                    f"vocab_size must be a positive integer, not {params['vocab_size']!r}"
                )
            vocab_size = int(params["vocab_size"])
        if vocab_size is None:
            raise BadRequest("the study does not record a vocabulary size; pass ?vocab_size=N")
        if params.get("download", "0") not in ("0", "1"):
            raise BadRequest(f"download must be 0 or 1, got {params['download']!r}")
        try:
            code = _generated_code(trial["arch_json"], vocab_size)
        except ImportError as error:
            raise HTTPException(501, f"code export is unavailable: {error}") from error
        except (ValueError, KeyError) as error:
            raise HTTPException(422, f"cannot export trial {trial['number']}: {error}") from error
        headers = {}
        if params.get("download") == "1":
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", trial["study"])
            headers["content-disposition"] = (
                f'attachment; filename="{stem}_trial{trial["number"]}.py"'
            )
        return PlainTextResponse(code, media_type="text/x-python", headers=headers)

    # -- errors --------------------------------------------------------------------------------

    def http_error(request: Request, error: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)
        return HTMLResponse(_error_page(error.status_code, error.detail), error.status_code)

    routes = [
        Route("/", page("studies.html")),
        Route("/studies/{name}", page("study.html")),
        Route("/studies/{name}/trials/{number:int}", page("trial.html")),
        Route("/vendor/plotly.min.js", plotly_js),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/studies", api_studies),
        Route("/api/studies/{name}", api_study),
        Route("/api/studies/{name}/trials", api_trials),
        Route("/api/studies/{name}/pareto", api_pareto),
        Route("/api/studies/{name}/hypervolume", api_hypervolume),
        Route("/api/studies/{name}/trials/{number:int}", api_trial),
        Route("/api/studies/{name}/trials/{number:int}/code", api_code),
        Route("/api/trials/{id:int}", api_trial),
        Route("/api/trials/{id:int}/code", api_code),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(GZipMiddleware, minimum_size=2048)]
    if allowed_hosts:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
    )


class SecurityHeaders:
    """Adds the headers that keep the pages from being framed, sniffed or fed foreign scripts."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
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


def _check_ids(params: dict) -> None:
    """404 for a trial number or id no database column can hold (beyond 64 bits)."""
    for key in ("number", "id"):
        if key in params and not 0 <= params[key] < 1 << 63:
            raise HTTPException(404, f"no trial {key} {params[key]}")


@functools.lru_cache(maxsize=256)
def _generated_code(arch_json: str, vocab_size: int) -> str:
    """Export's source for an architecture; imported lazily because export needs torch."""
    from mixnas.export import generate_code
    from mixnas.search_space.architecture import Architecture

    return generate_code(Architecture.from_json(arch_json), vocab_size)


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
