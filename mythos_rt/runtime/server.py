"""The root of the task tree: ``run_server`` → ``trio.run(serve)``.

serve
└─ open_app: root nursery
   ├─ hub.serve            timers (grace, ward, game tick), occupant lists, the broadcaster
   ├─ store_writer.serve   the only writer: batches, one transaction each, in worker threads
   ├─ serve_ops            health, readiness, metrics, web client
   ├─ serve_connections    the WebSocket/HTTP API listener; connections run in ``conns``
   ├─ serve_connections    with TELNET_PORT: the telnet listener, connections in ``conns`` too
   └─ freeze_after_admissions  (the CLI's server) the heap frozen after admissions (gc_policy)
on SIGTERM/SIGINT: drain (503 to newcomers, close every socket 1001, wait, teardown, flush)
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio

from mythos_rt.core.world import World, WorldError
from mythos_rt.runtime import gc_policy
from mythos_rt.runtime.bus import Bus, BusConnectError, LocalBus, open_bus
from mythos_rt.runtime.cluster import Cluster
from mythos_rt.runtime.gate import Gate, handle_stream
from mythos_rt.runtime.hub import Hub, HubConfig
from mythos_rt.runtime.listen import ListenError, open_listeners
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.ops_http import OpsState, serve_ops
from mythos_rt.runtime.persistence import StoreWriter
from mythos_rt.runtime.store import (
    Backend,
    PlayerRecord,
    Store,
    StoreError,
    ensure_demo_players,
    open_backend,
)
from mythos_rt.runtime.telnet import handle_telnet
from mythos_rt.settings import Settings
from mythos_rt.world import load_world

log = logging.getLogger(__name__)

SHUTTING_DOWN = (1001, "Server shutting down")


@attrs.define(eq=False)
class App:
    """The running parts of one instance, for the listener and for tests."""

    settings: Settings
    hub: Hub
    gate: Gate
    store_writer: StoreWriter
    metrics: Metrics
    ws_port: int = 0
    telnet_port: int = 0  # 0: telnet is off
    bus: Bus | None = None  # the shared bus, when this instance is one of several


@asynccontextmanager
async def open_app(
    settings: Settings,
    world: World,
    store: Store,
    secret: str,
    *,
    bus: Bus | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[App]:
    """Start the hub, the store writer and, with a shared bus, the cluster link; on exit,
    tear down presences, tell the other instances, and flush the store."""
    metrics = Metrics() if metrics is None else metrics
    writer = StoreWriter(store, metrics, ack_timeout_s=settings.store_ack_timeout_s)
    hub = Hub(world, HubConfig.from_settings(settings), writer=writer, metrics=metrics)
    gate = Gate(settings, secret, store, hub, writer, metrics)
    metrics.gauge("sockets", hub.socket_count)
    metrics.gauge("connections_open", lambda: gate.tracker.active)
    metrics.gauge("presences", hub.presence_counts)
    metrics.gauge("outbox_bytes", hub.outbox_bytes)
    metrics.gauge("trio_tasks", count_trio_tasks)
    metrics.gauge("store_healthy", lambda: int(writer.healthy))
    app = App(settings, hub, gate, writer, metrics)
    hub.learn_players(await store.call(store.backend.list_players))
    async with trio.open_nursery() as root:
        await root.start(writer.serve)
        await root.start(hub.serve)
        if bus is not None and not isinstance(bus, LocalBus):
            app.bus = bus
            link = Cluster(
                bus,
                hub,
                metrics,
                heartbeat_s=settings.cluster_heartbeat_s,
                dead_after_s=settings.cluster_dead_after_s,
            )
            await root.start(link.serve)
        try:
            yield app
        finally:
            with trio.CancelScope(shield=True):
                hub.end_all_presences()
                hub.sync_presences()  # the other instances hear of it before the bus drains
                with trio.move_on_after(settings.close_timeout_s):
                    await writer.wait_durable()
            root.cancel_scope.cancel()


def count_trio_tasks() -> int:
    """Every task alive under this run's root (a scrape-time gauge: O(tasks)); 0 outside
    Trio."""
    try:
        pending = [trio.lowlevel.current_root_task()]
    except RuntimeError:
        return 0
    count = 0
    while pending:
        task = pending.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


Handler = Callable[[Gate, trio.abc.Stream], Awaitable[None]]


async def serve_connections(
    handler: Handler,
    port: int,
    setting: str,
    gate: Gate,
    conns: trio.Nursery,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A TCP listener for one door (``handle_stream``: WebSockets and the HTTP API;
    ``handle_telnet``); started with the port it bound."""
    # Connections run in ``conns``, not under this task: the drain stops the listener first and
    # then waits for the connections to finish their closing handshakes.
    listeners = await open_listeners(gate.settings.host, port, setting)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(handler, gate), listeners, handler_nursery=conns)


