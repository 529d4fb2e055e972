"""One admitted socket: a nursery whose members live and die together.

    receiving      trio-websocket's reader task hands each message to :meth:`Connection._take`
                   (frames in → rate limit → validation → hub, or a per-socket reply); the
                   reader already waits for one message at a time, so a receive loop task of
                   our own would only add a task switch and a channel per frame
    sender         started on demand: writes what the broadcaster could not (a full kernel
                   buffer: waits for the socket), draining the outbox in one write, and performs
                   closes; it ends when nothing is left for it
    timer          the nursery's own body, asleep until the earliest of its deadlines, one task
                   for four duties:
                   - no data frame for IDLE_TIMEOUT_S → close 4001
                   - ping every PING_INTERVAL_S (sent by a short-lived task, so a write stuck
                     behind a full buffer delays nothing else); no pong within PING_TIMEOUT_S
                     → drop
                   - token_expiring before ``exp``; close 4401 at ``exp`` unless refreshed
                   - close watchdog: a requested close that cannot finish (peer not reading)
                     is cut off 2 × CLOSE_TIMEOUT_S after it was requested

An idle socket therefore holds two tasks: trio-websocket's reader and the timer (issue 12:
memory per idle socket; there used to be five).

Whoever ends the connection cancels the nursery; ``finally`` then tells the hub the socket is
gone.  ``Hub.detach`` is synchronous, so no cancellation can skip it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import attrs
import trio
from trio_websocket import ConnectionClosed

from mythos_rt.core import protocol
from mythos_rt.core.protocol import FrameLimits
from mythos_rt.core.ratelimit import FrameGuard, FrameRefusal
from mythos_rt.runtime.hub import Hub, SocketHandle
from mythos_rt.runtime.logs import REPORT_LINES, REPORT_WINDOW_S, LineBudget, log_event
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.tokens import TokenError, VerifiedToken, verify_with_settings
from mythos_rt.runtime.wsio import (
    _ServerConnection,
    send_close_and_hang_up,
    text_frame,
    write_frames,
)
from mythos_rt.settings import Settings

log = logging.getLogger(__name__)

INTERNAL_ERROR = (1011, "Internal error")
IDLE = (4001, "Connection cleaned up")
POLICY = (1008, "Policy violation")
TOKEN_EXPIRED = (4401, "Token expired")


def frame_guard(settings: Settings) -> FrameGuard:
    s = settings
    return FrameGuard(s.frame_rate_limit, s.frame_rate_window_s, s.abuse_close_after)


def refuse_frame(
    refusal: FrameRefusal, socket: SocketHandle, metrics: Metrics, settings: Settings
) -> None:
    """A frame (or telnet line) over the limit: the error frame with the wait, or close 1008."""
    metrics.inc("frames_rate_limited")
    if refusal.close:
        socket.outbox.close(*POLICY)
        return
    error = protocol.rate_limit_error(refusal.retry_after_s, settings.frame_rate_limit)
    metrics.inc("error_frames_sent")
    socket.outbox.put(text_frame(error.to_json(socket.player_id)))


def token_refresh_error(reason: str) -> protocol.FrameError:
    return protocol.FrameError(
        "message_processing_error",
        f"Token refresh failed: {reason}",
        "Your session could not be refreshed. Please log in again.",
        {"error_type": "token_refresh_failed"},
    )


@attrs.define
class TimerState:
    """What the timer task goes by (math.inf: no such deadline).  In one slotted object: it
    keeps Connection under CPython's 30 attributes for a compact, key-sharing instance dict
    (past that, every connection's dict costs over 1 KB more)."""

    token_deadline: float  # the token's ``exp`` in trio time
    next_ping: float
    last_frame_at: float  # idle: no data frame for IDLE_TIMEOUT_S
    pong_due: float = math.inf  # the ping in flight must have its pong by then
    close_by: float = math.inf  # the watchdog's deadline, once a close is requested
    token_warned: bool = False  # token_expiring sent for the current deadline
    token_expired: bool = False  # close 4401 requested
    nap: trio.CancelScope = attrs.field(factory=trio.CancelScope)  # cancelled: look again


class Connection:
    def __init__(
        self,
        ws: _ServerConnection,
        socket: SocketHandle,
        hub: Hub,
        settings: Settings,
        secret: str,
        token: str,
        verified: VerifiedToken,
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
        *,
        player_name: str | None = None,  # for the disconnect log line
    ) -> None:
        self._ws = ws
        self._socket = socket
        self._hub = hub
        self._settings = settings
        self._secret = secret
        self._metrics = metrics
        # Bound once: these are updated per frame and per write.
        self._frames_received = metrics.counter("frames_received")
        self._bytes_sent = metrics.counter("bytes_sent")
        self._fanout_lag = metrics.histogram("fanout_lag_seconds")
        self._wall_clock = wall_clock
        self._user_id = verified.user_id
        self._csrf_tokens = {token}
        self._original_token = token
        now = trio.current_time()
        self._timer = TimerState(
            token_deadline=self._trio_deadline(verified.expires_at),
            next_ping=now + settings.ping_interval_s,
            last_frame_at=now,
        )
        self._limits = FrameLimits(
            settings.max_frame_bytes, settings.max_depth, settings.max_string_chars
        )
        self._frame_guard = frame_guard(settings)
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None  # while run() has it open: senders, pings
        self._crashed = False
        self._dropped = False  # heartbeat lost: no closing handshake with a dead peer
        self._torn = False  # a write was cancelled midway: nothing more may be written
        self._started_at = trio.current_time()
        self._player_name = player_name
        self._report_lines = LineBudget(REPORT_LINES, REPORT_WINDOW_S)

    async def run(self) -> None:
        outbox = self._socket.outbox
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    try:
                        self._ws.attach(outbox, self._take, self._peer_gone)
                        outbox.start_sender_on_demand(self._start_sender, self._wake_timer)
                        await self._keep_time(nursery)
                    finally:
                        # The body ends only when the connection does.  From here the nursery
                        # may close (its last child done) before this task resumes, and
                        # another socket's reader or the broadcaster may still flush this
                        # outbox meanwhile: no sender may be started into it.
                        self._nursery = None
                        outbox.stop_sender_on_demand()
        except* Exception:
            self._crash()
        finally:
            self._ws.stop_delivering()
            self._hub.detach(self._socket)
            await self._final_close()
            self._log_disconnect()

    def _crash(self) -> None:
        """A fault in this connection's own code: 1011 for this socket, nobody else affected."""
        self._crashed = True
        self._metrics.inc("connection_errors")
        log.exception("connection of player %s failed", self._socket.player_id)
        self._end()

    def _log_disconnect(self) -> None:
        """One INFO line and a count per ended socket, with the close code both sides saw."""
        closed = None if self._dropped else self._ws.closed
        code = 1006 if closed is None else closed.code
        reason = "no close frame" if closed is None else closed.reason or ""
        requested = self._socket.outbox.closing
        if self._dropped or closed is None:
            by = "network"
        else:
            by = "server" if requested is not None or self._crashed else "client"
        self._metrics.inc("socket_closes", code=str(code))
        log_event(
            log,
            "disconnect",
            player=self._player_name,
            player_id=self._socket.player_id,
            session=self._socket.session_id,
            code=code,
            reason=reason,
            by=by,
            duration_s=round(trio.current_time() - self._started_at, 1),
        )

    def _end(self) -> None:
        self._scope.cancel()

    def _peer_gone(self) -> None:
        """The socket stopped working under us.  If we are closing it ourselves, the sender is
        waiting for the peer's close reply (bounded by the watchdog): ending now would drop TCP
        under our own close frame, and a peer still sending would get a reset instead of it."""
        if self._socket.outbox.closing is None:
            self._end()

    async def _final_close(self) -> None:
        """Say goodbye properly when the connection ended without a close handshake."""
        if self._ws.closed is not None or self._dropped or self._torn:
            return
        if self._socket.outbox.mid_frame:
            return  # the broadcaster's last write stopped inside a frame: hang up, say nothing
        code, reason = INTERNAL_ERROR if self._crashed else (1001, "Server shutting down")
        if self._socket.outbox.closing is not None and not self._crashed:
            return  # a requested close that timed out: the peer is not reading, just drop it
        # Cancelled from outside, trio-websocket's reader (in the gate's nursery) is cancelled
        # too and could never take the peer's reply: send the close frame and hang up.
        reader_gone = trio.current_effective_deadline() == -math.inf
        with trio.move_on_after(self._settings.close_timeout_s) as scope:
            scope.shield = True
            if reader_gone:
                await send_close_and_hang_up(self._ws, code, reason)
            else:
                await self._ws.aclose(code, reason)

    # --- receiving -------------------------------------------------------------------------

    def _take(self, raw: str | bytes) -> None:
        """A message from the peer, handed over by trio-websocket's reader task."""
        if self._scope.cancel_called:
            return  # ending (no pong, a failed write): the reader is not in our cancel scope
        try:
            self._timer.last_frame_at = trio.current_time()  # the idle deadline moves on
            self._frames_received.inc()
            self._on_frame(raw)
            # Whatever the frame led to (a command's events, a pong, an error frame) leaves now,
            # before the reader yields, unless its socket is inside its broadcaster interval.
            self._hub.flush_ready()
        except Exception:
            self._ws.stop_delivering()  # nothing more is acted upon; the close follows
            self._crash()

    def _on_frame(self, raw: str | bytes) -> None:
        if self._socket.outbox.closing is not None:
            # We asked this socket to close (token expired, kicked, superseded, too slow, ...):
            # what the client says while the close handshake runs is not acted upon.
            self._metrics.inc("frames_after_close")
            return
        refusal = self._frame_guard.check(trio.current_time())
        if refusal is not None:
            refuse_frame(refusal, self._socket, self._metrics, self._settings)
            return
        csrf = self._csrf_tokens if self._settings.require_csrf else None
        message = protocol.decode_client_frame(raw, self._limits, csrf)
        if isinstance(message, protocol.FrameError):
            self._send_error(message)
            return
        self._dispatch(message)

    def _dispatch(self, message: protocol.ClientMessage) -> None:
        hub, socket = self._hub, self._socket
        match message:
            case protocol.GameCommand(command=command, args=args):
                hub.handle_command(socket, command, args)
            case protocol.Chat(message=text):
                hub.handle_command(socket, "say", (text,))
            case protocol.Ping():
                hub.send_to_socket(socket, "pong", {})
            case protocol.RefreshToken(token=token):
                self._refresh_token(token)
            case protocol.FollowResponse() | protocol.PartyInviteResponse():
                hub.handle_response(socket, message)
            case protocol.ClientErrorReport():
                # Client text: log_event escapes and truncates it (it once forged log lines).
                log_event(
                    log,
                    "client_error_report",
                    (self._report_lines, trio.current_time()),
                    player_id=socket.player_id,
                    error_type=message.error_type,
                    error_message=message.message,
                )

    def _send_error(self, error: protocol.FrameError) -> None:
        self._metrics.inc("error_frames_sent")
        self._socket.outbox.put(text_frame(error.to_json(self._socket.player_id)))

    # --- token refresh and expiry ----------------------------------------------------------

    def _trio_deadline(self, expires_at: float) -> float:
        # Wall-clock exp converted once to trio time, so the mock clock drives expiry in tests.
        return trio.current_time() + (expires_at - self._wall_clock())

    def _refresh_token(self, token: str) -> None:
        try:
            verified = verify_with_settings(token, self._secret, self._settings)
            if verified.user_id != self._user_id:
                raise TokenError("Token belongs to another user")
        except TokenError as exc:
            self._send_error(token_refresh_error(str(exc)))
            return
        # The original token and the latest refreshed one are both valid CSRF tokens.
        self._csrf_tokens = {self._original_token, token}
        self._timer.token_deadline = self._trio_deadline(verified.expires_at)
        self._timer.token_warned = False
        self._timer.nap.cancel()  # the new deadline may come before the timer's next wake-up
        expires = protocol.format_timestamp(verified.expires_at)
        self._hub.send_to_socket(self._socket, "token_refreshed", {"expires_at": expires})

    def _check_token(self, now: float) -> None:
        """token_expiring from TOKEN_WARNING_S before ``exp``; close 4401 at ``exp``."""
        timer = self._timer
        if timer.token_expired:
            return
        deadline = timer.token_deadline
        if now >= deadline:
            timer.token_expired = True
            self._socket.outbox.close(*TOKEN_EXPIRED)
        elif now >= deadline - self._settings.token_warning_s and not timer.token_warned:
            timer.token_warned = True
            expires = self._wall_clock() + (deadline - now)
            self._hub.send_to_socket(
                self._socket, "token_expiring", {"expires_at": protocol.format_timestamp(expires)}
            )

    def _next_token_check(self) -> float:
        timer = self._timer
        if timer.token_expired:
            return math.inf
        if timer.token_warned:
            return timer.token_deadline
        return timer.token_deadline - self._settings.token_warning_s

    # --- sending, liveness, closing --------------------------------------------------------

    def _start_sender(self) -> None:
        """The outbox needs a sender (see Outbox.start_sender_on_demand); none once the
        connection is ending (its nursery may already be closed to new tasks)."""
        if self._nursery is not None and not self._scope.cancel_called:
            self._nursery.start_soon(self._send_loop, name="sender")

    async def _send_loop(self) -> None:
        outbox = self._socket.outbox
        try:
            while (batch := await outbox.take_batch()) is not None:
                data, close, queued_at = batch
                if data:
                    self._fanout_lag.observe(trio.current_time() - queued_at)
                    await self._write(data)
                del data, batch  # not kept by a sender that waits for the close below
                if close is not None:
                    await self._ws.aclose(close.code, close.reason)
                    self._end()
                    return
        except ConnectionClosed:
            # A failed write means the transport is gone: no closing handshake to attempt.
            self._dropped = self._ws.closed is None
            self._end()

    async def _write(self, data: bytes) -> None:
        try:
            await write_frames(self._ws, data)
        except trio.Cancelled:
            # Possibly stopped inside a frame: any byte written after it (our close frame)
            # would be read as the rest of that frame, so this socket only gets hung up on.
            self._torn = True
            raise
        self._bytes_sent.inc(len(data))

    async def _keep_time(self, nursery: trio.Nursery) -> None:
        """The timer: every duty whose deadline has come, then asleep until the next one (or
        until a close is requested: the watchdog's clock starts then)."""
        timer = self._timer
        while True:
            now = trio.current_time()
            if now >= timer.close_by:
                self._end()  # a requested close that did not finish in time
                return
            if now >= timer.pong_due:
                self._heartbeat_lost()
                return
            self._check_token(now)
            if now >= self._idle_deadline():
                self._socket.outbox.close(*IDLE)
            if timer.pong_due == math.inf and now >= timer.next_ping:
                timer.pong_due = now + self._settings.ping_timeout_s
                nursery.start_soon(self._ping, name="ping")
            # Armed here, after this pass's duties: the idle and token closes just requested
            # count too (their on_closing call found this task awake, with no nap to cancel).
            if timer.close_by == math.inf and self._socket.outbox.closing is not None:
                timer.close_by = now + 2 * self._settings.close_timeout_s
            await self._sleep_until(self._next_wake())

    def _next_wake(self) -> float:
        timer = self._timer
        next_ping = timer.next_ping if timer.pong_due == math.inf else math.inf
        return min(
            timer.close_by,
            timer.pong_due,
            next_ping,
            self._next_token_check(),
            self._idle_deadline(),
        )

    def _idle_deadline(self) -> float:
        if self._socket.outbox.closing is not None:
            return math.inf  # closing already: being idle changes nothing
        return self._timer.last_frame_at + self._settings.idle_timeout_s

    async def _sleep_until(self, wake_at: float) -> None:
        """Until ``wake_at``, a token refresh or a close request (both cancel the nap)."""
        self._timer.nap = trio.CancelScope(deadline=wake_at)
        with self._timer.nap:
            await trio.sleep_forever()

    def _wake_timer(self) -> None:
        """A close was requested: the watchdog's clock starts now."""
        self._timer.nap.cancel()

    async def _ping(self) -> None:
        """One ping and its pong, in a short-lived task: a ping written behind a full send
        buffer must not hold up the token's deadlines or the close watchdog."""
        try:
            await self._ws.ping()
        except ConnectionClosed:
            self._peer_gone()
            return
        self._timer.pong_due = math.inf
        self._timer.next_ping = trio.current_time() + self._settings.ping_interval_s

    def _heartbeat_lost(self) -> None:
        self._metrics.inc("heartbeat_timeouts")
        log.info("no pong from player %s: dropping the socket", self._socket.player_id)
        self._dropped = True
        self._end()
