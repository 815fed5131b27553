"""The HTML pages (Jinja2, server-rendered, no script needed) and their forms.

Every form POST carries the session's CSRF token and answers with a redirect (Post/Redirect/Get)
whose page shows the outcome as a flash line.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from agent.web import act, present
from agent.web.auth import LoginRefusedError, Session
from agent.web.context import (
    LANG_COOKIE,
    SESSION_COOKIE,
    client_address,
    current_session,
    page_session,
    render,
    safe_next,
    set_session_cookie,
    translator,
    web,
)
from agent.web.i18n import LANGUAGES
from agent.web.keyvalues import CHART_METRICS
from agent.web.models import DEVICE_STATES, AckIn, LampTestIn, MaintenanceEndIn, MaintenanceIn
from agent.web.sparkline import sparkline

router = APIRouter(include_in_schema=False)
M = TypeVar("M", bound=BaseModel)
Page = Annotated[Session, Depends(page_session)]
DURATIONS_MIN = (30, 60, 120, 240, 480, 720)
LAMP_TEST_MIN = (1, 2, 5, 10, 15)


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


# -- login -----------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    if current_session(request) is not None:
        return _see(safe_next(next))
    return render(request, "login.html", None, next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    name, password = _text(form, "user"), _text(form, "password")
    target = safe_next(_text(form, "next"))
    t = translator(request)
    try:
        session = await web(request).auth.login(name, password, client_address(request))
    except LoginRefusedError as exc:
        error = (
            t("login.limited", minutes=max(1, round(exc.retry_after_s / 60)))
            if exc.retry_after_s > 0
            else t("login.failed")
        )
        code = 429 if exc.retry_after_s > 0 else 401
        return render(request, "login.html", None, code, next=target, error=error, user=name)
    response = _see(target)
    set_session_cookie(response, web(request), session)
    return response


@router.post("/logout")
async def logout(request: Request, session: Page) -> Response:
    _csrf(session, await request.form())
    web(request).auth.sessions.drop(session.sid)
    response = _see("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang/{code}")
async def language(request: Request, code: str, next: str = "/") -> Response:
    response = _see(safe_next(next))
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
    return response


# -- reading ---------------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request, session: Page) -> Response:
    ctx = web(request)
    data = present.overview(ctx.view)
    return render(request, "overview.html", session, o=data, circuits=present.circuits(ctx.view),
                  durations=DURATIONS_MIN, nav="overview")  # fmt: skip


@router.get("/devices")
async def devices(
    request: Request,
    session: Page,
    kind: str = "",
    circuit: str = "",
    state: str = "",
) -> Response:
    view = web(request).view
    rows = present.devices(view, kind or None, circuit or None, state or None)
    return render(request, "devices.html", session, devices=rows, circuits=present.circuits(view),
                  states=DEVICE_STATES, kinds=("streetlight", "hotspot"),
                  chosen={"kind": kind, "circuit": circuit, "state": state},
                  nav="devices")  # fmt: skip


@router.get("/devices/{device_id}")
async def device(request: Request, device_id: str, session: Page) -> Response:
    ctx = web(request)
    t = translator(request)
    d = present.device_detail(ctx.view, device_id, act.lamp_test_supported(ctx, device_id))
    if d is None:
        return render(request, "error.html", session, 404, message=t("device.not_found"))
    charts = []
    for metric in CHART_METRICS.get(d.kind, ()):
        points = [(p.at, p.values.get(metric)) for p in d.history]
        if any(v is not None for _, v in points):
            charts.append((metric, sparkline(points, t(f"chart.{metric}"))))
    return render(request, "device.html", session, d=d, charts=charts, durations=DURATIONS_MIN,
                  lamp_minutes=LAMP_TEST_MIN, nav="devices")  # fmt: skip


@router.get("/faults")
async def faults(request: Request, session: Page) -> Response:
    data = present.faults(web(request).view)
    return render(request, "faults.html", session, f=data, nav="faults")


# -- actions ---------------------------------------------------------------------------------


@router.post("/faults/ack")
async def acknowledge(request: Request, session: Page) -> Response:
    form = await request.form()
    _csrf(session, form)
    body = _parse(session, AckIn, form, ("device_id", "fault_type", "note"))
    if body is not None:
        await _flash(
            session, act.acknowledge(web(request), session.user, body, translator(request))
        )
    return _see(safe_next(_text(form, "next"), "/faults"))


@router.post("/maintenance")
async def maintenance(request: Request, session: Page) -> Response:
    form = await request.form()
    _csrf(session, form)
    body = _parse(session, MaintenanceIn, form, ("target_kind", "target", "minutes", "note"))
    if body is not None:
        coro = act.maintenance(web(request), session.user, body, translator(request))
        await _flash(session, coro)
    return _see(safe_next(_text(form, "next")))


@router.post("/maintenance/end")
async def maintenance_end(request: Request, session: Page) -> Response:
    form = await request.form()
    _csrf(session, form)
    body = _parse(session, MaintenanceEndIn, form, ("target_kind", "target"))
    if body is not None:
        coro = act.end_maintenance(web(request), session.user, body, translator(request))
        await _flash(session, coro)
    return _see(safe_next(_text(form, "next")))


@router.post("/devices/{device_id}/lamp-test")
async def lamp_test(request: Request, device_id: str, session: Page) -> Response:
    form = await request.form()
    _csrf(session, form)
    t = translator(request)
    body = _parse(session, LampTestIn, form, ("minutes",))
    if body is not None:
        try:
            r = await act.lamp_test(web(request), session.user, device_id, body, t)
        except act.ActionFailedError as exc:
            session.flashes.append(("error", str(exc)))
        else:
            key = "lamp.ok" if r.ok else "lamp.failed"
            session.flashes.append(("ok" if r.ok else "error", t(key, detail=r.detail)))
    return _see(f"/devices/{device_id}")


# -- helpers ---------------------------------------------------------------------------------


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _csrf(session: Session, form: FormData) -> None:
    if not session.csrf_ok(_text(form, "csrf") or None):
        raise HTTPException(403, "csrf")


def _parse(session: Session, model: type[M], form: FormData, names: tuple[str, ...]) -> M | None:
    """The form's fields as the API's input model; a bad value becomes a flash line."""
    raw = {n: _text(form, n) for n in names if _text(form, n) != ""}
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        session.flashes.append(("error", f"{where}: {first['msg']}" if where else first["msg"]))
        return None


async def _flash(session: Session, coro: Awaitable[str]) -> None:
    try:
        session.flashes.append(("ok", await coro))
    except act.ActionFailedError as exc:
        session.flashes.append(("error", str(exc)))