async def drain(app: App) -> None:
    """Section 14: refuse newcomers, close every socket 1001, wait for them (bounded)."""
    app.gate.draining = True
    app.gate.abandon_handshakes()  # half-open TCP must not hold the drain for HANDSHAKE_TIMEOUT_S
    app.hub.close_all(*SHUTTING_DOWN)
    with trio.move_on_after(app.settings.drain_timeout_s * 0.6):
        await app.gate.tracker.wait_empty()


@attrs.define
class StopRequest:
    """The first stop signal's name, once one has arrived."""

    reason: str | None = None
    arrived: trio.Event = attrs.field(factory=trio.Event)


async def absorb_signals(signals: AsyncIterator[int], stop: StopRequest) -> None:
    """Read SIGTERM/SIGINT for the server's whole life: the first one stops it; later ones are
    absorbed.  A signal left unread would be re-raised when the receiver closes, killing the
    process after the drain instead of letting it exit 0."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if stop.reason is None:
            stop.reason = name
            stop.arrived.set()
        else:
            log.info("%s during the drain: ignored (the drain is bounded)", name)


async def wait_for_stop(hub: Hub, stop: StopRequest) -> str:
    """Until a stop signal or an admin's shutdown countdown ends; returns which."""
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            await stop.arrived.wait()
            nursery.cancel_scope.cancel()

        async def on_admin() -> None:
            await hub.shutdown_requested.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        nursery.start_soon(on_admin)
    return stop.reason or "admin shutdown"


