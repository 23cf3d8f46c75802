"""The dashboard's FastAPI application: HTML pages, a JSON API, ``/healthz`` and ``/metrics``.

Read-only by construction: every route is a GET, every route reads through `views` (which
never calls `Store.read_value`), and the app holds no state of its own besides its arguments.
Each request opens the store with the factory it was given and closes it afterwards, so the
app needs no globals and two apps in one process do not share anything.

Errors never show a traceback: unknown secrets, environments and rotations are 404, bad query
parameters 422, a store that cannot be reached 503, each with one line (JSON ``{"error": …}``
under ``/api/``, a small HTML page elsewhere). Templates are autoescaped; the markdown reports
are rendered with raw HTML disabled. A 503 names the error's kind only: a store's message
names its file or server, which a visitor has no business learning (the server log has it).

Only requests whose ``Host`` header names an allowed host are answered (400 otherwise):
without that check, a page on any site could resolve its own name to 127.0.0.1 (DNS
rebinding) and read ``/api/audit`` from a browser on the operator's machine. The default is
the loopback names; a deployment behind a proxy adds its public name (``--allowed-host``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from markdown_it import MarkdownIt
from markupsafe import Markup
from prometheus_client.exposition import choose_encoder
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyroll.audit import Journal
from keyroll.dashboard import views
from keyroll.dashboard.journal_index import JournalIndex
from keyroll.dashboard.metrics import StoreFactory, metrics_registry
from keyroll.dashboard.store_cache import StoreCache
from keyroll.errors import (
    KeyrollError,
    NotFound,
    StoreError,
    StoreUnavailable,
    UnknownSecret,
    UsageError,
)
from keyroll.inventory import Inventory
from keyroll.model import utcnow
from keyroll.rotation.rotator import last_tick
from keyroll.status import State
from keyroll.stores.base import Store

__all__ = ["LOOPBACK_HOSTS", "StoreFactory", "build_app"]

#: The Host names a dashboard bound to loopback answers to (ports are ignored).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")

_log = logging.getLogger("keyroll.dashboard")
_TEMPLATES = Path(__file__).parent / "templates"
_MAX_LIMIT = 1000
# module level: FastAPI resolves these annotations by name (``from __future__ import annotations``)
_EnvQuery = Annotated[str | None, Query(max_length=63, description="Only this environment.")]
_Limit = Annotated[int, Query(ge=1, le=_MAX_LIMIT, description="How many records (newest first).")]
_Days = Annotated[int, Query(ge=1, le=3650, description="How many days ahead.")]
_Filter = Annotated[str | None, Query(max_length=100)]
_StateQuery = Annotated[State | None, Query(description="Only secrets in this state.")]
_JSON_PREFIXES = ("/api/", "/healthz", "/metrics")
_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
     b"form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    """Adds the headers above to every response, and answers HEAD like GET without a body
    (uptime checkers use it). Pure ASGI: no body buffering."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _unavailable(exc: KeyrollError) -> str:
    """What a visitor learns of a store failure: its kind, not its text (paths, servers)."""
    return "the store did not answer; the server's log has the details"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:500]


def _when(value: object) -> str:
    """ISO text or datetime → ``2026-11-22 02:00:00 UTC`` (anything else shown as is)."""
    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(moment, datetime):
        return f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    return "–" if value is None else str(value)


