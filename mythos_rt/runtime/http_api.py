"""The HTTP API on the game port (PROTOCOL.md section 18): the I/O around :mod:`core.http_api`.

The gate reads every new connection's request head first (:func:`read_head`).  An HTTP API
request is answered here, one request per connection (``Connection: close``); anything else is
handed to trio-websocket with the bytes already read replayed in front of the stream, so the
WebSocket handshake sees exactly what the client sent.  The gate's handshake timeout bounds
the whole exchange.

Passwords and tokens are never logged.  Password hashing is slow on purpose, so it runs in
worker threads behind a small limiter, never on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import ParamSpec, TypeVar

import attrs
import h11
import trio

from mythos_rt.core import handshake
from mythos_rt.core import http_api as api
from mythos_rt.core.http_api import ApiResponse
from mythos_rt.core.mythos_clock import game_time_payload
from mythos_rt.core.passwords import (
    DUMMY_HASH,
    hash_password,
    new_salt,
    password_problem,
    verify_password,
)
from mythos_rt.runtime.hub import Hub
from mythos_rt.runtime.logs import REFUSAL_LINES, REFUSAL_WINDOW_S, LineBudget, log_event
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.persistence import StoreWriter
from mythos_rt.runtime.store import (
    DuplicateName,
    InvalidInvite,
    PlayerRecord,
    Store,
    StoreError,
    TransientStoreError,
)
from mythos_rt.runtime.tokens import (
    TokenError,
    accepted_algorithms,
    issue_token,
    verify_with_settings,
)
from mythos_rt.runtime.wsio import ReplayStream, peer_address
from mythos_rt.settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# h11's default, which wsproto uses too: a head larger than this fails the upgrade either way.
HEAD_MAX_BYTES = 16 * 1024
RECEIVE_BYTES = 65536
# Password hashes running at once (each takes about 16 MiB and 50 ms of one core).
HASH_THREADS = 2
# What a client may still send after its answer (a refused body) before we hang up anyway.
LINGER_MAX_BYTES = 1 << 20


@attrs.frozen
class Head:
    """A connection's first bytes: the parsed request head, when there is one."""

    data: bytes  # everything read so far, for a replay to trio-websocket
    conn: h11.Connection
    request: h11.Request | None
    oversized: bool = False  # the head outgrew HEAD_MAX_BYTES before it was complete

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.request is None else api.header_map(self.request.headers)

    @property
    def for_http_api(self) -> bool:
        if self.request is None:
            return False
        return api.wants_http_api(self.request.target.decode("latin-1"), self.headers)

    def replay(self, stream: trio.abc.Stream) -> ReplayStream:
        return ReplayStream(stream, self.data)


