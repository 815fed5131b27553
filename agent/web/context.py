"""What every request handler needs: the app's parts, the logged-in session, the language."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request
from prometheus_client import CollectorRegistry
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from agent.actions import Actions
from agent.clock import Clock
from agent.web.auth import Authenticator, LoginRefusedError, Session
from agent.web.i18n import Translator, pick_language
from agent.web.view import AgentView
from firmware_config.web_config import WebConfig, WebUser

SESSION_COOKIE = "siaran_session"
LANG_COOKIE = "siaran_lang"
CSRF_HEADER = "x-csrf-token"
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class WebContext:
    view: AgentView
    actions: Actions
    config: WebConfig
    clock: Clock
    auth: Authenticator
    templates: Jinja2Templates
    registry: CollectorRegistry

    @property
    def secure(self) -> bool:
        return self.config.tls is not None


class LoginRequiredError(Exception):
    """A page was asked for without a valid session: the handler redirects to the login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def web(request: Request) -> WebContext:
    return cast(WebContext, request.app.state.web)


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def translator(request: Request) -> Translator:
    ctx = web(request)
    return Translator(pick_language(request.cookies.get(LANG_COOKIE), ctx.config.language))


def safe_next(path: str | None, fallback: str = "/") -> str:
    """Only a path on this site (no scheme, no //host, no backslash tricks)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return fallback
    return path


def current_session(request: Request) -> Session | None:
    return web(request).auth.sessions.get(request.cookies.get(SESSION_COOKIE))


def page_session(request: Request) -> Session:
    """Dependency of the HTML pages: the session, or a redirect to the login page."""
    session = current_session(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequiredError(target)
    return session


async def api_user(request: Request) -> WebUser:
    """Dependency of the read API and /metrics: a session cookie or HTTP Basic."""
    session = current_session(request)
    if session is not None:
        return session.user
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            name, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            name, password = "", ""
        try:
            return await web(request).auth.basic(name, password, client_address(request))
        except LoginRefusedError as exc:
            if exc.retry_after_s > 0:
                raise HTTPException(
                    429, "too many failed logins", {"Retry-After": f"{exc.retry_after_s:.0f}"}
                ) from None
    raise HTTPException(401, "login required", {"WWW-Authenticate": 'Basic realm="siaran-edge"'})


Reader = Annotated[WebUser, Depends(api_user)]


def api_action_session(request: Request) -> Session:
    """Dependency of the API's actions: a session cookie and its CSRF token in the header."""
    session = current_session(request)
    if session is None:
        raise HTTPException(401, "login required (POST /api/v1/session)")
    if not session.csrf_ok(request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, "missing or wrong X-CSRF-Token")
    return session


def set_session_cookie(response: Response, ctx: WebContext, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.sid,
        max_age=int(ctx.config.session_ttl_s),
        httponly=True,
        secure=ctx.secure,
        samesite="lax",
        path="/",
    )


def render(
    request: Request,
    template: str,
    session: Session | None,
    status_code: int = 200,
    **data: Any,
) -> Response:
    ctx = web(request)
    t = translator(request)
    flashes = list(session.flashes) if session is not None else []
    if session is not None:
        session.flashes.clear()
    context = {
        "t": t,
        "lang": t.lang,
        "now": ctx.view.now(),
        "session": session,
        "csrf": session.csrf if session is not None else "",
        "flashes": flashes,
        "path": request.url.path,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "site": ctx.view.config.gateway.gateway.site,
        "gateway_id": ctx.view.config.gateway.gateway.id,
        "device_ids": {d.id for d in ctx.view.config.devices},
        **data,
    }
    response = ctx.templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response
