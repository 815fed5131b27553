"""The ASGI app of the status page: pages, JSON API, /metrics, static assets (all in the package).

    app = create_app(view, actions, web_config, clock)

Everything but /login, /lang and /static needs a login (OpenAPI included). Every response says
to the browser that it may load nothing from elsewhere (Content-Security-Policy 'self').
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.actions import Actions
from agent.clock import Clock, SystemClock
from agent.version import agent_version
from agent.web import api, metrics, pages
from agent.web.auth import Authenticator
from agent.web.context import (
    TEMPLATES,
    LoginRequiredError,
    Reader,
    WebContext,
    current_session,
    render,
    translator,
    web,
)
from agent.web.view import AgentView
from firmware_config.web_config import WebConfig

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """A plain ASGI middleware: adds the headers above to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    view: AgentView, actions: Actions, config: WebConfig, clock: Clock | None = None
) -> FastAPI:
    clock = clock or SystemClock()
    app = FastAPI(
        title="siaran-edge gateway",
        version=agent_version(),
        description="Status of one gateway's devices and faults, and the technician's actions.",
        docs_url=None,  # Swagger UI loads its assets from a CDN: not on a gateway
        redoc_url=None,
        openapi_url=None,  # served below, behind the login
    )
    app.state.web = WebContext(
        view=view,
        actions=actions,
        config=config,
        clock=clock,
        auth=Authenticator(config, clock),
        templates=Jinja2Templates(directory=TEMPLATES),
        registry=metrics.make_registry(view),
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi(user: Reader) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request, user: Reader) -> Response:
        body = metrics.render(web(request).registry)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.exception_handler(LoginRequiredError)
    async def to_login(request: Request, exc: LoginRequiredError) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/metrics")):
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        t = translator(request)
        message = t("csrf.bad") if exc.detail == "csrf" else str(exc.detail)
        session = current_session(request)
        return render(request, "error.html", session, exc.status_code, message=message)

    return app