async def read_head(stream: trio.abc.Stream) -> Head:
    """Read until a request head is complete, the client stops, or h11 gives up on it."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_MAX_BYTES)
    data = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            # Too large: answered by answer_oversized_head.  Malformed: trio-websocket answers
            # it, as it always did.
            return Head(bytes(data), conn, None, oversized=len(data) > HEAD_MAX_BYTES)
        if isinstance(event, h11.Request):
            # A head that arrived whole in one read passes here but not in trio-websocket,
            # which reads it in pieces under the same limit.
            return Head(bytes(data), conn, event, oversized=_head_length(data) > HEAD_MAX_BYTES)
        if event is not h11.NEED_DATA:
            return Head(bytes(data), conn, None)
        try:
            chunk = await stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            chunk = b""  # a reset: trio-websocket meets it again and ends quietly, as before
        if not chunk:
            return Head(bytes(data), conn, None)
        data += chunk
        conn.receive_data(bytes(chunk))


def _head_length(data: bytearray) -> int:
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 4


@attrs.frozen
class ApiCall:
    """One routed request: what a route handler gets."""

    headers: Mapping[str, str]
    body: bytes
    ip: str
    params: Mapping[str, str]


Handler = Callable[[ApiCall], Awaitable[ApiResponse]]


@attrs.frozen
class LoginRefused:
    """A failed password check: wrong credentials (None), or throttled for this many seconds."""

    retry_after_s: float | None


@attrs.frozen
class LoginBanned:
    """The right password of a banned player: refused, whichever door they came to."""

    banned_until: float | None  # None: for good


@attrs.define(eq=False)
class HttpApi:
    """The routes of section 18; shares the gate's store, hub and settings."""

    settings: Settings
    secret: str
    store: Store
    hub: Hub
    writer: StoreWriter
    metrics: Metrics
    draining: Callable[[], bool]
    throttle: api.LoginThrottle = attrs.field(init=False)
    _hash_limiter: trio.CapacityLimiter = attrs.field(init=False)
    _handlers: dict[str, Handler] = attrs.field(init=False)
    _refusal_lines: LineBudget = attrs.field(
        init=False, factory=lambda: LineBudget(REFUSAL_LINES, REFUSAL_WINDOW_S)
    )

    def __attrs_post_init__(self) -> None:
        s = self.settings
        self.throttle = api.LoginThrottle(
            s.login_rate_name, s.login_rate_name_window_s, s.login_rate_ip, s.login_rate_ip_window_s
        )
        self._hash_limiter = trio.CapacityLimiter(HASH_THREADS)
        self._handlers = {
            "login": self._login,
            "register": self._register,
            "refresh": self._refresh,
            "characters": self._characters,
            "select_character": self._select_character,
            "start_grace": self._start_grace,
            "game_time": self._game_time,
            "command": self._command,
            "health": self._health,
        }

    async def serve(self, stream: trio.abc.Stream, head: Head) -> None:
        """Answer the request of ``head`` and wind the connection down; never raises for a
        client that misbehaves or vanishes."""
        assert head.request is not None
        headers = head.headers
        try:
            try:
                response = await self._answer(stream, head.conn, head.request, headers)
            except h11.RemoteProtocolError:
                response = api.BAD_REQUEST
            if response is None:
                return  # the client left before its body was complete
            cors = api.cors_headers(headers.get("origin"), self.settings.allowed_origins)
            response = response.with_headers(cors)
            self.metrics.inc("http_api_responses", status=str(response.status))
            if response.status >= 400:
                budget = (self._refusal_lines, trio.current_time())
                _log_refusal(head, response, self._client_ip(stream, headers), budget)
            await stream.send_all(_encode(head.conn, response))
            await _linger(stream, self.settings.close_timeout_s)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _answer(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        request: h11.Request,
        headers: Mapping[str, str],
    ) -> ApiResponse | None:
        method = request.method.decode("ascii", "replace")
        if api.origin_refused(headers.get("origin"), self.settings.allowed_origins):
            return api.ORIGIN_NOT_ALLOWED
        found = api.match(method, request.target.decode("latin-1"))
        if found.name is None:
            return _unrouted(method, found.allowed)
        if self.draining():
            return api.UNHEALTHY if found.name == "health" else api.DRAINING
        body = await _read_body(stream, conn, headers)
        if not isinstance(body, bytes):
            return body
        call = ApiCall(headers, body, self._client_ip(stream, headers), found.params)
        try:
            return await self._handlers[found.name](call)
        except StoreError as exc:
            log.warning("HTTP API %s: store unavailable: %s", found.name, exc)
            return api.STORE_UNAVAILABLE

    def _client_ip(self, stream: trio.abc.Stream, headers: Mapping[str, str]) -> str:
        forwarded = headers.get("x-forwarded-for")
        return handshake.client_ip(
            peer_address(stream), forwarded, self.settings.trusted_proxies
        )

    # --- routes ---------------------------------------------------------------------------------

    async def _login(self, call: ApiCall) -> ApiResponse:
        creds = api.parse_credentials(call.body)
        if isinstance(creds, ApiResponse):
            return creds
        checked = await self.check_password(creds.username, creds.password, call.ip)
        if isinstance(checked, LoginRefused):
            if checked.retry_after_s is None:
                return api.INVALID_CREDENTIALS
            log.info("HTTP login refused: too many failed attempts (client %s)", call.ip)
            return api.too_many_logins(checked.retry_after_s)
        if isinstance(checked, LoginBanned):
            return api.banned(checked.banned_until)
        return await self._signed_in(checked.user_id)

    async def check_password(
        self, username: str, password: str, ip: str
    ) -> PlayerRecord | LoginRefused | LoginBanned:
        """The player this name and password log in as, or why not.  The one credential check
        of the server: the HTTP login and the telnet prompt both call it, and failures count
        against the same throttle (per name and per client address) whichever door they use."""
        wait_s = self.throttle.retry_after(username, ip, trio.current_time())
        if wait_s > 0:
            return LoginRefused(wait_s)
        backend = self.store.backend
        found = await self.store.call(backend.password_hash_by_name, username)
        # An unknown name is checked against a dummy hash: the same answer in the same time.
        stored = DUMMY_HASH if found is None else found[1]
        matches = await self._slow(verify_password, password, stored)
        if found is None or not matches:
            self.throttle.failed(username, ip, trio.current_time())
            return LoginRefused(None)
        player = found[0]
        # Only after the password: nobody learns of a ban without knowing the password.
        if player.banned_at(time.time()):
            log.info("login refused: %s is banned (client %s)", player.name, ip)
            return LoginBanned(player.banned_until)
        return player

    async def _register(self, call: ApiCall) -> ApiResponse:
        if not self.settings.registration_open:
            return api.REGISTRATION_CLOSED
        form = api.parse_registration(call.body)
        if isinstance(form, ApiResponse):
            return form
        problem = password_problem(form.password)
        if problem is not None:
            return api.invalid(problem)
        # Wrong invite codes count as failed logins: guessing codes is throttled the same way.
        wait_s = self.throttle.retry_after(form.username, call.ip, trio.current_time())
        if wait_s > 0:
            return api.too_many_logins(wait_s)
        password_hash = await self._slow(hash_password, form.password, new_salt())
        room_id = self.hub.world.start_room_id
        backend = self.store.backend
        try:
            record = await self.store.call(
                backend.register_with_invite,
                form.username,
                password_hash,
                form.invite_code,
                room_id,
            )
        except InvalidInvite:
            self.throttle.failed(form.username, call.ip, trio.current_time())
            return api.INVALID_INVITE
        except DuplicateName:
            return api.NAME_TAKEN
        except TransientStoreError:
            raise
        except StoreError as exc:  # the name rules
            return api.invalid(f"username: {exc}")
        self.hub.learn_players([record])
        log.info("player %s registered with an invite", record.player_id)
        return await self._signed_in(record.user_id)

    async def _refresh(self, call: ApiCall) -> ApiResponse:
        # A page that logged in with a password gets a fresh token before the old one expires,
        # to send as the socket's refresh_token frame (section 13), without asking again.
        user_id = self._bearer(call)
        return user_id if isinstance(user_id, ApiResponse) else await self._signed_in(user_id)

    async def _characters(self, call: ApiCall) -> ApiResponse:
        user_id = self._bearer(call)
        if isinstance(user_id, ApiResponse):
            return user_id
        return api.ok([api.character_record(record) for record in await self._players_of(user_id)])

    async def _select_character(self, call: ApiCall) -> ApiResponse:
        found = self._bearer_and_field(call, "character_id")
        if isinstance(found, ApiResponse):
            return found
        user_id, raw = found
        wanted = handshake.parse_character_id(raw)
        if wanted is None:
            return api.CHARACTER_NOT_FOUND
        record = await self.writer.read_after_writes(self.store.backend.get_player, str(wanted))
        return api.selected_character(user_id, record)

    async def _start_grace(self, call: ApiCall) -> ApiResponse:
        # The login ward starts when the socket connects (section 12): nothing to do but agree.
        user_id = self._bearer(call)
        return user_id if isinstance(user_id, ApiResponse) else api.ok({})

    async def _game_time(self, call: ApiCall) -> ApiResponse:
        return api.ok(game_time_payload(time.time()))

    async def _command(self, call: ApiCall) -> ApiResponse:
        found = self._bearer_and_field(call, "command")
        if isinstance(found, ApiResponse):
            return found
        user_id, command = found
        if not api.is_logout(command):
            return api.UNSUPPORTED_COMMAND
        for record in await self._players_of(user_id):
            self.hub.logout(record.player_id)
        return api.LOGGED_OUT

    async def _health(self, call: ApiCall) -> ApiResponse:
        return api.HEALTHY

    # --- helpers --------------------------------------------------------------------------------

    def _bearer(self, call: ApiCall) -> str | ApiResponse:
        """The user id of the request's bearer token, or the 401 to answer."""
        token = api.bearer_token(call.headers)
        if token is None:
            return api.NOT_AUTHENTICATED
        try:
            return verify_with_settings(token, self.secret, self.settings).user_id
        except TokenError as exc:
            return api.unauthorized(str(exc))

    def _bearer_and_field(self, call: ApiCall, name: str) -> tuple[str, str] | ApiResponse:
        """The bearer's user id and one string field of the body, or the answer refusing them."""
        user_id = self._bearer(call)
        if isinstance(user_id, ApiResponse):
            return user_id
        value = api.parse_one(call.body, name)
        return value if isinstance(value, ApiResponse) else (user_id, value)

    async def _players_of(self, user_id: str) -> list[PlayerRecord]:
        # After pending writes: a player who just moved is listed in the new room.
        return await self.writer.read_after_writes(self.store.backend.players_of_user, user_id)

    async def _signed_in(self, user_id: str) -> ApiResponse:
        s = self.settings
        records = await self._players_of(user_id)
        algorithm = next(iter(accepted_algorithms(s.jwt_algorithms)), "HS256")
        token = issue_token(
            self.secret,
            user_id,
            ttl_s=s.login_token_ttl_s,
            audience=s.jwt_audience,
            now=time.time(),
            algorithm=algorithm,
        )
        return api.ok(api.login_body(token, user_id, records))

    async def _slow(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a password hash in a worker thread (never on the event loop)."""

        def call() -> T:
            return fn(*args, **kwargs)

        return await trio.to_thread.run_sync(call, limiter=self._hash_limiter)


def _log_refusal(
    head: Head, response: ApiResponse, peer: str, budget: tuple[LineBudget, float]
) -> None:
    assert head.request is not None
    body = response.body
    reason = body.get("detail") if isinstance(body, dict) else None
    log_event(
        log,
        "api_refused",
        budget,
        status=response.status,
        reason=reason,
        method=head.request.method.decode("ascii", "replace"),
        path=head.request.target.decode("latin-1").split("?", 1)[0],
        peer=peer,
    )


def _unrouted(method: str, allowed: tuple[str, ...]) -> ApiResponse:
    if not allowed:
        return api.NOT_FOUND
    return api.preflight(allowed) if method == "OPTIONS" else api.method_not_allowed(allowed)


async def _read_body(
    stream: trio.abc.Stream, conn: h11.Connection, headers: Mapping[str, str]
) -> bytes | ApiResponse | None:
    """The request body, at most MAX_BODY_BYTES; 413 beyond; None if the client left."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > api.MAX_BODY_BYTES:
        return api.BODY_TOO_LARGE  # refused before a byte of it is read
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    body = bytearray()
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > api.MAX_BODY_BYTES:
                return api.BODY_TOO_LARGE  # chunked: no length was declared
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        elif event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(RECEIVE_BYTES)))
        else:
            return None


