"""A small MQTT broker for the demo, in the caller's asyncio loop: MQTT 5 and 3.1.1, QoS 0 and 1.

The demo uses mosquitto when it is installed. Without it, this broker serves the demo's parts:
the gateway's uplink and the central consumer speak MQTT 5 (persistent sessions, shared
subscriptions), which amqtt, the usual embedded Python broker, does not (it accepts protocol
level 4 only), and the MQTT lamps and the agent's device collector speak 3.1.1.

What it does: CONNECT (anonymous; user name and password are ignored), PUBLISH at QoS 0/1 (a
QoS 2 publish is accepted with the PUBREC/PUBREL/PUBCOMP exchange and delivered at QoS 1),
SUBSCRIBE/UNSUBSCRIBE with `+`/`#` wildcards, shared subscriptions (`$share/GROUP/filter`: each
message to one member, in turn), retained messages (not sent on shared subscriptions, as MQTT 5
says), Last Will (on a connection lost without DISCONNECT, or DISCONNECT reason 0x04), keep-alive,
session take-over by client id, MQTT 5 no-local and retain-as-published.
What it leaves out, being for a demo on loopback: sessions are never kept (CONNACK says "no
session present", and clients subscribe again), nothing is queued for an offline client, an
unacknowledged QoS 1 message is not sent again, PUBLISH properties are not forwarded, no TLS,
no authentication, no $SYS tree.

    broker = MqttBroker()                # host="127.0.0.1", port=0: a free port
    port = await broker.start()
    ...
    await broker.close()                 # or: async with MqttBroker() as broker: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
MAX_PACKET = 1024 * 1024
DISCONNECT_WITH_WILL = 0x04
SESSION_TAKEN_OVER = 0x8E
ASSIGNED_CLIENT_ID = 0x12


class ProtocolError(Exception):
    """A malformed or unsupported packet: the connection is closed."""


# --- encoding -----------------------------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


class Reader:
    """Fields of one packet's body, in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError("packet shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("a string is not UTF-8") from None

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ProtocolError("variable byte integer longer than 4 bytes")

    def skip_properties(self) -> None:
        self.take(self.varint())

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