async def serve(
    settings: Settings,
    world: World,
    backend: Backend,
    secret: str,
    *,
    manage_gc: bool = False,
    task_status: trio.TaskStatus[App] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until a signal or an admin's shutdown.  ``manage_gc``: freeze the heap after
    start-up and admissions (gc_policy); the CLI's server does, tests in one process do not."""
    stop = StopRequest()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(absorb_signals, signals, stop)
            await _serve_until_stopped(
                settings, world, backend, secret, stop, task_status, manage_gc
            )
            nursery.cancel_scope.cancel()


async def _serve_until_stopped(
    settings: Settings,
    world: World,
    backend: Backend,
    secret: str,
    stop: StopRequest,
    task_status: trio.TaskStatus[App],
    manage_gc: bool,
) -> None:
    metrics = Metrics()
    async with (
        open_bus(settings, metrics) as bus,
        open_app(settings, world, Store(backend), secret, bus=bus, metrics=metrics) as app,
        trio.open_nursery() as conns,
    ):
        listener_scopes = [trio.CancelScope(), trio.CancelScope()]
        ops_port = await _start_ops(app, conns) if settings.ops_port else 0
        app.ws_port = await conns.start(
            _run_listener,
            handle_stream,
            settings.port,
            "port",
            app.gate,
            conns,
            listener_scopes[0],
        )
        if settings.telnet_port:
            app.telnet_port = await conns.start(
                _run_listener,
                handle_telnet,
                settings.telnet_port,
                "telnet_port",
                app.gate,
                conns,
                listener_scopes[1],
            )
        print_banner(settings, app.ws_port, ops_port, app.telnet_port)
        if manage_gc:
            gc_policy.freeze_start_up()
            admitted, online = partial(admissions, metrics), app.hub.socket_count
            conns.start_soon(gc_policy.freeze_after_admissions, admitted, online)
        task_status.started(app)
        reason = await wait_for_stop(app.hub, stop)
        log.info("%s: draining (at most %.0f s)", reason, settings.drain_timeout_s)
        await drain(app)
        for scope in listener_scopes:
            scope.cancel()
        conns.cancel_scope.cancel()


async def _run_listener(
    handler: Handler,
    port: int,
    setting: str,
    gate: Gate,
    conns: trio.Nursery,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    with scope:
        await serve_connections(handler, port, setting, gate, conns, task_status=task_status)


async def _start_ops(app: App, nursery: trio.Nursery) -> int:
    state = OpsState(
        app.metrics,
        ready=lambda: app.ws_port > 0
        and not app.gate.draining
        and app.store_writer.healthy
        and (app.bus is None or app.bus.connected),
        ws_port=lambda: app.ws_port,
        public_url=app.settings.public_url,
    )
    port: int = await nursery.start(serve_ops, state, app.settings.host, app.settings.ops_port)
    return port


def print_banner(settings: Settings, ws_port: int, ops_port: int, telnet_port: int = 0) -> None:
    host = settings.host
    data_dir = settings.data_dir.resolve()
    lines = [
        f"mythos_rt listening on ws://{host}:{ws_port}/v1/api/ws (also /api/ws)",
        f"data directory: {data_dir}",
    ]
    if ops_port:
        lines.append(
            f"web client: http://{host}:{ops_port}/   health: http://{host}:{ops_port}/healthz"
        )
    if telnet_port:
        lines.append(f"telnet (Mudlet, TinTin++): telnet {host} {telnet_port}")
    lines += [
        f"get a token:   {cli_command('token', 'Armitage', settings=settings)}",
        f"connect:       ws://{host}:{ws_port}/v1/api/ws?token=<token>",
    ]
    print("\n".join(lines), flush=True)


def cli_command(*args: str, settings: Settings) -> str:
    """A CLI command line that works as printed, from any directory: this interpreter (the
    venv's, by its absolute path) and this server's data directory (absolute).  A PostgreSQL
    URL is not printed (it may hold a password): the command then needs the same
    MYTHOS_RT_DATABASE_URL in its environment, and says so."""
    words = [
        sys.executable,
        "-m",
        "mythos_rt",
        *args,
        "--data-dir",
        str(settings.data_dir.resolve()),
    ]
    line = " ".join(shlex.quote(word) for word in words)
    if settings.database_url:
        line += "   (with the same MYTHOS_RT_DATABASE_URL)"
    return line


def prepare_store(settings: Settings, world: World) -> tuple[Backend, list[PlayerRecord]]:
    """Open the store and prove it takes writes now: a read-only file, a lock held elsewhere or
    an unreachable server stop the start (exit 2) instead of losing the first confirmations."""
    backend = open_backend(settings)
    try:
        backend.check_writable()
        return backend, ensure_demo_players(backend, world.start_room_id)
    except StoreError as exc:
        backend.close()
        message = f"{backend.description}: the database does not take writes: {exc}"
        raise StoreError(message) from exc


def admissions(metrics: Metrics) -> float:
    """Sockets admitted so far, through either door."""
    return metrics.value("sockets_admitted") + metrics.value("telnet_sockets_admitted")


def run_server(settings: Settings, *, secret: str, secret_created: bool) -> int:
    """Load the world and the store, then serve until a signal; returns the exit code."""
    try:
        world = load_world(settings.world)
    except WorldError as exc:
        print(f"mythos_rt: cannot load the world: {exc}", file=sys.stderr)
        return 2
    try:
        backend, created = prepare_store(settings, world)
    except StoreError as exc:
        print(f"mythos_rt: {exc}", file=sys.stderr)
        return 2
    if secret_created:
        print(
            f"created a JWT secret in {settings.secret_path}"
            " (set MYTHOSMUD_JWT_SECRET to use your own)"
        )
    for record in created:
        print(f"created demo player {record.name}{' (admin)' if record.is_admin else ''}")
    try:
        trio.run(partial(serve, settings, world, backend, secret, manage_gc=True))
    except (BusConnectError, ListenError, BaseExceptionGroup) as exc:
        refusal = _start_refusal(exc)
        if refusal is None:
            raise
        print(f"mythos_rt: {refusal}", file=sys.stderr)
        return 2
    finally:
        backend.close()
    return 0


def _start_refusal(exc: BaseException) -> BusConnectError | ListenError | None:
    """The operator's mistake inside ``exc`` (an unreachable NATS, a port that cannot be
    listened on; nurseries wrap them in groups), if any."""
    if isinstance(exc, BusConnectError | ListenError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _start_refusal(inner)) is not None:
                return found
    return None
