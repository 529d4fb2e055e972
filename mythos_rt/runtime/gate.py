"""The gate: everything between a TCP stream and an admitted socket (PROTOCOL.md sections 1–3).

:func:`handle_stream` is the per-connection handler the listener runs.  It contains every
exception of its connection (trio-websocket lets one escaping exception kill the whole server),
bounds the handshake with a timeout against slowloris, and always closes the stream.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import attrs
import trio
from trio_websocket import WebSocketConnection, WebSocketRequest

from mythos_rt.core import handshake
from mythos_rt.core.handshake import Refusal
from mythos_rt.core.ratelimit import ConnectionSlots, KeyedSlidingWindow
from mythos_rt.runtime.connection import Connection
from mythos_rt.runtime.http_api import HttpApi, answer_oversized_head, read_head
from mythos_rt.runtime.hub import Hub
from mythos_rt.runtime.logs import REFUSAL_LINES, REFUSAL_WINDOW_S, LineBudget, log_event
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.persistence import StoreWriter
from mythos_rt.runtime.store import Backend, MuteRecords, PlayerRecord, Store
from mythos_rt.runtime.tokens import TokenError, VerifiedToken, verify_with_settings
from mythos_rt.runtime.wsio import (
    _ServerConnection,
    address_of,
    forget_handshake,
    peer_address,
    wrap_server_stream,
)
from mythos_rt.settings import Settings

log = logging.getLogger(__name__)

SHUTTING_DOWN = (1001, "Server shutting down")
INTERNAL_ERROR = (1011, "Internal error")


@attrs.frozen
class Admission:
    record: PlayerRecord
    token: str
    verified: VerifiedToken
    subprotocol: str | None
    session_id: str | None
    deprecated_path: bool
    resume_from: int | None
    mutes: MuteRecords
    version: int  # Hub.version() before ``record`` and ``mutes`` were read
    peer: str  # the client's address (X-Forwarded-For from a trusted proxy)


class ConnectionTracker:
    """Counts live connections so the drain can wait for the last one to finish closing."""

    def __init__(self) -> None:
        self.active = 0
        self._empty = trio.Event()
        self._empty.set()

    def enter(self) -> None:
        self.active += 1
        if self._empty.is_set():
            self._empty = trio.Event()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._empty.set()

    async def wait_empty(self) -> None:
        while self.active:
            await self._empty.wait()


@attrs.define(eq=False)
class Gate:
    """Shared admission state; owned by the server, used by every handshake."""

    settings: Settings
    secret: str
    store: Store
    hub: Hub
    writer: StoreWriter
    metrics: Metrics
    draining: bool = False
    tracker: ConnectionTracker = attrs.field(factory=ConnectionTracker)
    # Handshakes under way (their timeout scopes), so the drain can abandon them.
    handshakes: set[trio.CancelScope] = attrs.field(factory=set)
    slots: ConnectionSlots = attrs.field(init=False)  # counted before anything is parsed
    ip_attempts: KeyedSlidingWindow = attrs.field(init=False)
    player_attempts: KeyedSlidingWindow = attrs.field(init=False)
    http_api: HttpApi = attrs.field(init=False)  # section 18, on the same listener
    refusal_lines: LineBudget = attrs.field(
        init=False, factory=lambda: LineBudget(REFUSAL_LINES, REFUSAL_WINDOW_S)
    )

    def abandon_handshakes(self) -> None:
        for scope in self.handshakes:
            scope.cancel()

    def __attrs_post_init__(self) -> None:
        s = self.settings
        exempt = frozenset(s.trusted_proxies)
        self.slots = ConnectionSlots(s.max_connections, s.max_handshakes_per_ip, exempt)
        self.ip_attempts = KeyedSlidingWindow(s.connect_rate_ip, s.connect_rate_ip_window_s)
        self.player_attempts = KeyedSlidingWindow(
            s.connect_rate_player, s.connect_rate_player_window_s
        )
        self.http_api = HttpApi(
            s, self.secret, self.store, self.hub, self.writer, self.metrics, lambda: self.draining
        )


async def handle_stream(gate: Gate, stream: trio.abc.Stream) -> None:
    """Serve one TCP connection from handshake to close; never raises (but Cancelled)."""
    slot = await take_slot(gate, stream, _BUSY)
    if slot is None:
        return
    async with (
        contained(gate, stream, "connections", slot),
        trio.open_nursery() as nursery,  # hosts trio-websocket's reader task
    ):
        await _serve(gate, stream, nursery, slot)
        nursery.cancel_scope.cancel()


async def take_slot(gate: Gate, stream: trio.abc.Stream, busy: bytes) -> Slot | None:
    """Every door's first step, before anything is parsed: a place among MAX_CONNECTIONS and
    MAX_HANDSHAKES_PER_IP, or ``busy`` written and the stream closed (None).  A flood of silent
    connections then costs one accept and one close each, not a file descriptor and two tasks
    for the handshake timeout."""
    ip = peer_address(stream)
    refused = gate.slots.open(ip)
    if refused is None:
        return Slot(gate.slots, ip)
    gate.metrics.inc("connections_refused", reason=refused)
    with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError):
        await stream.send_all(busy)  # a fresh socket's send buffer is empty: no real wait
    await trio.aclose_forcefully(stream)
    return None


@asynccontextmanager
async def contained(
    gate: Gate, stream: trio.abc.Stream, counted_as: str, slot: Slot
) -> AsyncIterator[None]:
    """Every door's boundary around one TCP connection: counted (``<counted_as>_opened`` and
    ``_closed``), tracked for the drain, any exception logged and swallowed (one escaping a
    handler would end the listener and the server), the stream closed and its slot given back
    whatever happened."""
    gate.metrics.inc(f"{counted_as}_opened")
    gate.tracker.enter()
    try:
        yield
    except* Exception:
        gate.metrics.inc("connection_errors")
        log.exception("connection handler failed; this connection only is dropped")
    finally:
        slot.release()
        gate.metrics.inc(f"{counted_as}_closed")
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
        gate.tracker.leave()


@attrs.define
class Slot:
    """One connection's hold on the gate's slots: its address's handshake count until the
    handshake is over, and its place in the total until it closes."""

    slots: ConnectionSlots
    ip: str
    handshaking: bool = True

    def handshake_over(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.slots.handshake_over(self.ip)

    def release(self) -> None:
        self.handshake_over()
        self.slots.close()


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


async def _serve(gate: Gate, stream: trio.abc.Stream, nursery: trio.Nursery, slot: Slot) -> None:
    s = gate.settings
    request: WebSocketRequest | None = None
    admission: Admission | Refusal | None = None
    # While draining, a newcomer only needs time to hear its 503.
    timeout_s = s.close_timeout_s if gate.draining else s.handshake_timeout_s
    with trio.move_on_after(timeout_s) as handshake_scope:
        gate.handshakes.add(handshake_scope)
        try:
            request = await _upgrade(gate, stream, nursery)
            if request is None:
                return  # an HTTP API request or an oversized head: answered
            admission = await _authenticate(gate, request)
        finally:
            gate.handshakes.discard(handshake_scope)
            slot.handshake_over()
    if request is None or admission is None:
        gate.metrics.inc("handshakes_abandoned" if gate.draining else "handshakes_timed_out")
        return
    if isinstance(admission, Refusal):
        await _refuse(gate, request, admission)
        return
    if admission.deprecated_path:
        log.warning(
            "deprecated endpoint /api/ws/{player_id} used by player %s", admission.record.player_id
        )
    ws = await _accept(gate, request, admission)
    # trio-websocket's request holds the upgrade's headers: not to be kept for the socket's life.
    del request
    if ws is not None:
        await _admit(gate, ws, admission)


async def _upgrade(
    gate: Gate, stream: trio.abc.Stream, nursery: trio.Nursery
) -> WebSocketRequest | None:
    """The request's head read and, for a WebSocket upgrade, handed to trio-websocket as if
    nobody had looked; None once an HTTP API request or an oversized head is answered.  In a
    function of its own so that the head (bytes and parser) is freed when the upgrade starts,
    not held by the caller's frame for the socket's life."""
    s = gate.settings
    head = await read_head(stream)
    if head.oversized:
        await answer_oversized_head(stream, head, s.close_timeout_s, gate.metrics)
        return None
    if head.for_http_api:
        await gate.http_api.serve(stream, head)
        return None
    return await wrap_server_stream(nursery, head.replay(stream), s.transport_max_bytes)


async def _accept(
    gate: Gate, request: WebSocketRequest, admission: Admission
) -> _ServerConnection | None:
    """The upgrade accepted, unless the hub refuses the player at once (None: refused)."""
    refusal = gate.hub.precheck(admission.record.player_id, admission.session_id)
    if refusal is not None:
        await _refuse(gate, request, refusal)
        return None
    ws = await request.accept(subprotocol=admission.subprotocol)
    assert isinstance(ws, _ServerConnection)  # made by wsio.wrap_server_stream
    forget_handshake(ws)
    return ws


async def _admit(gate: Gate, ws: _ServerConnection, admission: Admission) -> None:
    """An accepted socket joins the game (or is closed, if the world changed meanwhile)."""
    hub = gate.hub
    fresh = await _as_of_now(gate, admission)
    if fresh is None:
        await _close_accepted(gate, ws, admission, *INTERNAL_ERROR)
        return
    record, mutes = fresh
    if gate.draining:  # the drain began while this handshake waited on the store
        await _close_accepted(gate, ws, admission, *SHUTTING_DOWN)
        return
    if record.banned_at(time.time()):  # an admin's ban committed while this handshake waited
        banned = handshake.banned(record.banned_until)
        await _close_accepted(gate, ws, admission, banned.close_code, banned.close_reason)
        return
    socket = hub.new_socket(record.player_id, admission.session_id)
    try:
        refusal = hub.admit(record, socket, admission.resume_from, mutes)
    except Exception:
        # A fault in the hub's admission: this player gets 1011 and their presence, if it
        # started, its grace (the socket was registered first); nobody else is affected.
        gate.metrics.inc("connection_errors")
        log.exception("admission of player %s failed", record.player_id)
        hub.detach(socket)
        await _close_accepted(gate, ws, admission, *INTERNAL_ERROR)
        return
    if refusal is not None:  # the world changed while we accepted
        await _close_accepted(gate, ws, admission, refusal.close_code, refusal.close_reason)
        return
    gate.metrics.inc("sockets_admitted")
    log_event(
        log,
        "login",
        player=record.name,
        player_id=record.player_id,
        session=admission.session_id,
        peer=admission.peer,
        instance=gate.settings.instance_id,
        resumed=admission.resume_from is not None,
    )
    try:
        connection = Connection(
            ws,
            socket,
            gate.hub,
            gate.settings,
            gate.secret,
            admission.token,
            admission.verified,
            gate.metrics,
            player_name=record.name,
        )
        await connection.run()
    finally:
        hub.detach(socket)  # idempotent; covers a failure before run() took over


async def _as_of_now(gate: Gate, admission: Admission) -> tuple[PlayerRecord, MuteRecords] | None:
    """The player's record and mutes as the store has them now (None: it is too slow).

    What changed after the handshake read them is in neither what it read nor the hub's memory
    once a new presence starts: an admin's mute_global of this player (the admin was told it is
    in force), or a move or mute made from a socket whose presence has ended since (the player
    would start in the room they left).  So read again until nothing changed meanwhile; no await
    then separates this from admit.
    """
    return await fresh_player_state(gate, admission.record, admission.mutes, admission.version)


async def fresh_player_state(
    gate: Gate, record: PlayerRecord, mutes: MuteRecords, version: int
) -> tuple[PlayerRecord, MuteRecords] | None:
    """:func:`_as_of_now` for any door (the telnet login too): ``record`` and ``mutes`` were
    read after ``version``; read again while the hub says they may be stale."""
    with trio.move_on_after(gate.settings.handshake_timeout_s):
        while gate.hub.changed_since(record.player_id, version):
            version = gate.hub.version()
            fresh = await gate.writer.read_after_writes(
                gate.store.backend.get_player, record.player_id
            )
            record = fresh if fresh is not None else record
            mutes = await load_mutes(gate, record.player_id)
        return record, mutes
    return None


async def _refuse(gate: Gate, request: WebSocketRequest, refusal: Refusal) -> None:
    """HTTP status + JSON body; or, for browsers (``Origin`` present), accept then close 4xxx."""
    gate.metrics.inc("handshakes_refused", status=str(refusal.status))
    headers = _headers(request)
    as_close = "origin" in headers and refusal is not handshake.NOT_FOUND_PATH
    _log_refusal(
        gate,
        refusal.status,
        refusal.close_code if as_close else None,
        refusal.message,
        _client_ip(request, headers, gate.settings.trusted_proxies),
        path=request.path.split("?", 1)[0],  # never the query: it may carry the token
    )
    if as_close:
        offered = handshake.choose_token(request.proposed_subprotocols, {}).subprotocol
        ws = await request.accept(subprotocol=offered)
        await _bounded_close(
            ws, refusal.close_code, refusal.close_reason, gate.settings.close_timeout_s
        )
        return
    await request.reject(refusal.status, extra_headers=refusal.headers(), body=refusal.body())


def _log_refusal(
    gate: Gate,
    status: int | None,
    close_code: int | None,
    reason: str,
    peer: str,
    **where: str,
) -> None:
    budget = (gate.refusal_lines, trio.current_time())
    log_event(
        log,
        "handshake_refused",
        budget,
        status=status,
        close_code=close_code,
        reason=reason,
        peer=peer,
        **where,
    )


async def _close_accepted(
    gate: Gate, ws: WebSocketConnection, admission: Admission, code: int, reason: str
) -> None:
    """A socket accepted, then refused before it joined the game: logged like a refusal."""
    _log_refusal(gate, None, code, reason, admission.peer, player_id=admission.record.player_id)
    await _bounded_close(ws, code, reason, gate.settings.close_timeout_s)


async def _bounded_close(ws: WebSocketConnection, code: int, reason: str, timeout_s: float) -> None:
    with trio.move_on_after(timeout_s):
        await ws.aclose(code, reason)


def _headers(request: WebSocketRequest) -> Mapping[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}


def _client_ip(
    request: WebSocketRequest, headers: Mapping[str, str], trusted_proxies: tuple[str, ...]
) -> str:
    peer = address_of(request.remote)
    return handshake.client_ip(peer, headers.get("x-forwarded-for"), trusted_proxies)


async def _authenticate(gate: Gate, request: WebSocketRequest) -> Admission | Refusal:
    s = gate.settings
    now = trio.current_time()
    if gate.draining:
        return handshake.DRAINING
    endpoint = handshake.route(request.path)
    if endpoint is None:
        return handshake.NOT_FOUND_PATH
    headers = _headers(request)
    origin = headers.get("origin")
    if s.allowed_origins and origin is not None and origin not in s.allowed_origins:
        return handshake.ORIGIN_NOT_ALLOWED
    ip = _client_ip(request, headers, s.trusted_proxies)
    if not gate.ip_attempts.allow(ip, now):
        return handshake.too_many_attempts(gate.ip_attempts.retry_after(ip, now))
    choice = handshake.choose_token(request.proposed_subprotocols, endpoint.query)
    if choice.token is None:
        return handshake.MISSING_TOKEN
    try:
        verified = verify_with_settings(choice.token, gate.secret, s)
    except TokenError as exc:
        return handshake.unauthorized(str(exc))
    session_id = endpoint.query.get("session_id")
    if session_id is not None and len(session_id) > s.max_session_id_chars:
        return handshake.BAD_SESSION_ID
    version = gate.hub.version()  # before the reads: see _as_of_now
    found = await _resolve_player(gate, verified.user_id, endpoint.query.get("character_id"))
    if isinstance(found, Refusal):
        return found
    resolved, mutes = found
    if resolved.banned_at(time.time()):
        return handshake.banned(resolved.banned_until)
    if endpoint.path_player_id is not None and endpoint.path_player_id != resolved.player_id:
        return handshake.PLAYER_MISMATCH
    # Before the attempt is counted: a client retrying a retired session must not lock out
    # the player's next real login (v1.1 section 3).
    retired = gate.hub.retired_refusal(resolved.player_id, session_id)
    if retired is not None:
        return retired
    if not gate.player_attempts.allow(resolved.player_id, now):
        return handshake.too_many_attempts(
            gate.player_attempts.retry_after(resolved.player_id, now)
        )
    resume_from = _int_or_none(endpoint.query.get("resume_from"))
    return Admission(
        resolved,
        choice.token,
        verified,
        choice.subprotocol,
        session_id,
        endpoint.deprecated,
        resume_from,
        mutes,
        version,
        ip,
    )


async def load_mutes(gate: Gate, player_id: str) -> MuteRecords:
    return await gate.writer.read_after_writes(
        gate.store.backend.load_mutes, player_id, time.time()
    )


def _int_or_none(raw: str | None) -> int | None:
    """``resume_from`` that is not a number is ignored: the client gets the normal burst."""
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


async def _resolve_player(
    gate: Gate, user_id: str, character_id: str | None
) -> tuple[PlayerRecord, MuteRecords] | Refusal:
    """Section 2 player resolution: the named character, else the user's oldest active player;
    with the player's mutes, which the hub installs when a presence starts.

    Read after pending writes: a player who just moved and quit comes back in the new room.
    """
    store, read = gate.store.backend, gate.writer.read_after_writes
    if character_id:
        wanted = handshake.parse_character_id(character_id)
        if wanted is not None:
            record, mutes = await read(_with_mutes, store, store.get_player, str(wanted))
            if record is None or mutes is None or record.deleted:
                return handshake.CHARACTER_NOT_FOUND
            if record.user_id != user_id:
                return handshake.CHARACTER_FORBIDDEN
            return record, mutes
    first, mutes = await read(_with_mutes, store, store.first_active_player, user_id)
    return handshake.NO_PLAYER if first is None or mutes is None else (first, mutes)


def _with_mutes(
    store: Backend, find: Callable[[str], PlayerRecord | None], key: str
) -> tuple[PlayerRecord | None, MuteRecords | None]:
    """A player and their mutes in one worker-thread call: a handshake's store reads cost one
    trip to a worker thread instead of two (issue 12: handshakes/s)."""
    record = find(key)
    if record is None:
        return None, None
    return record, store.load_mutes(record.player_id, time.time())