async def answer_oversized_head(
    stream: trio.abc.Stream, head: Head, timeout_s: float, metrics: Metrics
) -> None:
    """A head too large to parse: 401 "Token too large" on the game socket's paths (the token
    is what makes an upgrade that large), 431 elsewhere; as JSON, then wind down.

    No upgrade can be accepted without a parsed head, so a browser sees the socket fail (1006)
    rather than a 4401 close; a client reading HTTP gets the contract's status and body.
    """
    refusal = oversized_head_refusal(head.data)
    metrics.inc("handshakes_refused", status=str(refusal.status))
    answer = _raw_response(refusal.status, refusal.headers(), refusal.body())
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(answer)
        await _linger(stream, timeout_s)


def oversized_head_refusal(data: bytes) -> handshake.Refusal:
    request_line = data.split(b"\r\n", 1)[0].split(b" ")
    target = request_line[1].decode("latin-1") if len(request_line) > 1 else ""
    if handshake.route(target) is not None:
        return handshake.TOKEN_TOO_LARGE
    return handshake.HEAD_TOO_LARGE


def _raw_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """An HTTP/1.1 answer without h11: the head that failed left h11 unable to answer it."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    headers = [
        *headers,
        (b"Content-Length", str(len(body)).encode()),
        (b"Connection", b"close"),
        (b"Cache-Control", b"no-store"),
    ]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _encode(conn: h11.Connection, response: ApiResponse) -> bytes:
    body = response.encoded_body()
    headers = [("connection", "close"), ("cache-control", "no-store"), *response.headers]
    if response.body is not None:
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
    data = conn.send(h11.Response(status_code=response.status, headers=headers))
    if body:
        data += conn.send(h11.Data(data=body))
    return data + conn.send(h11.EndOfMessage())


async def _linger(stream: trio.abc.Stream, timeout_s: float) -> None:
    """Half-close, then read what the client still sends until it hangs up (bounded).

    Closing a TCP socket with unread data in it sends a reset, which can destroy the answer
    on its way to the client: a refused 413 body is exactly such data.
    """
    with trio.move_on_after(timeout_s), contextlib.suppress(trio.BrokenResourceError):
        if isinstance(stream, trio.abc.HalfCloseableStream):
            await stream.send_eof()
        received = 0
        while received < LINGER_MAX_BYTES:
            chunk = await stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                return
            received += len(chunk)
