"""One MQTT 5 connection on the asyncio loop: paho-mqtt 2.x driven by the loop's own selector.

A fresh paho client per connection: the outbox, not paho's memory, is what carries messages
across disconnects. paho is used directly (not through aiomqtt) because the uplink needs the
PUBACK reason code: under MQTT 5 a broker that refuses a message (ACL) still answers with a
PUBACK, whose reason code (>= 0x80) is the only sign; aiomqtt drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_config.models import TlsConfig

MessageHandler = Callable[[str, bytes, bool], None]  # topic, payload, retained


class LinkError(Exception):
    """The connection could not be made or was lost."""


class ConnectRefusedError(LinkError):
    """The broker answered CONNACK with a failure (credentials, not authorised...)."""


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class LinkOptions:
    host: str
    port: int
    client_id: str
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    will: Will | None = None
    session_expiry_s: int = 0  # 0: a clean session
    connect_timeout_s: float = 10.0
    # QoS 1/2 publishes on the wire without their PUBACK; the link holds the rest back, in
    # order, until PUBACKs come. Lowered to the broker's Receive Maximum (MQTT 5 CONNACK).
    max_inflight: int = 100


class Link(Protocol):
    """What the uplink needs of a connection (MqttLink here, a fake in unit tests)."""

    async def connect(self) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[int]:
        """Future of the PUBACK reason code (0 at once for QoS 0); LinkError if lost."""
        ...

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]: ...

    async def wait_closed(self) -> None: ...

    async def disconnect(self) -> None: ...

    def abort(self) -> None: ...


LinkFactory = Callable[[LinkOptions, MessageHandler], Link]


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verify the broker with the CA file (or the system's); present a client cert if given."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


class MqttLink:
    def __init__(self, options: LinkOptions, on_message: MessageHandler) -> None:
        self.options = options
        self._on_message = on_message
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._sock: socket.socket | None = None
        self._misc: asyncio.Task[None] | None = None
        self._connack: asyncio.Future[None] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._publishes: dict[int, asyncio.Future[int]] = {}  # QoS > 0 in flight, by mid
        self._held: deque[tuple[str, bytes, int, bool, asyncio.Future[int]]] = deque()
        self._max_inflight = options.max_inflight
        self._subscribes: dict[int, asyncio.Future[list[int]]] = {}
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        o = self.options
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=o.client_id,
            protocol=mqtt.MQTTv5,
        )
        c.connect_timeout = o.connect_timeout_s
        # paho's own in-flight limit cannot follow the broker's Receive Maximum once connected
        # (and costs a scan of its queue per PUBACK): the link keeps the limit (publish())
        c.max_inflight_messages_set(0)
        if o.username is not None:
            c.username_pw_set(o.username, o.password)
        if o.tls is not None:
            c.tls_set_context(o.tls)
        if o.will is not None:
            c.will_set(o.will.topic, o.will.payload, o.will.qos, o.will.retain)
        c.on_connect = self._cb_connect
        c.on_disconnect = self._cb_disconnect
        c.on_publish = self._cb_publish
        c.on_subscribe = self._cb_subscribe
        c.on_message = self._cb_message
        c.on_socket_open = self._cb_socket_open
        c.on_socket_close = self._cb_socket_close
        c.on_socket_register_write = self._cb_register_write
        c.on_socket_unregister_write = self._cb_unregister_write
        return c

    # -- public ----------------------------------------------------------------------------

    async def connect(self) -> None:
        o = self.options
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if o.session_expiry_s:
            props.SessionExpiryInterval = o.session_expiry_s

        def blocking_connect() -> None:  # DNS, TCP and the TLS handshake: off the loop
            try:
                self._client.connect(
                    o.host,
                    o.port,
                    keepalive=o.keepalive_s,
                    clean_start=o.session_expiry_s == 0,
                    properties=props,
                )
            except OSError as exc:
                _close_sockets_of(exc)
                raise

        try:
            await self._loop.run_in_executor(None, blocking_connect)
            await asyncio.wait_for(asyncio.shield(self._connack), o.connect_timeout_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.abort()
            raise LinkError(f"connect to {o.host}:{o.port}: {exc}") from None
        except TimeoutError:
            self.abort()
            raise LinkError(f"no CONNACK from {o.host}:{o.port}") from None
        except (LinkError, asyncio.CancelledError):
            # cancelled: the connecting thread may still open a socket; _attach closes it
            self.abort()
            raise

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = self._loop.create_future()
        if self._closed.done():
            fut.set_exception(LinkError("connection lost"))
            return fut
        if qos > 0 and (self._held or len(self._publishes) >= self._max_inflight):
            self._held.append((topic, payload, qos, retain, fut))  # sent as PUBACKs come
        else:
            self._send(topic, payload, qos, retain, fut)
        return fut

    def _send(
        self, topic: str, payload: bytes, qos: int, retain: bool, fut: asyncio.Future[int]
    ) -> None:
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fut.set_exception(LinkError(f"publish: {mqtt.error_string(info.rc)}"))
        elif qos == 0:
            fut.set_result(0)
        else:
            # the packet is only queued here: paho writes it from the loop's writer callback,
            # so its PUBACK cannot come before this registration
            self._publishes[info.mid] = fut

    def _send_held(self) -> None:
        """Publishes held back by the in-flight limit go out as PUBACKs made room, in order."""
        held = self._held
        while held and len(self._publishes) < self._max_inflight and not self._closed.done():
            self._send(*held.popleft())

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[int]:
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        rc, mid = self._client.subscribe([(t, SubscribeOptions(qos=q)) for t, q in topics])
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise LinkError(f"subscribe: {mqtt.error_string(rc)}")
        self._subscribes[mid] = fut
        waiting: list[asyncio.Future[Any]] = [fut, self._closed]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if fut not in done:
            raise LinkError("connection lost while subscribing")
        return fut.result()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    @property
    def max_inflight(self) -> int:
        """QoS 1 publishes allowed on the wire without their PUBACK (after the CONNACK: the
        smaller of LinkOptions.max_inflight and the broker's Receive Maximum)."""
        return self._max_inflight

    @property
    def in_flight(self) -> int:
        """QoS 1/2 publishes sent and waiting for their PUBACK (not those held back)."""
        return len(self._publishes)

    @property
    def closed(self) -> bool:
        return self._closed.done()

    async def disconnect(self, timeout_s: float = 5.0) -> None:
        """Say goodbye (DISCONNECT: the broker drops the Last Will) and wait for the close."""
        if self._closed.done():
            return
        self._client.disconnect()
        with contextlib.suppress(TimeoutError, LinkError):
            await asyncio.wait_for(self.wait_closed(), timeout_s)
        self.abort()

    def abort(self) -> None:
        """Drop the socket without a DISCONNECT (the broker then sends the Last Will)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._finish(LinkError("connection closed"))

    # -- paho callbacks (on the loop thread, except socket-open during connect) -------------

    def _on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _cb_socket_open(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._attach, sock)

    def _attach(self, sock: socket.socket) -> None:
        if self._closed.done():  # given up (cancelled, aborted) while the thread connected
            with contextlib.suppress(OSError):
                sock.close()
            return
        self._sock = sock
        _quickack(sock)
        self._loop.add_reader(sock, self._readable, sock)
        self._misc = self._loop.create_task(self._misc_loop())

    def _readable(self, sock: socket.socket) -> None:
        try:
            while True:
                self._client.loop_read()
                # TLS: decoded bytes may wait inside the SSL object, unseen by the selector
                if not (isinstance(sock, ssl.SSLSocket) and self._sock is sock and sock.pending()):
                    break
            if self._sock is sock:
                _quickack(sock)
                self._send_held()
        except OSError as exc:
            self._finish(LinkError(f"read: {exc}"))
            self.abort()

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except OSError as exc:
            self._finish(LinkError(f"write: {exc}"))
            self.abort()

    def _cb_socket_close(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._detach, sock)

    def _detach(self, sock: socket.socket) -> None:
        if self._sock is sock:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
            self._sock = None
        self._finish(LinkError("connection closed"))

    def _cb_register_write(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._loop.add_writer, sock, self._writable)

    def _cb_unregister_write(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._on_loop(self._loop.remove_writer, sock)

    async def _misc_loop(self) -> None:
        while True:  # keep-alive pings, and the keep-alive timeout
            if self._client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                return
            await asyncio.sleep(1.0)

    def _cb_connect(
        self, client: mqtt.Client, _ud: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if self._connack.done():
            return
        if rc.is_failure:
            self._connack.set_exception(ConnectRefusedError(f"broker refused: {rc}"))
            return
        # MQTT 5: never more QoS 1 publishes unacknowledged than the broker says it takes
        # (mosquitto 2.0.11 with its defaults says 20); absent means 65,535
        receive_max = getattr(props, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and 0 < receive_max < self._max_inflight:
            self._max_inflight = receive_max
        self._connack.set_result(None)

    def _cb_disconnect(
        self, client: mqtt.Client, _ud: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self._finish(LinkError(f"disconnected: {rc}"))

    def _finish(self, exc: LinkError) -> None:
        if not self._connack.done():
            self._connack.set_exception(exc)
            self._connack.exception()  # retrieved: no "never retrieved" warning
        if not self._closed.done():
            self._closed.set_result(None)
        for futs in (self._publishes, self._subscribes):
            for fut in futs.values():
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()
            futs.clear()
        while self._held:
            fut = self._held.popleft()[4]
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()
        if self._misc is not None and not self._misc.done():
            self._misc.cancel()

    def _cb_publish(
        self, client: mqtt.Client, _ud: Any, mid: int, rc: ReasonCode, props: Any
    ) -> None:
        fut = self._publishes.pop(mid, None)  # None for QoS 0
        if fut is not None and not fut.done():
            fut.set_result(rc.value)

    def _cb_subscribe(
        self, client: mqtt.Client, _ud: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        fut = self._subscribes.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result([r.value for r in rcs])

    def _cb_message(self, client: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        self._on_message(msg.topic, bytes(msg.payload), bool(msg.retain))


def _quickack(sock: socket.socket) -> None:
    """Acknowledge the broker's segments at once (Linux TCP_QUICKACK, which the kernel clears
    by itself: set again after every read). A broker with Nagle's algorithm on (mosquitto's
    default) holds its next PUBACKs until its last segment is acknowledged, and a delayed ACK
    costs up to 40 ms whenever the client has nothing to send back yet."""
    if _TCP_QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _close_sockets_of(exc: BaseException) -> None:
    """paho 2.2 leaves the socket of a failed TLS handshake open (to the garbage collector):
    close the sockets still held by the frames of the traceback."""
    tb = exc.__traceback__
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if isinstance(value, socket.socket):
                with contextlib.suppress(OSError):
                    value.close()
        tb = tb.tb_next
