"""The sandbox's HTTP app (Starlette): the JSON API under /api/v1 and the agency's page at /.

API: bearer token; Idempotency-Key on every POST; a position outside the boundary is refused
with 422 `position_outside_boundary`. Page: the list of reports (status, agency/UPT, age, red
flag) and each report's detail, with forms to answer as the agency (CSRF: a random cookie
repeated in each form; SameSite=Strict).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

import jinja2
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from agent.clock import Clock, SystemClock
from central.geo import Boundary
from central.sandbox.store import Answer, KeyReusedError, SandboxStore
from central.siaran_api import (
    API_PREFIX,
    STATUS_LABELS,
    CommentCreate,
    RedFlagRequest,
    ReportCreate,
    StatusChange,
    openapi,
)
from central.wording import WIB

MAX_BODY = 1024 * 1024
CSRF_COOKIE = "sandbox_csrf"

Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status)


def _answer(a: Answer) -> JSONResponse:
    return JSONResponse(a.body, a.status)


def age_text(since: datetime, now: datetime) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} hari {hours} jam"
    if hours:
        return f"{hours} jam {mins} menit"
    return f"{mins} menit"


class Sandbox:
    def __init__(
        self, store: SandboxStore, token: str, boundary: Boundary, clock: Clock | None = None
    ) -> None:
        self.store = store
        self._token = token
        self.boundary = boundary
        self.clock: Clock = clock or SystemClock()
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("central.sandbox", "templates"), autoescape=True
        )
        env.filters["wib"] = lambda d: d.astimezone(WIB).strftime("%d-%m-%Y %H:%M WIB")
        self.templates = Jinja2Templates(env=env)

    def app(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            await self.store.open()
            try:
                yield
            finally:
                await self.store.close()

        p = API_PREFIX
        api = self._api
        routes = [
            Route(f"{p}/openapi.json", self.openapi_doc, methods=["GET"]),
            Route(f"{p}/reports", api(self.create), methods=["POST"]),
            Route(f"{p}/reports", api(self.list_reports), methods=["GET"]),
            Route(f"{p}/reports/{{rid}}", api(self.get_report), methods=["GET"]),
            Route(f"{p}/reports/{{rid}}/comments", api(self.add_comment), methods=["POST"]),
            Route(f"{p}/reports/{{rid}}/status", api(self.change_status), methods=["POST"]),
            Route(f"{p}/reports/{{rid}}/red-flag", api(self.red_flag), methods=["POST"]),
            Route("/", self.page_list, methods=["GET"]),
            Route("/reports/{rid}", self.page_report, methods=["GET"]),
            Route("/agency/{rid}/{action}", self.agency_action, methods=["POST"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan)

    # -- API -------------------------------------------------------------------------------

    def _api(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.encode(), self._token.encode()
            ):
                return _error(401, "unauthorized", "Token tidak ada atau salah")
            try:
                return await handler(request)
            except KeyReusedError:
                return _error(422, "idempotency_key_reused", "Idempotency-Key sudah dipakai")

        return guarded

    async def _body(self, request: Request, model: type[M]) -> M | JSONResponse:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _error(413, "too_large", "Permintaan terlalu besar")
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            return _error(422, "invalid", f"Permintaan tidak valid: {problems}")

    @staticmethod
    def _key(request: Request) -> str | None:
        key = request.headers.get("idempotency-key")
        return key[:200] if key else None

    async def openapi_doc(self, request: Request) -> Response:
        return JSONResponse(openapi())

    async def create(self, request: Request) -> Response:
        req = await self._body(request, ReportCreate)
        if isinstance(req, JSONResponse):
            return req
        pos = req.position
        if not self.boundary.contains(pos.lat, pos.lon):
            return _error(
                422,
                "position_outside_boundary",
                f"Lokasi ({pos.lat:.6f}, {pos.lon:.6f}) berada di luar wilayah "
                f"{self.boundary.name}; laporan tidak dapat diterima.",
            )
        return _answer(await self.store.create(req, self._key(request), self.clock.now()))

    async def list_reports(self, request: Request) -> Response:
        q = request.query_params
        try:
            limit = min(1000, max(1, int(q.get("limit", "200"))))
        except ValueError:
            return _error(422, "invalid", "limit harus bilangan bulat")
        found = await self.store.list(q.get("status"), q.get("external_ref"), limit)
        return JSONResponse({"reports": [r.model_dump(mode="json") for r in found]})

    async def get_report(self, request: Request) -> Response:
        found = await self.store.get(request.path_params["rid"])
        if found is None:
            return _error(404, "not_found", "Laporan tidak ditemukan")
        return JSONResponse(found.model_dump(mode="json"))

    async def add_comment(self, request: Request) -> Response:
        req = await self._body(request, CommentCreate)
        if isinstance(req, JSONResponse):
            return req
        rid = request.path_params["rid"]
        return _answer(await self.store.comment(rid, req, self._key(request), self.clock.now()))

    async def change_status(self, request: Request) -> Response:
        req = await self._body(request, StatusChange)
        if isinstance(req, JSONResponse):
            return req
        rid, now = request.path_params["rid"], self.clock.now()
        key = self._key(request)
        return _answer(await self.store.set_status(rid, req.status, req.note, "sensor", key, now))

    async def red_flag(self, request: Request) -> Response:
        req = await self._body(request, RedFlagRequest)
        if isinstance(req, JSONResponse):
            return req
        rid, now = request.path_params["rid"], self.clock.now()
        return _answer(await self.store.red_flag(rid, req.reason, self._key(request), now))

    # -- the agency's page -----------------------------------------------------------------

    def _page(self, request: Request, name: str, context: dict[str, Any]) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        ctx = {
            "csrf": csrf,
            "labels": STATUS_LABELS,
            "now": self.clock.now(),
            "age": age_text,
            "boundary": self.boundary.name,
            **context,
        }
        resp = self.templates.TemplateResponse(request, name, ctx)
        resp.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return resp

    async def page_list(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        reports = await self.store.list(status=status, limit=500)
        return self._page(request, "list.html", {"reports": reports, "status": status})

    async def page_report(self, request: Request) -> Response:
        report = await self.store.get(request.path_params["rid"])
        if report is None:
            return HTMLResponse("<h1>Laporan tidak ditemukan</h1>", 404)
        return self._page(request, "report.html", {"r": report})

    async def agency_action(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return HTMLResponse("Permintaan terlalu besar", 413)
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        cookie = request.cookies.get(CSRF_COOKIE, "")
        given = form.get("csrf", "")
        if not cookie or not hmac.compare_digest(cookie.encode(), given.encode()):
            return HTMLResponse("Token CSRF tidak cocok: muat ulang halaman", 403)
        rid, action = request.path_params["rid"], request.path_params["action"]
        statuses = {"respond": "in_progress", "done": "done"}
        if action not in statuses:
            return HTMLResponse("Tindakan tidak dikenal", 404)
        report = await self.store.get(rid)
        if report is None:
            return HTMLResponse("Laporan tidak ditemukan", 404)
        default = "Laporan diterima, petugas dijadwalkan." if action == "respond" else "Selesai."
        note = form.get("note", "").strip() or default
        author = f"Dinas: {report.agency}" + (f" / {report.unit}" if report.unit else "")
        await self.store.set_status(rid, statuses[action], note, author, None, self.clock.now())
        back = form.get("back", "/")
        return RedirectResponse(
            back if back.startswith("/") and not back.startswith("//") else "/", 303
        )