def _pretty(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _environment(markdown: MarkdownIt) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["pretty"] = _pretty
    # html=False: raw HTML in a report (an actor name, hook output) is escaped, not rendered
    env.filters["markdown"] = lambda text: Markup(markdown.render(str(text)))  # noqa: S704
    return env


def build_app(
    store_factory: StoreFactory,
    inventory: Inventory,
    *,
    clock: Callable[[], datetime] = utcnow,
    title: str | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    rotator_stale_after: timedelta | None = None,
) -> FastAPI:
    """The dashboard app (see the module docstring; `keyroll.dashboard.create_app` wraps it).

    Args:
        store_factory: opens the store for one request, as a context manager closed after it
            (``lambda: open_store(url)``; tests pass ``lambda: nullcontext(store)``).
        inventory: the secret classes.
        clock: the time source for ages and due dates (frozen in tests).
        title: shown in the page header (default: the inventory's project name).
        allowed_hosts: the ``Host`` header values answered (``*.example.com`` wildcards
            allowed; IPv6 in brackets); any other host gets 400.
        rotator_stale_after: when set (``keyroll serve``), ``/healthz`` is 503 once the
            rotator's last successful tick is older than this (or there was none).
    """
    if not allowed_hosts:
        raise UsageError("the dashboard needs at least one allowed host (e.g. localhost)")
    for pattern in allowed_hosts:
        if not pattern or "*" in pattern[1:] or (pattern.startswith("*")
                                                 and not pattern.startswith("*.")):
            raise UsageError(f"allowed host {pattern!r}: use a name, an address or *.example.com")
    name = title or f"keyroll · {inventory.project}"
    markdown = MarkdownIt("commonmark", {"html": False, "breaks": True})
    templates = _environment(markdown)
    index = JournalIndex()  # one per app: every page and scrape reads only what is new
    cache = StoreCache()  # one per app: the secrets' state, re-read when the store's markers move
    registry = metrics_registry(store_factory, inventory, clock, index=index, cache=cache)
    stopping = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Build the journal index in the background as the server starts, so the first page
        does not wait for the whole journal (a page asked for meanwhile waits for the build)."""
        worker = threading.Thread(target=warm, name="keyroll-journal-index", daemon=True)
        worker.start()
        try:
            yield
        finally:
            stopping.set()
            worker.join(timeout=60)

    app = FastAPI(title=name, docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    # added first, so it runs inside _SecurityHeaders: its 400 carries the headers too
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts),
                       www_redirect=False)
    app.add_middleware(_SecurityHeaders)

    @contextmanager
    def opened() -> Iterator[Store]:
        """The request's store, read-only and through the app's cache. Any failure to open it
        (missing file, wrong key, server down) is the server's problem, not the visitor's
        input: a 503 that names no path."""
        try:
            manager = store_factory()
            store = manager.__enter__()
        except KeyrollError as exc:
            raise StoreUnavailable(f"{exc.__class__.__name__}: {exc}") from None
        try:
            yield cache.view(store)
        except BaseException as exc:
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            manager.__exit__(None, None, None)

    def warm() -> None:
        try:
            with opened() as store:
                index.refresh(store, stop=stopping)
                if not stopping.is_set():
                    index.check(store, views.JOURNAL_ACTOR)
        except KeyrollError as exc:  # the first page reports it (503 or the journal banner)
            _log.warning("dashboard: building the journal index at start: %s", exc)

    def journal(store: Store) -> Journal:
        return views.ReadOnlyJournal(store, clock=clock, index=index)

    def wants_json(request: Request) -> bool:
        root = str(request.scope.get("root_path", ""))
        path = str(request.scope.get("path", ""))
        if root and path.startswith(root):
            path = path[len(root):]
        return path.startswith(_JSON_PREFIXES)

    def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = templates.get_template(template).render(
            root=request.scope.get("root_path", ""), title=name, now=clock().isoformat(),
            **context)
        return HTMLResponse(html, status_code=status_code)

    def error(request: Request, status: int, message: str) -> Response:
        message = _one_line(message)
        if wants_json(request):
            return JSONResponse({"error": message}, status_code=status)
        return page(request, "error.html", status, status=status, message=message)

    # --- errors ---------------------------------------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        text = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and text == "Not Found":
            text = f"no page at {request.url.path}: start at {request.scope.get('root_path', '')}/"
        return error(request, exc.status_code, text)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path"))
        more = f" ({len(problems) - 1} more problems)" if len(problems) > 1 else ""
        return error(request, 422, f"{where}: {first.get('msg', 'invalid')}{more}")

    @app.exception_handler(KeyrollError)
    async def _keyroll_error(request: Request, exc: KeyrollError) -> Response:
        if isinstance(exc, NotFound | UnknownSecret):
            return error(request, 404, str(exc))
        if isinstance(exc, UsageError):
            return error(request, 422, str(exc))
        if isinstance(exc, StoreError):
            _log.warning("dashboard: the store did not answer: %s", exc)
            return error(request, 503, _unavailable(exc))
        return error(request, 500, str(exc))

    # --- HTML -----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request, env: _EnvQuery = None, state: _StateQuery = None,
                      all: bool = False) -> Response:
        with opened() as store:
            data = views.overview(store, inventory, clock(), environment=env, state=state,
                                  show_missing=all)
            health = views.journal_health(journal(store))
        return page(request, "overview.html", data=data, journal=health)

    @app.get("/secrets/{environment}/{secret}", response_class=HTMLResponse,
             include_in_schema=False)
    def secret_page(request: Request, environment: str, secret: str) -> Response:
        with opened() as store:
            data = views.secret_detail(store, inventory, journal(store), clock(), environment,
                                       secret)
        return page(request, "secret.html", data=data)

    @app.get("/rotations", response_class=HTMLResponse, include_in_schema=False)
    def rotations_html(request: Request, active: bool = False) -> Response:
        with opened() as store:
            data = views.rotations_page(store, active_only=active)
        return page(request, "rotations.html", data=data)

    @app.get("/rotations/{rotation_id}", response_class=HTMLResponse, include_in_schema=False)
    def rotation_page(request: Request, rotation_id: str) -> Response:
        with opened() as store:
            data = views.rotation_detail(store, inventory, journal(store), clock(), rotation_id)
        return page(request, "rotation.html", data=data)

    @app.get("/calendar", response_class=HTMLResponse, include_in_schema=False)
    def calendar_html(request: Request, days: _Days = 90, env: _EnvQuery = None) -> Response:
        with opened() as store:
            data = views.calendar_page(store, inventory, clock(), days=days, environment=env)
        return page(request, "calendar.html", data=data)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_html(
        request: Request, limit: _Limit = 100, environment: _Filter = None, secret: _Filter = None,
        rotation: _Filter = None, action: _Filter = None,
    ) -> Response:
        with opened() as store:
            data = views.audit_page(journal(store), limit=limit, environment=environment,
                                    secret=secret, rotation=rotation, action=action)
        return page(request, "audit.html", data=data)

    # --- JSON -----------------------------------------------------------------------------

    @app.get("/api/status", summary="Every secret: age, due date, days left, state")
    def api_status(env: _EnvQuery = None, state: _StateQuery = None) -> dict[str, Any]:
        with opened() as store:
            return views.overview(store, inventory, clock(), environment=env, state=state)

    @app.get("/api/secrets/{environment}/{secret}", summary="One secret: versions, history")
    def api_secret(environment: str, secret: str) -> dict[str, Any]:
        with opened() as store:
            return views.secret_detail(store, inventory, journal(store), clock(), environment,
                                       secret)

    @app.get("/api/rotations", summary="Rotations (in flight first)")
    def api_rotations(active: bool = False) -> dict[str, Any]:
        with opened() as store:
            return views.rotations_page(store, active_only=active)

    @app.get("/api/rotations/{rotation_id}", summary="One rotation: timeline, evidence, reports")
    def api_rotation(rotation_id: str) -> dict[str, Any]:
        with opened() as store:
            return views.rotation_detail(store, inventory, journal(store), clock(), rotation_id)

    @app.get("/api/calendar", summary="What is due in the next days, soonest first")
    def api_calendar(days: _Days = 90, env: _EnvQuery = None) -> dict[str, Any]:
        with opened() as store:
            return views.calendar_page(store, inventory, clock(), days=days, environment=env)

    @app.get("/api/audit", summary="The newest journal records and the chain's verification")
    def api_audit(
        limit: _Limit = 100, environment: _Filter = None, secret: _Filter = None,
        rotation: _Filter = None, action: _Filter = None,
    ) -> dict[str, Any]:
        with opened() as store:
            return views.audit_page(journal(store), limit=limit, environment=environment,
                                    secret=secret, rotation=rotation, action=action)

    # --- probes ---------------------------------------------------------------------------

    @app.get("/healthz", summary="200 when the store answers (and the rotator ticks), else 503; "
             "journal_index: building (pages wait for it) or ready")
    def healthz() -> Response:
        try:
            with opened() as store:
                store.audit_tail()
                ticked = last_tick(store) if rotator_stale_after is not None else None
        except KeyrollError as exc:
            _log.warning("dashboard: /healthz: %s", exc)
            return JSONResponse({"status": "unavailable", "error": _unavailable(exc)},
                                status_code=503)
        built = "ready" if index.ready else "building"
        if rotator_stale_after is None:
            return JSONResponse({"status": "ok", "journal_index": built})
        shown = ticked.isoformat() if ticked is not None else None
        if ticked is None or utcnow() - ticked > rotator_stale_after:
            return JSONResponse({"status": "stale", "last_tick": shown, "journal_index": built},
                                status_code=503)
        return JSONResponse({"status": "ok", "last_tick": shown, "journal_index": built})

    @app.get("/metrics", summary="Prometheus metrics (read at scrape time)")
    def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    return app
