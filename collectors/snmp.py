"""The SNMP collector: one poll of one device (SNMPv2c or SNMPv3) gives one Reading.

One pysnmp engine serves the whole process; at most `max_concurrency` requests are in flight,
and the semaphore is held per request, so a dead device only ever blocks one slot for one
timeout; devices that did not answer their last poll use a second set of slots, so that many
dead devices cannot make the live ones queue. Scalars are read with one GET (split when very
many or when the agent says tooBig); each table is walked with one GETBULK stream carrying all
of its columns.

`set` writes one of a profile's `writes` (e.g. the lamp command) with one SET; a SET that is
not done raises SnmpSetError, whose message names the device and the cause, never a secret.

SNMPv2c GET and GETBULK go through gufo-snmp when it is installed (collectors/snmp_fast.py:
a Rust codec, about a tenth of pysnmp's CPU per poll); `v2c_fast=False` keeps them on pysnmp.
SET and SNMPv3 always use pysnmp.

SNMPv3: pysnmp keeps USM users per (agent engine ID, user name). Users are registered under
the agent's own engine ID (found with a probe on first contact), so devices that share a user
name but not its keys do not overwrite each other.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypeVar

import structlog
from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_MD5,
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC128_SHA224,
    USM_AUTH_HMAC192_SHA256,
    USM_AUTH_HMAC256_SHA384,
    USM_AUTH_HMAC384_SHA512,
    USM_PRIV_CBC56_DES,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB192_AES_BLUMENTHAL,
    USM_PRIV_CFB256_AES_BLUMENTHAL,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    set_cmd,
)
from pysnmp.hlapi.varbinds import MibViewControllerManager
from pysnmp.proto import errind, rfc1902, rfc1905
from pysnmp.proto.mpmod.rfc3412 import SnmpV3MessageProcessingModel
from pysnmp.smi.compiler import DEFAULT_DEST

from collectors import snmp_fast
from collectors.base import Now, WrongType, convert
from collectors.reading import ErrorCode, Reading, ReadingError, Value
from collectors.snmp_values import is_missing, missing_name, oid_str, oid_tuple, raw_value
from firmware_config.models import Device, SnmpV2c, SnmpV3
from firmware_config.profiles import Profile, SnmpMetric, SnmpTable, ValueSpec

log = structlog.get_logger(__name__)

MAX_GET_VARBINDS = 40  # scalars per GET
BULK_VARBINDS = 60  # varbinds asked for per GETBULK (max-repetitions x columns)
MAX_REPETITIONS = 25
DEFAULT_TIMEOUT_S = 2.0
DEFAULT_RETRIES = 1
PROBE_USER = "siaran-edge-probe"  # a user no agent has: its only job is engine ID discovery
PROBE_OID = "1.3.6.1.2.1.1.3.0"
TOO_BIG, NO_SUCH_NAME = 1, 2
VARBIND_CACHE = 4096  # resolved request varbinds kept for reuse (saves about a third of CPU)

AUTH_PROTOCOLS = {
    "MD5": USM_AUTH_HMAC96_MD5,
    "SHA": USM_AUTH_HMAC96_SHA,
    "SHA224": USM_AUTH_HMAC128_SHA224,
    "SHA256": USM_AUTH_HMAC192_SHA256,
    "SHA384": USM_AUTH_HMAC256_SHA384,
    "SHA512": USM_AUTH_HMAC384_SHA512,
}
# AES192/AES256 with the key extension net-snmp uses (draft-blumenthal), not Cisco's (Reeder).
PRIV_PROTOCOLS = {
    "DES": USM_PRIV_CBC56_DES,
    "AES": USM_PRIV_CFB128_AES,
    "AES192": USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": USM_PRIV_CFB256_AES_BLUMENTHAL,
}

# SNMPv3 failures the agent reports (or pysnmp finds locally) -> what to tell the operator.
AUTH_FAILURES: list[tuple[type[Exception], str]] = [
    (errind.UnknownUserName, "the agent does not know SNMPv3 user {user!r} (unknownUserName)"),
    (errind.WrongDigest, "wrong auth key or auth protocol for SNMPv3 user {user!r} (wrongDigest)"),
    (errind.DecryptionError, "the agent cannot decrypt: wrong privacy key or protocol"),
    (errind.UnsupportedSecurityLevel, "user {user!r} may not use {level} (unsupportedSecLevel)"),
    (errind.NotInTimeWindow, "SNMPv3 clock out of step with the agent (notInTimeWindow)"),
    (errind.UnknownEngineID, "SNMPv3 engine ID discovery failed (unknownEngineID)"),
    (errind.UnknownSecurityName, "no usable SNMPv3 credentials for user {user!r}"),
    (errind.AuthenticationFailure, "SNMPv3 authentication failed for user {user!r}"),
    (errind.AuthenticationError, "SNMPv3 authentication error for user {user!r}"),
    (errind.UnsupportedAuthProtocol, "auth protocol not supported for user {user!r}"),
    (errind.UnsupportedPrivProtocol, "privacy protocol not supported for user {user!r}"),
    (errind.EncryptionError, "SNMPv3 encryption unavailable (is 'cryptography' installed?)"),
    (errind.NoEncryption, "SNMPv3 encryption unavailable (is 'cryptography' installed?)"),
]

SetErrorCode = Literal[
    "unsupported", "bad_value", "not_writable", "no_access", "wrong_value", "timeout", "auth",
    "protocol",
]  # fmt: skip
# error-status of a refused SET -> code (RFC 3416 4.2.5)
SET_REFUSALS: dict[str, SetErrorCode] = {
    "notWritable": "not_writable",
    "readOnly": "not_writable",
    "noCreation": "not_writable",
    "inconsistentName": "not_writable",
    "noSuchName": "not_writable",
    "noAccess": "no_access",
    "authorizationError": "no_access",
    "wrongType": "wrong_value",
    "wrongValue": "wrong_value",
    "wrongLength": "wrong_value",
    "wrongEncoding": "wrong_value",
    "inconsistentValue": "wrong_value",
    "badValue": "wrong_value",
}

Auth: TypeAlias = CommunityData | UsmUserData
Answer = tuple[int, int, list[Any]]  # error status, error index, varbinds
T = TypeVar("T")
SILENT_SLOTS_PER_SLOT = 4
RETRY_FAST_AFTER_S = 3600.0  # a fast-path fallback or an empty GET is tried again after


class _NoMibCompiler:
    """Stands in for pysmi's MIB compiler, which pysnmp adds when pysmi is installed.

    Numeric OIDs need no MIBs; building pysmi's parser costs about a second of CPU per engine
    (several on a Pi) and would try to compile MIBs from whatever sources it is given.
    """

    def compile(self, *names: str, **options: Any) -> dict[str, str]:
        return dict.fromkeys(names, "missing")


def timing(device: Device) -> tuple[float, int]:
    """The device's timeout (s) and retries, or the defaults."""
    retries = DEFAULT_RETRIES if device.retries is None else device.retries
    return device.timeout_s or DEFAULT_TIMEOUT_S, retries


