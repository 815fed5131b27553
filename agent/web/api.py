"""The JSON API beside the pages: the same data, the same actions. OpenAPI at /api/openapi.json.

Reading: a session cookie or HTTP Basic. Actions: a session (POST /api/v1/session) and its
CSRF token in the X-CSRF-Token header.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from agent.web import act, present
from agent.web.auth import LoginRefusedError, Session
from agent.web.context import (
    SESSION_COOKIE,
    Reader,
    api_action_session,
    client_address,
    set_session_cookie,
    translator,
    web,
)
from agent.web.models import (
    AckIn,
    ActionOut,
    DeviceDetailOut,
    DeviceOut,
    FaultsOut,
    LampTestIn,
    LampTestOut,
    LoginIn,
    MaintenanceEndIn,
    MaintenanceIn,
    MaintenanceOut,
    OverviewOut,
    SessionOut,
)

router = APIRouter(prefix="/api/v1", tags=["api"])
Actor = Annotated[Session, Depends(api_action_session)]


@router.post("/session", response_model=SessionOut, responses={401: {}, 429: {}})
async def login(request: Request, body: LoginIn) -> Response:
    ctx = web(request)
    try:
        session = await ctx.auth.login(body.user, body.password, client_address(request))
    except LoginRefusedError as exc:
        if exc.retry_after_s > 0:
            headers = {"Retry-After": f"{exc.retry_after_s:.0f}"}
            raise HTTPException(429, "too many failed logins", headers) from None
        raise HTTPException(401, "wrong user or password") from None
    out = SessionOut(
        user=session.user.name,
        display_name=session.user.shown,
        csrf_token=session.csrf,
        expires_in_s=ctx.config.session_ttl_s,
    )
    response = JSONResponse(out.model_dump(mode="json"))
    set_session_cookie(response, ctx, session)
    return response


@router.delete("/session", status_code=204)
async def logout(request: Request, session: Actor) -> Response:
    web(request).auth.sessions.drop(session.sid)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/overview", response_model=OverviewOut)
async def overview(request: Request, user: Reader) -> OverviewOut:
    return present.overview(web(request).view)


@router.get("/devices", response_model=list[DeviceOut])
async def devices(
    request: Request,
    user: Reader,
    kind: Annotated[str | None, Query(description="streetlight or hotspot")] = None,
    circuit: str | None = None,
    state: Annotated[str | None, Query(description="ok, warning, fault, ...")] = None,
) -> list[DeviceOut]:
    return present.devices(web(request).view, kind, circuit, state)


@router.get("/devices/{device_id}", response_model=DeviceDetailOut, responses={404: {}})
async def device(request: Request, device_id: str, user: Reader) -> DeviceDetailOut:
    ctx = web(request)
    detail = present.device_detail(ctx.view, device_id, act.lamp_test_supported(ctx, device_id))
    if detail is None:
        raise HTTPException(404, "no such device")
    return detail


@router.get("/faults", response_model=FaultsOut)
async def faults(request: Request, user: Reader) -> FaultsOut:
    return present.faults(web(request).view)


@router.get("/maintenance", response_model=list[MaintenanceOut])
async def maintenance_list(request: Request, user: Reader) -> list[MaintenanceOut]:
    return present.maintenance_out(web(request).view.maintenance_windows())


@router.post("/faults/ack", response_model=ActionOut, responses={400: {}, 403: {}})
async def acknowledge(request: Request, body: AckIn, session: Actor) -> ActionOut:
    return await _run(act.acknowledge(web(request), session.user, body, translator(request)))


@router.post("/maintenance", response_model=ActionOut, responses={400: {}, 403: {}})
async def maintenance(request: Request, body: MaintenanceIn, session: Actor) -> ActionOut:
    return await _run(act.maintenance(web(request), session.user, body, translator(request)))


@router.post("/maintenance/end", response_model=ActionOut, responses={400: {}, 403: {}})
async def maintenance_end(request: Request, body: MaintenanceEndIn, session: Actor) -> ActionOut:
    ctx, t = web(request), translator(request)
    return await _run(act.end_maintenance(ctx, session.user, body, t))


@router.post(
    "/devices/{device_id}/lamp-test", response_model=LampTestOut, responses={400: {}, 403: {}}
)
async def lamp_test(
    request: Request, device_id: str, body: LampTestIn, session: Actor
) -> LampTestOut:
    ctx, t = web(request), translator(request)
    try:
        r = await act.lamp_test(ctx, session.user, device_id, body, t)
    except act.ActionFailedError as exc:
        raise HTTPException(400, str(exc)) from None
    return LampTestOut(
        device_id=r.device_id,
        ok=r.ok,
        minutes=r.minutes,
        power_w=r.power_w,
        expected_w=r.expected_w,
        detail=r.detail,
        evidence=dict(r.evidence),
    )


async def _run(coro: Awaitable[str]) -> ActionOut:
    try:
        message = await coro
    except act.ActionFailedError as exc:
        raise HTTPException(400, str(exc)) from None
    return ActionOut(ok=True, message=message)