# --- topics -------------------------------------------------------------------------------------
def valid_filter(f: str) -> bool:
    if not f or "\0" in f:
        return False
    levels = f.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching; a filter starting with a wildcard does not match `$` topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """'$share/group/a/+' -> ('group', 'a/+'); a plain filter -> (None, filter)."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3 and parts[1] and not set(parts[1]) & {"+", "#"}:
            return parts[1], parts[2]
        raise ProtocolError(f"bad shared subscription {topic_filter!r}")
    return None, topic_filter


@dataclass(frozen=True)
class Subscription:
    qos: int
    no_local: bool = False
    retain_as_published: bool = False


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(eq=False)
class Client:
    """One connection."""

    client_id: str
    version: int  # 4 (3.1.1) or 5
    writer: asyncio.StreamWriter
    will: Message | None = None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    shared: dict[tuple[str, str], Subscription] = field(default_factory=dict)  # (group, filter)
    _ids: itertools.cycle[int] = field(default_factory=lambda: itertools.cycle(range(1, 65536)))

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def deliver(self, msg: Message, sub: Subscription, retained: bool = False) -> None:
        qos = min(msg.qos, sub.qos, 1)
        retain = retained or (msg.retain and sub.retain_as_published)
        body = utf8(msg.topic)
        if qos:
            body += struct.pack("!H", next(self._ids))
        if self.version == 5:
            body += varint(0)  # no properties
        self.send(packet(PUBLISH, qos << 1 | int(retain), body + msg.payload))


class MqttBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._clients: dict[str, Client] = {}
        self._retained: dict[str, Message] = {}
        self._turn: dict[tuple[str, str], int] = {}  # next member of a shared group
        self._tasks: set[asyncio.Task[None]] = set()
        self._anonymous = itertools.count(1)
        self.published = 0

    # --- life cycle -----------------------------------------------------------------------------
    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients.values()):
            client.writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> MqttBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def client_ids(self) -> list[str]:
        return sorted(self._clients)

    # --- one connection ---------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client: Client | None = None
        try:
            kind, flags, body = await asyncio.wait_for(_read_packet(reader), 10.0)
            if kind != CONNECT:
                raise ProtocolError("the first packet is not CONNECT")
            client, keepalive = self._connect(body, writer)
            timeout = keepalive * 1.5 if keepalive else None
            while True:
                kind, flags, body = await asyncio.wait_for(_read_packet(reader), timeout)
                if kind == DISCONNECT:
                    reason = body[0] if body else 0
                    if not (client.version == 5 and reason == DISCONNECT_WITH_WILL):
                        client.will = None
                    break
                self._handle(client, kind, flags, body)
                await writer.drain()
        except (ProtocolError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
                log.info("mqtt_client_dropped", client=client and client.client_id, error=str(exc))
        finally:
            if client is not None and self._clients.get(client.client_id) is client:
                del self._clients[client.client_id]
                if client.will is not None:
                    self._publish(client.will, None)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tasks.discard(task)

    def _connect(self, body: bytes, writer: asyncio.StreamWriter) -> tuple[Client, int]:
        r = Reader(body)
        name, version = r.text(), r.byte()
        if name not in ("MQTT", "MQIsdp") or version not in (3, 4, 5):
            writer.write(packet(CONNACK, 0, bytes([0, 1])))  # unacceptable protocol version
            raise ProtocolError(f"unsupported protocol {name} {version}")
        flags, keepalive = r.byte(), r.u16()
        if version == 5:
            r.skip_properties()
        client_id = r.text()
        will = None
        if flags & 0x04:
            if version == 5:
                r.skip_properties()
            topic, payload = r.text(), r.binary()
            will = Message(topic, payload, min((flags >> 3) & 3, 1), bool(flags & 0x20))
        if flags & 0x80:
            r.text()  # user name
        if flags & 0x40:
            r.binary()  # password
        props = b""
        if not client_id:
            client_id = f"demo-anon-{next(self._anonymous)}"
            props = bytes([ASSIGNED_CLIENT_ID]) + utf8(client_id)
        old = self._clients.pop(client_id, None)
        if old is not None:  # session take-over: the old connection goes
            if old.version == 5:
                old.send(packet(DISCONNECT, 0, bytes([SESSION_TAKEN_OVER, 0])))
            old.writer.close()
        client = Client(client_id, 5 if version == 5 else 4, writer, will)
        self._clients[client_id] = client
        if version == 5:
            client.send(packet(CONNACK, 0, bytes([0, 0]) + varint(len(props)) + props))
        else:
            client.send(packet(CONNACK, 0, bytes([0, 0])))
        return client, keepalive

    def _handle(self, client: Client, kind: int, flags: int, body: bytes) -> None:
        r = Reader(body)
        if kind == PUBLISH:
            qos, retain = (flags >> 1) & 3, bool(flags & 1)
            if qos == 3:
                raise ProtocolError("QoS 3")
            topic = r.text()
            if not topic or "+" in topic or "#" in topic:
                raise ProtocolError(f"bad topic name {topic!r}")
            pid = r.u16() if qos else 0
            if client.version == 5:
                r.skip_properties()
            self._publish(Message(topic, r.rest(), min(qos, 1), retain), client)
            if qos == 1:
                client.send(packet(PUBACK, 0, struct.pack("!H", pid)))
            elif qos == 2:
                client.send(packet(PUBREC, 0, struct.pack("!H", pid)))
        elif kind == PUBREL:
            client.send(packet(PUBCOMP, 0, body[:2]))
        elif kind in (PUBACK, PUBREC, PUBCOMP):
            if kind == PUBREC:
                client.send(packet(PUBREL, 2, body[:2]))
        elif kind == SUBSCRIBE:
            self._subscribe(client, r)
        elif kind == UNSUBSCRIBE:
            pid = r.u16()
            if client.version == 5:
                r.skip_properties()
            codes = bytearray()
            while r.left:
                group, topic_filter = split_shared(r.text())
                if group is None:
                    found = client.subscriptions.pop(topic_filter, None)
                else:
                    found = client.shared.pop((group, topic_filter), None)
                codes.append(0 if found is not None else 0x11)
            reply = struct.pack("!H", pid)
            if client.version == 5:
                reply += varint(0) + bytes(codes)
            client.send(packet(UNSUBACK, 0, reply))
        elif kind == PINGREQ:
            client.send(packet(PINGRESP, 0, b""))
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def _subscribe(self, client: Client, r: Reader) -> None:
        pid = r.u16()
        if client.version == 5:
            r.skip_properties()
        granted = bytearray()
        retained: list[tuple[Message, Subscription]] = []
        while r.left:
            topic_filter, options = r.text(), r.byte()
            group, plain = split_shared(topic_filter)
            if not valid_filter(plain):
                granted.append(0x8F if client.version == 5 else 0x80)
                continue
            sub = Subscription(
                qos=min(options & 3, 1),
                no_local=client.version == 5 and bool(options & 0x04),
                retain_as_published=client.version == 5 and bool(options & 0x08),
            )
            handling = (options >> 4) & 3 if client.version == 5 else 0
            if group is not None:
                client.shared[(group, plain)] = sub
            else:
                existed = plain in client.subscriptions
                client.subscriptions[plain] = sub
                if handling == 0 or (handling == 1 and not existed):
                    retained += [(m, sub) for t, m in self._retained.items() if matches(plain, t)]
            granted.append(sub.qos)
        reply = struct.pack("!H", pid)
        if client.version == 5:
            reply += varint(0)
        client.send(packet(SUBACK, 0, reply + bytes(granted)))
        for msg, sub in retained:
            client.deliver(msg, sub, retained=True)

    # --- routing -------------------------------------------------------------------------------
    def _publish(self, msg: Message, sender: Client | None) -> None:
        self.published += 1
        if msg.retain:
            if msg.payload:
                self._retained[msg.topic] = msg
            else:
                self._retained.pop(msg.topic, None)
        groups: dict[tuple[str, str], list[tuple[Client, Subscription]]] = {}
        for client in list(self._clients.values()):
            best: Subscription | None = None
            for topic_filter, sub in client.subscriptions.items():
                if (
                    matches(topic_filter, msg.topic)
                    and not (sub.no_local and client is sender)
                    and (best is None or sub.qos > best.qos)
                ):
                    best = sub
            if best is not None:
                client.deliver(msg, best)
            for (group, topic_filter), sub in client.shared.items():
                if matches(topic_filter, msg.topic):
                    groups.setdefault((group, topic_filter), []).append((client, sub))
        for key, members in groups.items():
            members.sort(key=lambda m: m[0].client_id)
            turn = self._turn.get(key, 0)
            client, sub = members[turn % len(members)]
            self._turn[key] = turn + 1
            client.deliver(msg, sub)


async def _read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    else:
        raise ProtocolError("remaining length longer than 4 bytes")
    if length > MAX_PACKET:
        raise ProtocolError(f"packet of {length} bytes")
    return first >> 4, first & 0x0F, await reader.readexactly(length)