def repetitions(columns: int) -> int:
    return max(2, min(MAX_REPETITIONS, BULK_VARBINDS // columns))


def round_trips(profile: Profile) -> int:
    """A generous bound on the requests one poll makes (v3 probe, GET chunks, bulk walks)."""
    trips = 2 + 2 * math.ceil(len(profile.metrics) / MAX_GET_VARBINDS)
    for table in profile.tables:
        trips += math.ceil(table.max_rows / repetitions(len(table.columns))) + 2
    return trips


@dataclass
class _Session:
    """What the collector keeps per device between polls; rebuilt when its config changes."""

    key: tuple[object, ...]
    creds: SnmpV2c | SnmpV3
    host: str
    port: int
    timeout: float
    retries: int
    target: UdpTransportTarget | Udp6TransportTarget
    context: ContextData
    auth: Auth | None = None  # v3: None until the agent's engine ID is known
    rows_seen: dict[str, int] = field(default_factory=dict)  # table -> rows at the last walk
    fast_off_until: float = 0.0  # v2c through pysnmp until then (gufo-snmp could not decode)
    empty_gets: dict[tuple[str, ...], float] = field(default_factory=dict)  # no object, until

    @property
    def request_limit(self) -> float:
        """Hard cap on one request, a little above pysnmp's own timeout x tries."""
        return self.timeout * (self.retries + 1) + 1.0


@dataclass
class _UsmRow:
    """One (engine ID, user) row of pysnmp's USM table; devices disagreeing on its keys queue."""

    keys: object = None
    users: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class SnmpSetError(Exception):
    """A SET that was not done; `code` for programs, the message (device, cause) for people."""

    def __init__(self, device_id: str, code: SetErrorCode, message: str) -> None:
        super().__init__(message)
        self.device_id = device_id
        self.code = code


class _PollError(Exception):
    """This device cannot be read any further in this poll."""

    def __init__(self, error: ReadingError, reachable: bool | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.reachable = reachable


@dataclass
class _Poll:
    device: Device
    profile: Profile
    session: _Session | None = None
    deadline: asyncio.Timeout | None = None
    answered: bool = False  # the agent answered something in this poll
    only_probe: bool = False  # ... but only the SNMPv3 discovery probe so far
    values: dict[str, Value] = field(default_factory=dict)
    tables: dict[str, dict[str, dict[str, Value]]] = field(default_factory=dict)
    errors: list[ReadingError] = field(default_factory=list)

    def error(self, code: ErrorCode, message: str, metric: str | None = None) -> None:
        self.errors.append(ReadingError(code=code, message=message, metric=metric))

    def extend_deadline(self, waited: float) -> None:
        """Time spent queueing for a request slot does not count against the device."""
        when = self.deadline.when() if self.deadline is not None else None
        if self.deadline is not None and when is not None:
            self.deadline.reschedule(when + waited)


def _fast_value(spec: ValueSpec, oid: str, value: snmp_fast.Value) -> Value | ReadingError:
    try:
        return convert(spec, snmp_fast.raw(value))
    except (WrongType, TypeError) as exc:
        return ReadingError(code="wrong_type", message=f"{oid}: {exc}")


def _value(spec: ValueSpec, oid: str, value: Any) -> Value | ReadingError:
    if is_missing(value):
        return ReadingError(code="no_such_object", message=f"{oid}: {missing_name(value)}")
    try:
        return convert(spec, raw_value(value))
    except (WrongType, TypeError) as exc:
        return ReadingError(code="wrong_type", message=f"{oid}: {exc}")


class SnmpCollector:
    """Polls SNMP devices; `poll` never raises for device trouble, it reports it in the Reading."""

    def __init__(self, now: Now, max_concurrency: int = 32, v2c_fast: bool = True) -> None:
        self._now = now
        self.v2c_fast = v2c_fast and snmp_fast.AVAILABLE  # v2c GET/GETBULK through gufo-snmp
        self._slots = asyncio.Semaphore(max_concurrency)
        # Devices not heard from yet, or silent at their last poll, wait for their timeouts in
        # slots of their own (4x as many: a silent device's request holds its slot for the whole
        # timeout, and costs a socket and a timer, not CPU). 10 % dead devices need
        # N x 0.1 x timeout x tries / interval of them: 33 at 5,000 a minute, 67 at 10,000.
        self._silent_slots = asyncio.Semaphore(SILENT_SLOTS_PER_SLOT * max_concurrency)
        self._engine: SnmpEngine | None = None
        self._sessions: dict[str, _Session] = {}
        self._usm_rows: dict[tuple[bytes, str], _UsmRow] = {}
        self._states: dict[str, str] = {}
        self._varbinds: dict[str, Any] = {}

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
        self._engine = None
        self._sessions.clear()
        self._usm_rows.clear()
        self._varbinds.clear()

    async def poll(self, device: Device, profile: Profile) -> Reading:
        at = self._now()
        started = time.monotonic()
        poll = _Poll(device, profile)
        reachable: bool | None = None
        timeout, retries = timing(device)
        budget = (timeout * (retries + 1) + 1.0) * round_trips(profile)
        try:
            async with asyncio.timeout(budget) as poll.deadline:
                poll.session = await self._session(device)
                await self._read(poll)
        except _PollError as stop:
            poll.errors.append(stop.error)
            reachable = stop.reachable
        except TimeoutError:
            poll.error("timeout", f"poll of {device.address} did not finish within {budget:.1f} s")
        except Exception as exc:  # pysnmp trouble must not escape: report it with the device
            poll.error(
                "protocol", self._scrub(f"SNMP failure: {type(exc).__name__}: {exc}", device)
            )
        reading = Reading(
            device_id=device.id,
            at=at,
            reachable=poll.answered if reachable is None else reachable,
            values=poll.values,
            tables=poll.tables,
            errors=poll.errors,
            duration_s=time.monotonic() - started,
        )
        self._log_state(device, reading)
        return reading

    async def set(self, device: Device, profile: Profile, write_name: str, value: float) -> None:
        """SET the profile's write `write_name` to `value` (in its unit); SnmpSetError if not."""
        write = profile.write(write_name)
        if write is None or write.oid is None:
            message = f"{device.id}: profile {profile.name} has no SNMP write {write_name!r}"
            raise SnmpSetError(device.id, "unsupported", message)
        try:
            raw = write.raw(value)
        except ValueError as exc:
            raise SnmpSetError(device.id, "bad_value", f"{device.id}: {exc}") from None
        poll = _Poll(device, profile)
        timeout, retries = timing(device)
        budget = (timeout * (retries + 1) + 1.0) * 3  # v3 discovery, the SET, slack
        what = f"SET {write.name} = {raw} ({write.oid})"
        try:
            async with asyncio.timeout(budget) as poll.deadline:
                poll.session = session = await self._session(device)
                if session.auth is None:
                    await self._discover(poll, session)
                error, status, _, _ = await self._send(
                    poll, [write.oid], value=rfc1902.Integer32(raw)
                )
                if error:
                    raise self._failure(poll, error)
        except _PollError as stop:
            found = stop.error.code
            code: SetErrorCode = (
                "timeout" if found == "timeout" else "auth" if found == "auth" else "protocol"
            )
            message = f"{device.id}: {what} not done: {stop.error.message}"
            raise SnmpSetError(device.id, code, message) from None
        except TimeoutError:
            message = f"{device.id}: {what} not done within {budget:.1f} s"
            raise SnmpSetError(device.id, "timeout", message) from None
        except Exception as exc:  # pysnmp trouble: reported with the device, scrubbed
            message = self._scrub(
                f"{device.id}: {what} failed: {type(exc).__name__}: {exc}", device
            )
            raise SnmpSetError(device.id, "protocol", message) from None
        if status:
            name = rfc1905.errorStatus.clone(status).prettyPrint()
            where = f"{session.host}:{session.port}"
            message = f"{device.id} ({where}) refused {what}: {name}"
            raise SnmpSetError(device.id, SET_REFUSALS.get(name, "protocol"), message)
        log.info("snmp_set", device=device.id, write=write.name, value=raw)

    # -- sessions and credentials ------------------------------------------------------------

    async def _session(self, device: Device) -> _Session:
        creds = device.snmp
        if creds is None:
            raise _PollError(
                ReadingError(code="protocol", message="device has no SNMP credentials")
            )
        timeout, retries = timing(device)
        key = (device.address, timeout, retries, creds)
        session = self._sessions.get(device.id)
        if session is not None and session.key == key:
            return session
        host, port = device.host_port()
        kind = Udp6TransportTarget if ":" in host else UdpTransportTarget
        target = await kind.create((host, port), timeout=timeout, retries=retries)
        if isinstance(creds, SnmpV2c):
            auth: Auth | None = CommunityData(creds.community.get_secret_value(), mpModel=1)
            context = ContextData()
        else:
            auth, context = None, ContextData(contextName=creds.context)
        session = _Session(key, creds, host, port, timeout, retries, target, context, auth)
        self._sessions[device.id] = session
        return session

    @staticmethod
    def _usm_user(creds: SnmpV3, engine_id: bytes | None) -> UsmUserData:
        auth_key = creds.auth_key.get_secret_value() if creds.auth_key else None
        priv_key = creds.priv_key.get_secret_value() if creds.priv_key else None
        return UsmUserData(
            creds.user,
            authKey=auth_key,
            privKey=priv_key,
            authProtocol=AUTH_PROTOCOLS[creds.auth_protocol] if creds.auth_protocol else None,
            privProtocol=PRIV_PROTOCOLS[creds.priv_protocol] if creds.priv_protocol else None,
            securityEngineId=engine_id,
        )

    def _engine_now(self) -> SnmpEngine:
        if self._engine is None:
            self._engine = SnmpEngine()
            view = MibViewControllerManager.get_mib_view_controller(self._engine.cache)
            view.mibBuilder.set_mib_compiler(_NoMibCompiler(), DEFAULT_DEST)
        return self._engine

    def _varbind(self, oid: str) -> Any:
        """A request varbind, resolved once: pysnmp would otherwise resolve it on every request."""
        varbind = self._varbinds.get(oid)
        if varbind is None:
            if len(self._varbinds) >= VARBIND_CACHE:
                self._varbinds.clear()
            view = MibViewControllerManager.get_mib_view_controller(self._engine_now().cache)
            varbind = ObjectType(ObjectIdentity(oid)).resolve_with_mib(view, ignoreErrors=False)
            self._varbinds[oid] = varbind
        return varbind

    def _peer_engine_id(self, session: _Session) -> bytes | None:
        mp = self._engine_now().message_processing_subsystems[
            SnmpV3MessageProcessingModel.MESSAGE_PROCESSING_MODEL_ID
        ]
        domain = udp6.DOMAIN_NAME if ":" in session.host else udp.DOMAIN_NAME
        engine_id, _, _ = mp.get_peer_engine_info(domain, session.target.transport_address)
        return bytes(engine_id) if engine_id else None

    async def _discover(self, poll: _Poll, session: _Session) -> None:
        """Learn the agent's engine ID (a GET as an unknown user) and register the real user."""
        assert isinstance(session.creds, SnmpV3)
        error, *_ = await self._send(poll, [PROBE_OID], auth=UsmUserData(PROBE_USER))
        engine_id = self._peer_engine_id(session)
        if engine_id is None or isinstance(error, errind.RequestTimedOut):
            raise self._failure(poll, error or errind.requestTimedOut)
        poll.answered = poll.only_probe = True
        session.auth = self._usm_user(session.creds, engine_id)

    @asynccontextmanager
    async def _usm_row(self, session: _Session, auth: Auth) -> AsyncIterator[None]:
        """Hold the USM row of this (engine, user) while a request is out with these keys."""
        if not isinstance(auth, UsmUserData) or auth.securityEngineId is None:
            yield
            return
        assert isinstance(session.creds, SnmpV3)
        creds = session.creds
        keys = (creds.auth_protocol, creds.auth_key, creds.priv_protocol, creds.priv_key)
        row = self._usm_rows.setdefault((bytes(auth.securityEngineId), creds.user), _UsmRow())
        async with row.changed:
            await row.changed.wait_for(lambda: row.keys == keys or row.users == 0)
            row.keys, row.users = keys, row.users + 1
        try:
            yield
        finally:
            async with row.changed:
                row.users -= 1
                row.changed.notify_all()

    # -- requests -----------------------------------------------------------------------------

    async def _send(
        self,
        poll: _Poll,
        oids: Sequence[str],
        repetitions: int = 0,
        auth: Auth | None = None,
        value: Any = None,
    ) -> tuple[Exception | None, int, int, list[Any]]:
        """One GET, GETBULK (repetitions > 0) or SET (a value for the one OID) in a slot."""
        session = poll.session
        assert session is not None
        auth = auth or session.auth
        assert auth is not None
        engine = self._engine_now()
        if value is None:
            varbinds = [self._varbind(oid) for oid in oids]
        else:
            varbinds = [ObjectType(ObjectIdentity(oids[0]), value)]
        async with self._usm_row(session, auth), self._slot(poll):
            try:
                async with asyncio.timeout(session.request_limit):
                    if value is not None:
                        answer = await set_cmd(
                            engine, auth, session.target, session.context,
                            *varbinds, lookupMib=False,
                        )  # fmt: skip
                    elif repetitions:
                        answer = await bulk_cmd(
                            engine, auth, session.target, session.context,
                            0, repetitions, *varbinds, lookupMib=False,
                        )  # fmt: skip
                    else:
                        answer = await get_cmd(
                            engine, auth, session.target, session.context,
                            *varbinds, lookupMib=False,
                        )  # fmt: skip
            except TimeoutError:
                return errind.requestTimedOut, 0, 0, []
        error, status, index, result = answer
        return error, int(status or 0), int(index or 0), list(result)

    async def _request(self, poll: _Poll, oids: Sequence[str], repetitions: int = 0) -> Answer:
        error, status, index, varbinds = await self._send(poll, oids, repetitions)
        if error:
            raise self._failure(poll, error)
        poll.answered, poll.only_probe = True, False
        return status, index, varbinds

    def _failure(self, poll: _Poll, error: Exception) -> _PollError:
        session = poll.session
        assert session is not None
        where = f"{session.host}:{session.port}"
        v3 = session.creds if isinstance(session.creds, SnmpV3) else None
        if v3 is not None:
            session.auth = None  # probe again next time: engine ID may have changed
        if isinstance(error, errind.RequestTimedOut):
            tries = session.retries + 1
            if v3 is not None and poll.only_probe:
                message = (
                    f"{where} answered SNMPv3 discovery but not the {v3.level} request of user"
                    f" {v3.user!r} within {session.timeout} s x {tries} tries"
                    " (wrong privacy key or protocol?)"
                )
                return _PollError(ReadingError(code="auth", message=message), reachable=True)
            causes = "wrong community" if v3 is None else "wrong SNMPv3 privacy key"
            message = (
                f"no SNMP answer from {where} within {session.timeout} s x {tries} tries"
                f" (device offline, {causes} or SNMP disabled)"
            )
            return _PollError(ReadingError(code="timeout", message=message))
        for kind, text in AUTH_FAILURES:
            if isinstance(error, kind):
                user, level = (v3.user, v3.level) if v3 else ("", "")
                message = f"{where}: " + text.format(user=user, level=level)
                return _PollError(ReadingError(code="auth", message=message), reachable=True)
        message = self._scrub(f"SNMP error from {where}: {error}", poll.device)
        return _PollError(ReadingError(code="protocol", message=message))

    # -- reading ------------------------------------------------------------------------------

    async def _read(self, poll: _Poll) -> None:
        session = poll.session
        assert session is not None
        fast = time.monotonic() >= session.fast_off_until
        if self.v2c_fast and fast and isinstance(session.creds, SnmpV2c):
            await self._fast_read(poll, session)
            return
        if session.auth is None:
            await self._discover(poll, session)
        metrics = poll.profile.metrics
        for start in range(0, len(metrics), MAX_GET_VARBINDS):
            await self._get(poll, metrics[start : start + MAX_GET_VARBINDS])
        for table in poll.profile.tables:
            await self._walk(poll, table)

    async def _get(self, poll: _Poll, metrics: Sequence[SnmpMetric]) -> None:
        pending = list(metrics)
        while pending:
            status, index, varbinds = await self._request(poll, [m.oid for m in pending])
            if status == TOO_BIG and len(pending) > 1:
                half = len(pending) // 2
                await self._get(poll, pending[:half])
                await self._get(poll, pending[half:])
                return
            if status:
                name = rfc1905.errorStatus.clone(status).prettyPrint()
                if not 1 <= index <= len(pending) or (len(pending) == 1 and status != NO_SUCH_NAME):
                    for metric in pending:
                        poll.error("protocol", f"{metric.oid}: agent answered {name}", metric.name)
                    return
                culprit = pending.pop(index - 1)  # v1-style error: drop that one, ask again
                code: ErrorCode = "no_such_object" if status == NO_SUCH_NAME else "protocol"
                poll.error(code, f"{culprit.oid}: agent answered {name}", culprit.name)
                continue
            for position, metric in enumerate(pending):
                if position >= len(varbinds) or str(varbinds[position][0]) != metric.oid:
                    poll.error("protocol", f"{metric.oid}: missing from the answer", metric.name)
                    continue
                result = _value(metric, metric.oid, varbinds[position][1])
                if isinstance(result, ReadingError):
                    poll.errors.append(result.model_copy(update={"metric": metric.name}))
                else:
                    poll.values[metric.name] = result
            return

    async def _walk(self, poll: _Poll, table: SnmpTable) -> None:
        """GETBULK all columns of a table together until each leaves its subtree."""
        roots = [oid_tuple(column.oid) for column in table.columns]
        last = list(roots)
        counts = [0] * len(roots)
        active = list(range(len(roots)))
        rows: dict[tuple[int, ...], dict[str, Value]] = {}
        bad: dict[str, list[str]] = {}
        session = poll.session
        assert session is not None
        reps = repetitions(len(active))
        if table.name in session.rows_seen:  # ask for just enough rows to see the table's end
            reps = min(reps, session.rows_seen[table.name] + 1)
        seen = session.rows_seen.get(table.name)
        while active:
            lowest = min(counts[i] for i in active)
            want = max(1, min(reps, table.max_rows - lowest))
            if seen is not None and lowest <= seen:  # just enough to reach the end seen last
                want = min(want, seen - lowest + 1)
            oids = [oid_str(last[i]) for i in active]
            status, _, varbinds = await self._request(poll, oids, repetitions=want)
            if status == TOO_BIG and reps > 1:
                reps //= 2
                continue
            if status:
                name = rfc1905.errorStatus.clone(status).prettyPrint()
                poll.error("protocol", f"walk of {table.name}: agent answered {name}", table.name)
                break
            done: set[int] = set()
            for position, (oid_name, value) in enumerate(varbinds):
                i = active[position % len(active)]
                oid = tuple(oid_name)
                root = roots[i]
                if i in done or is_missing(value) or oid[: len(root)] != root or oid <= last[i]:
                    done.add(i)
                    continue
                last[i], counts[i] = oid, counts[i] + 1
                column = table.columns[i]
                result = _value(column, str(oid_name), value)
                if isinstance(result, ReadingError):
                    bad.setdefault(column.name, []).append(result.message)
                else:
                    rows.setdefault(oid[len(root) :], {})[column.name] = result
                if counts[i] >= table.max_rows:
                    done.add(i)
            if not varbinds:
                break
            active = [i for i in active if i not in done]
        self._table_done(poll, table, rows, bad, max(counts))

    # -- the SNMPv2c fast path (gufo-snmp) ------------------------------------------------------

    async def _fast_read(self, poll: _Poll, session: _Session) -> None:
        assert isinstance(session.creds, SnmpV2c)
        host, port = session.target.transport_address[:2]  # resolved by pysnmp's target
        client = snmp_fast.FastV2c(
            str(host),
            int(port),
            session.creds.community.get_secret_value(),
            session.timeout,
            session.retries + 1,
        )
        metrics = poll.profile.metrics
        for start in range(0, len(metrics), MAX_GET_VARBINDS):
            await self._fast_get(poll, client, metrics[start : start + MAX_GET_VARBINDS])
        for table in poll.profile.tables:
            await self._fast_walk(poll, client, table)

    @asynccontextmanager
    async def _slot(self, poll: _Poll) -> AsyncIterator[None]:
        """A request slot: the shared set once the device has answered (its last poll was not
        unreachable), else the silent devices' set (never seen yet, or silent last time)."""
        queued = time.monotonic()
        silent = self._states.get(poll.device.id) in (None, "unreachable")
        async with self._silent_slots if silent else self._slots:
            poll.extend_deadline(time.monotonic() - queued)
            yield

    async def _fast_request(self, poll: _Poll, request: Callable[[], Awaitable[T]]) -> T:
        """Run one fast-path exchange; its failures become a _PollError like pysnmp's."""
        session = poll.session
        assert session is not None
        try:
            result = await request()
        except snmp_fast.RequestTimedOut:
            raise self._failure(poll, errind.requestTimedOut) from None
        except TimeoutError:  # the hard cap on one request, above the client's own timeouts
            raise self._failure(poll, errind.requestTimedOut) from None
        except snmp_fast.SnmpDecodeError as exc:  # it answered: pysnmp reads it from now on
            session.fast_off_until = time.monotonic() + RETRY_FAST_AFTER_S
            where = f"{session.host}:{session.port}"
            text = f"{where} answered what gufo-snmp cannot decode: {exc}"
            message = self._scrub(text, poll.device)
            log.warning("snmp_fast_path_off", device=poll.device.id, error=message)
            error = ReadingError(code="protocol", message=message + " (pysnmp reads it for 1 h)")
            raise _PollError(error, reachable=True) from None
        except (snmp_fast.SnmpError, OSError) as exc:
            raise self._failure(poll, exc) from None
        poll.answered = True
        return result

    async def _fast_get(
        self, poll: _Poll, client: snmp_fast.FastV2c, metrics: Sequence[SnmpMetric]
    ) -> None:
        session = poll.session
        assert session is not None

        async def get() -> dict[str, snmp_fast.Value]:
            async with self._slot(poll), asyncio.timeout(session.request_limit):
                return await client.get([m.oid for m in metrics])

        answer = await self._fast_request(poll, get)
        chunk = tuple(m.oid for m in metrics)
        if not answer and len(metrics) > 1 and session.empty_gets.get(chunk, 0) < time.monotonic():
            # nothing at all: maybe a tooBig (gufo-snmp does not report it): ask in halves
            values, errors = len(poll.values), len(poll.errors)
            half = len(metrics) // 2
            await self._fast_get(poll, client, metrics[:half])
            await self._fast_get(poll, client, metrics[half:])
            if len(poll.values) == values and all(
                e.code == "no_such_object" for e in poll.errors[errors:]
            ):
                # none of them exists: no halves for an hour (then again, in case of a tooBig)
                session.empty_gets[chunk] = time.monotonic() + RETRY_FAST_AFTER_S
            return
        for metric in metrics:
            if metric.oid not in answer:
                poll.error("no_such_object", f"{metric.oid}: no such object", metric.name)
                continue
            result = _fast_value(metric, metric.oid, answer[metric.oid])
            if isinstance(result, ReadingError):
                poll.errors.append(result.model_copy(update={"metric": metric.name}))
            else:
                poll.values[metric.name] = result

    async def _fast_walk(self, poll: _Poll, client: snmp_fast.FastV2c, table: SnmpTable) -> None:
        """Walk a table with single-subtree GETBULK streams (snmp_fast.plan_walks)."""
        session = poll.session
        assert session is not None
        columns = [oid_tuple(column.oid) for column in table.columns]
        by_oid = {column: i for i, column in enumerate(columns)}
        counts = [0] * len(columns)
        rows: dict[tuple[int, ...], dict[str, Value]] = {}
        bad: dict[str, list[str]] = {}
        seen = session.rows_seen.get(table.name)
        cut: set[int] = set()  # columns with more rows than max_rows (or perhaps more)

        async def stream(walk: snmp_fast.Walk, reps: int) -> None:
            depth = len(walk.root) + 1 if walk.whole_entry else len(walk.root)
            last_column = max(columns[i] for i in walk.columns)
            previous: tuple[int, ...] = ()
            async with self._slot(poll), aclosing(client.walk(oid_str(walk.root), reps)) as items:
                async for name, value in items:
                    oid = oid_tuple(name)
                    column = oid[:depth]
                    if oid <= previous or column > last_column:
                        return  # past the last column wanted, or an agent going round
                    previous = oid
                    i = by_oid.get(column)
                    if i is None or i not in walk.columns:
                        continue
                    if counts[i] >= table.max_rows:  # a row past max_rows: the table is longer
                        cut.add(i)
                        if cut.issuperset(walk.columns):
                            return  # every column of this stream is full: ask no further
                        continue
                    counts[i] += 1
                    spec = table.columns[i]
                    result = _fast_value(spec, name, value)
                    if isinstance(result, ReadingError):
                        bad.setdefault(spec.name, []).append(result.message)
                    else:
                        rows.setdefault(oid[depth:], {})[spec.name] = result

        longer = seen is not None and seen > table.max_rows  # cut at max_rows last time
        for walk in snmp_fast.plan_walks(columns, whole_entries=not longer):
            if walk.whole_entry:  # varbinds per GETBULK: just past the end seen last time
                span = max(columns[i][-1] for i in walk.columns)
                reps = BULK_VARBINDS if seen is None else min(BULK_VARBINDS, span * seen + 1)
            else:
                reps = MAX_REPETITIONS if seen is None else min(MAX_REPETITIONS, seen + 1)
            await self._fast_request(poll, functools.partial(stream, walk, max(2, reps)))
        self._table_done(poll, table, rows, bad, max(counts) + (1 if cut else 0))

    def _table_done(
        self,
        poll: _Poll,
        table: SnmpTable,
        rows: dict[tuple[int, ...], dict[str, Value]],
        bad: dict[str, list[str]],
        most: int,
    ) -> None:
        """Store a walked table in the poll, with its errors; remember its size."""
        assert poll.session is not None
        poll.session.rows_seen[table.name] = most
        kept = sorted(rows)[: table.max_rows]
        poll.tables[table.name] = {oid_str(index): rows[index] for index in kept}
        for column_name, messages in bad.items():
            message = f"{table.name}.{column_name}: {len(messages)} bad values, e.g. {messages[0]}"
            poll.error("wrong_type", message, table.name)
        if not rows and not bad:
            poll.error(
                "no_such_object", f"table {table.name}: the agent returned no rows", table.name
            )

    # -- reporting ----------------------------------------------------------------------------

    @staticmethod
    def _scrub(message: str, device: Device) -> str:
        creds = device.snmp
        secrets: list[str] = []
        if isinstance(creds, SnmpV2c):
            secrets.append(creds.community.get_secret_value())
        elif isinstance(creds, SnmpV3):
            secrets += [k.get_secret_value() for k in (creds.auth_key, creds.priv_key) if k]
        for secret in secrets:
            message = message.replace(secret, "***")
        return message

    def _log_state(self, device: Device, reading: Reading) -> None:
        """Log when a device changes state (unreachable, auth failure, ok), never every poll."""
        codes = {e.code for e in reading.errors}
        state = "unreachable" if not reading.reachable else "auth" if "auth" in codes else "ok"
        previous = self._states.get(device.id)
        self._states[device.id] = state
        if state == previous or (previous is None and state == "ok"):
            return
        if state == "ok":
            log.info("snmp device recovered", device=device.id, was=previous)
        else:
            message = reading.errors[0].message if reading.errors else ""
            log.warning(f"snmp device {state}", device=device.id, error=message)
