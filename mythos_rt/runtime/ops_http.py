"""The ops HTTP listener: ``/healthz``, ``/readyz``, ``/metrics`` and the web client at ``/``.

A tiny h11 server: one request per connection, bounded in time and size, so a stuck scraper can
never hold a task for long.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from functools import partial
from importlib import resources

import attrs
import h11
import trio

from mythos_rt.runtime.listen import open_listeners
from mythos_rt.runtime.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
MAX_OPEN_REQUESTS = 64
REQUEST_TIMEOUT_S = 5.0


@attrs.define
class OpsState:
    metrics: Metrics
    ready: Callable[[], bool]
    ws_port: Callable[[], int]
    public_url: str | None = None  # PUBLIC_URL: where browsers reach the game port
    ops_port: int = 0  # this listener's port, set once bound
    open_requests: int = 0


@attrs.frozen
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


# The web client's files: a fixed table, so no request path ever reaches the file system.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/client.css": ("client.css", "text/css; charset=utf-8"),
}
# The page loads only its own files; it may talk to the game port, wherever that is.
PAGE_HEADERS = (
    ("cache-control", "no-cache"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'self'; connect-src 'self' http: https: ws: wss:; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
)


@functools.cache
def _web_file(name: str) -> str:
    # Read once: a file read on the event loop per request would block every connection.
    return resources.files("mythos_rt.web").joinpath(name).read_text(encoding="utf-8")


def web_client_page(ws_port: int, ops_port: int = 0, public_url: str | None = None) -> bytes:
    """index.html with where the game is filled in (the page's script reads these)."""
    page = _web_file("index.html")
    for placeholder, value in (
        ("__GAME_PORT__", str(ws_port)),
        ("__OPS_PORT__", str(ops_port)),
        ("__PUBLIC_URL__", public_url or ""),
    ):
        page = page.replace(placeholder, html.escape(value, quote=True))
    return page.encode()


def _web_response(state: OpsState, path: str) -> Response:
    name, content_type = STATIC_FILES[path]
    if name == "index.html":
        body = web_client_page(state.ws_port(), state.ops_port, state.public_url)
    else:
        body = _web_file(name).encode()
    return Response(200, content_type, body, PAGE_HEADERS)


def route(state: OpsState, method: str, path: str) -> Response:
    path = path.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return Response(405, "text/plain", b"method not allowed\n")
    if path == "/healthz":
        return Response(200, "text/plain", b"ok\n")
    if path == "/readyz":
        ready = state.ready()
        return Response(
            200 if ready else 503, "text/plain", b"ready\n" if ready else b"not ready\n"
        )
    if path == "/metrics":
        return Response(200, CONTENT_TYPE, state.metrics.render().encode())
    if path in STATIC_FILES:
        return _web_response(state, path)
    return Response(404, "text/plain", b"not found\n")


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request):
            return event
        if event is h11.NEED_DATA:
            data = await stream.receive_some(MAX_REQUEST_BYTES)
            if not data:
                return None
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def handle_ops(state: OpsState, stream: trio.abc.Stream) -> None:
    if state.open_requests >= MAX_OPEN_REQUESTS:
        # Over the cap: hang up at once rather than let scrapers exhaust file descriptors
        # the WebSocket listener needs too.
        await trio.aclose_forcefully(stream)
        return
    state.open_requests += 1
    try:
        await _handle_ops(state, stream)
    finally:
        state.open_requests -= 1


async def _handle_ops(state: OpsState, stream: trio.abc.Stream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            request = await _read_request(stream, conn)
            if request is not None:
                response = route(state, request.method.decode(), request.target.decode())
                headers = [
                    ("content-type", response.content_type),
                    ("content-length", str(len(response.body))),
                    ("connection", "close"),
                    *response.headers,
                ]
                await stream.send_all(
                    conn.send(h11.Response(status_code=response.status, headers=headers))
                )
                body = b"" if request.method == b"HEAD" else response.body
                await stream.send_all(
                    conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                )
    except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:
        log.exception("ops HTTP request failed")
    finally:
        await trio.aclose_forcefully(stream)


async def serve_ops(
    state: OpsState,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    listeners = await open_listeners(host, port, "ops_port")
    bound = listeners[0].socket.getsockname()[1]
    state.ops_port = bound
    task_status.started(bound)
    await trio.serve_listeners(partial(handle_ops, state), listeners)
