"""A running app without TCP: clients reach ``handle_stream`` over in-memory streams.

Store calls run inline here.  Under the autojump clock a task waiting on a worker thread counts
as blocked, so the clock would leap to the next deadline (the handshake timeout, say) in the
middle of an SQLite call.  The store is still a real SQLite file; its threaded path is tested in
test_store.py and end to end.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs
import h11
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from mythos_rt.core.world import World
from mythos_rt.runtime.gate import handle_stream
from mythos_rt.runtime.server import App, open_app
from mythos_rt.runtime.store import Backend, PlayerRecord, Store
from mythos_rt.runtime.store.sqlite import SqliteBackend
from mythos_rt.runtime.tokens import issue_token
from mythos_rt.settings import Settings
from mythos_rt.world import load_world

SECRET = "runtime-test-secret-" + "s" * 32
AUDIENCE = "fastapi-users:auth"
HUNG_TEST_S = 24 * 3600
P = ParamSpec("P")
T = TypeVar("T")


class InlineStore(Store):
    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)


class SlowStore(Store):
    """A store on a slow disk: every call takes 1 s of mock time (swap it into the writer)."""

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        await trio.sleep(1)
        return fn(*args, **kwargs)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "data_dir": data_dir,
        "ops_port": 0,
        "game_tick_s": 0.0,
        "ward_s": 0.0,
        "connect_rate_ip": 10_000,
        "connect_rate_player": 10_000,
    }
    return Settings(**{**defaults, **overrides})


def upgrade_request(target: str, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A WebSocket upgrade request written by hand, for raw clients that misbehave on purpose."""
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@attrs.define
class Client:
    """A test client: a real trio-websocket client connection plus what it has received."""

    ws: WebSocketConnection
    token: str
    received: list[dict[str, Any]] = attrs.field(factory=list)

    async def send(self, frame: dict[str, Any], *, csrf: bool = True) -> None:
        if csrf:
            frame = {**frame, "csrfToken": self.token}
        await self.ws.send_message(json.dumps(frame))

    async def command(self, command: str, *args: str) -> None:
        await self.send({"type": "game_command", "data": {"command": command, "args": list(args)}})

    async def next(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.ws.get_message())
        self.received.append(frame)
        return frame

    async def next_event(self, event_type: str) -> dict[str, Any]:
        """Skip to the next event of this type."""
        while True:
            frame = await self.next()
            if frame.get("event_type") == event_type:
                return frame

    async def until_pong(self) -> list[dict[str, Any]]:
        """Everything queued for this socket before now: ping, then read up to the pong."""
        await self.send({"type": "ping"})
        frames = []
        while (frame := await self.next()).get("event_type") != "pong":
            frames.append(frame)
        return frames

    async def burst(self) -> list[dict[str, Any]]:
        frames = []
        while not frames or frames[-1].get("event_type") != "welcome":
            frames.append(await self.next())
        return frames

    async def closed(self) -> tuple[int, str | None]:
        """Read until the server closes; return the close code and reason."""
        try:
            while True:
                await self.next()
        except ConnectionClosed as exc:
            assert exc.reason is not None
            return exc.reason.code, exc.reason.reason


@attrs.define
class Harness:
    app: App
    store: Backend
    nursery: trio.Nursery
    players: dict[str, PlayerRecord]

    def token(self, name: str, ttl_s: float = 3600) -> str:
        user_id = self.players[name].user_id
        return issue_token(SECRET, user_id, ttl_s=ttl_s, audience=AUDIENCE, now=time.time())

    def open_stream(self) -> trio.testing.MemoryStapledStream[Any, Any]:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        self.nursery.start_soon(handle_stream, self.app.gate, server_stream)
        return client_stream

    async def raw_handshake(
        self, target: str, headers: Sequence[tuple[str, str]] = ()
    ) -> tuple[int, dict[str, str], bytes]:
        """An upgrade request by hand; returns the refusal's status, headers and body.

        (trio-websocket's client raises a rejection from its reader task, so refusals are read
        here with h11 instead.)
        """
        stream = self.open_stream()
        await stream.send_all(upgrade_request(target, headers))
        return await read_response(stream)

    async def connect(
        self,
        name: str,
        *,
        query: str = "",
        subprotocols: Sequence[str] | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        token: str | None = None,
        read_burst: bool = True,
    ) -> Client:
        token = token or self.token(name)
        resource = (
            f"/v1/api/ws?token={token}{query}" if subprotocols is None else f"/v1/api/ws?{query}"
        )
        ws = await wrap_client_stream(
            self.nursery,
            self.open_stream(),
            "localhost",
            resource,
            subprotocols=subprotocols,
            extra_headers=list(headers),
            # Deep enough that a test client which reads late still answers pings on time.
            message_queue_size=10_000,
        )
        client = Client(ws, token)
        if read_burst:
            await client.burst()
        return client


async def read_response(stream: trio.abc.Stream) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response with h11: status, headers (lower-case names), body."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "localhost")]))
    conn.send(h11.EndOfMessage())
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response | h11.InformationalResponse):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status, headers, body


def seeded_store(
    settings: Settings, world: World, names: Sequence[str]
) -> tuple[SqliteBackend, dict[str, PlayerRecord]]:
    """A real SQLite store with these players in the start room; the first one is an admin."""
    store = SqliteBackend.open(settings.store_path)
    admin, *others = names
    records = store.add_players([admin], room_id=world.start_room_id, is_admin=True)
    records += store.add_players(others, room_id=world.start_room_id)
    return store, {record.name: record for record in records}


@asynccontextmanager
async def running(
    data_dir: Path, names: Sequence[str] = ("Armitage", "Wilmarth", "Dyer"), **overrides: Any
) -> AsyncIterator[Harness]:
    settings = make_settings(data_dir, **overrides)
    world = load_world(settings.world)
    store, players = seeded_store(settings, world, names)
    # A hung test fails instead of spinning: under the autojump clock this takes no real time.
    try:
        with trio.fail_after(HUNG_TEST_S):
            async with (
                open_app(settings, world, InlineStore(store), SECRET) as app,
                trio.open_nursery() as nursery,
            ):
                yield Harness(app, store, nursery, players)
                nursery.cancel_scope.cancel()
    finally:
        store.close()
