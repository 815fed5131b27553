"""The technician's actions, shared by the forms and the JSON API: call `Actions`, log who did
what (never a secret), and turn the outcome into one line for the technician."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import structlog

from agent.actions import ActionError, LampTestResult
from agent.web.context import WebContext
from agent.web.i18n import Translator
from agent.web.models import AckIn, LampTestIn, MaintenanceEndIn, MaintenanceIn
from firmware_config.web_config import WebUser

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ActionFailedError(Exception):
    """An action that did not happen; the message is for the technician."""


def _known(ctx: WebContext, kind: str, target: str) -> bool:
    cfg = ctx.view.config
    if kind == "device":
        return target == cfg.gateway.gateway.id or any(d.id == target for d in cfg.devices)
    return any(d.circuit == target for d in cfg.devices)


async def acknowledge(ctx: WebContext, user: WebUser, body: AckIn, t: Translator) -> str:
    log.info("web_action", action="acknowledge", user=user.name, device=body.device_id,
             fault_type=body.fault_type)  # fmt: skip
    note = body.note.strip() or t("ack.default_note")
    await _call(ctx.actions.acknowledge(body.device_id, body.fault_type, user.name, note), t)
    return t("ack.done", fault=t.fault(body.fault_type), device=body.device_id)


async def maintenance(ctx: WebContext, user: WebUser, body: MaintenanceIn, t: Translator) -> str:
    if not _known(ctx, body.target_kind, body.target):
        raise ActionFailedError(t("action.failed", why=body.target))
    if body.until is not None:
        until = body.until
    else:
        until = ctx.clock.now() + timedelta(minutes=body.minutes or 0)
    log.info("web_action", action="maintenance", user=user.name, target_kind=body.target_kind,
             target=body.target, until=until.isoformat())  # fmt: skip
    coro = ctx.actions.set_maintenance(body.target_kind, body.target, until, user.name, body.note)
    await _call(coro, t)
    return t("maint.done", target=body.target, until=t.time(until))


async def end_maintenance(
    ctx: WebContext, user: WebUser, body: MaintenanceEndIn, t: Translator
) -> str:
    log.info("web_action", action="end_maintenance", user=user.name,
             target_kind=body.target_kind, target=body.target)  # fmt: skip
    await _call(ctx.actions.end_maintenance(body.target_kind, body.target, user.name), t)
    return t("maint.ended", target=body.target)


async def lamp_test(
    ctx: WebContext, user: WebUser, device_id: str, body: LampTestIn, t: Translator
) -> LampTestResult:
    if not ctx.actions.lamp_test_supported(device_id):
        raise ActionFailedError(t("lamp.unsupported"))
    log.info("web_action", action="lamp_test", user=user.name, device=device_id,
             minutes=body.minutes)  # fmt: skip
    result = await _call(ctx.actions.lamp_test(device_id, body.minutes, user.name), t)
    log.info("web_lamp_test_result", device=device_id, ok=result.ok, power_w=result.power_w)
    return result


async def _call(coro: Awaitable[T], t: Translator) -> T:
    """Await an action; ActionError (or a bug) becomes ActionFailedError with a short line."""
    try:
        return await coro
    except ActionError as exc:
        raise ActionFailedError(t("action.failed", why=str(exc))) from None
    except Exception as exc:  # a bug must not show a stack trace to the technician
        log.exception("web_action_failed")
        raise ActionFailedError(t("action.failed", why=type(exc).__name__)) from None


def lamp_test_supported(ctx: WebContext, device_id: str) -> bool:
    try:
        return bool(ctx.actions.lamp_test_supported(device_id))
    except Exception:  # an unknown device or a bug: no lamp test button
        return False
