"""Baseline for bench_server.py: the usual FastAPI/uvicorn WebSocket stack, measured the same way.

Needs its own interpreter (nothing is installed into the project venv)::

    python3 -m venv /tmp/fastapi-venv
    /tmp/fastapi-venv/bin/pip install fastapi uvicorn websockets wsproto

Run from the project root::

    /tmp/fastapi-venv/bin/python scripts/bench_baseline_fastapi.py \
        [--players 50] [--lines 200] [--runs 3] [--ws websockets,wsproto] [--deflate]

(wsproto is only needed for ``--ws wsproto``.)  The app below is a minimal server in the style of
the original MythosMUD FastAPI server: one ``await websocket.receive_text()`` loop per
connection, a connection manager holding ``room -> set of websockets``, and broadcast by
iterating over the room and awaiting ``send_text`` for each recipient.  Frames use the same
envelope as mythos_rt (event_type, timestamp, sequence_number, data, room_id, player_id); the
``token`` query parameter is accepted blindly and used as the player's name.  On connect the
newcomer gets game_state, room_update, room_occupants and welcome, and the room gets
player_entered_game and room_occupants, like mythos_rt.  It is deliberately lean (no JWT, no
database, no validation, no rate limits, each event JSON-encoded once for all recipients), so
it flatters the baseline.

Each run starts ``python -m uvicorn`` (``--log-level warning``, ready when its port accepts) on a
free loopback port and measures with the functions of ``scripts/bench_server.py``: handshake
rate, fan-out deliveries/s with the in-order check, ping round trip, CPU per 1k deliveries.
``--deflate`` makes the client offer permessage-deflate, as browsers do (uvicorn accepts it by
default; mythos_rt never negotiates it).  Exit status 1 only on a functional failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

import bench_server as bench
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

SCRIPTS_DIR = Path(__file__).resolve().parent
START_ROOM = "earth_arkhamcity_campus_quad"
WS_VARIANTS = ("websockets", "wsproto")

# --- the baseline app (runs inside the uvicorn subprocess) ---


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConnectionManager:
    """room -> sockets, socket -> player name, and the event encoder."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[WebSocket]] = {}
        self.names: dict[WebSocket, str] = {}
        self.sequence = time.time_ns() // 1000

    def event(
        self, event_type: str, data: dict[str, object], room_id: str = "", player_id: str = ""
    ) -> str:
        self.sequence += 1
        envelope: dict[str, object] = {
            "event_type": event_type,
            "timestamp": utc_now(),
            "sequence_number": self.sequence,
            "data": data,
        }
        if room_id:
            envelope["room_id"] = room_id
        if player_id:
            envelope["player_id"] = player_id
        return json.dumps(envelope)

    async def connect(self, websocket: WebSocket, name: str, room: str) -> None:
        await websocket.accept()
        self.rooms.setdefault(room, set()).add(websocket)
        self.names[websocket] = name

    def disconnect(self, websocket: WebSocket, room: str) -> None:
        self.rooms.get(room, set()).discard(websocket)
        self.names.pop(websocket, None)

    def occupants(self, room: str) -> list[str]:
        return sorted(self.names[ws] for ws in self.rooms.get(room, ()) if ws in self.names)

    async def broadcast(self, room: str, text: str, exclude: WebSocket | None = None) -> None:
        for websocket in list(self.rooms.get(room, ())):
            if websocket is exclude:
                continue
            try:
                await websocket.send_text(text)
            except Exception:  # the usual pattern: a dead socket is dropped, never fatal
                self.disconnect(websocket, room)


def room_payload(manager: ConnectionManager, room: str) -> dict[str, object]:
    names = manager.occupants(room)
    return {"players": names, "npcs": [], "occupants": names, "count": len(names)}


def room_info(manager: ConnectionManager, room: str) -> dict[str, object]:
    names = manager.occupants(room)
    return {
        "id": room,
        "name": "Campus Quad",
        "description": "A quad.",
        "exits": {},
        "players": names,
    }


async def send_burst(manager: ConnectionManager, ws: WebSocket, name: str, room: str) -> None:
    player = {"id": name, "name": name, "level": 1, "room_id": room, "is_admin": False}
    state = {
        "player": player,
        "room": room_info(manager, room),
        "occupants": manager.occupants(room),
    }
    await ws.send_text(manager.event("game_state", state, room, name))
    update = {"room": room_info(manager, room), "entities": [], "occupants": []}
    await ws.send_text(manager.event("room_update", update, room))
    await ws.send_text(manager.event("room_occupants", room_payload(manager, room), room))
    welcome = {"message": "Connected to MythosMUD", "resumed": False}
    await ws.send_text(manager.event("welcome", welcome, player_id=name))


async def announce(manager: ConnectionManager, ws: WebSocket, name: str, kind: str) -> None:
    room = START_ROOM
    data = {"player_id": name, "player_name": name}
    await manager.broadcast(room, manager.event(kind, data, room, name), exclude=ws)
    occupants = manager.event("room_occupants", room_payload(manager, room), room)
    await manager.broadcast(room, occupants, exclude=ws)


async def say(manager: ConnectionManager, ws: WebSocket, name: str, text: str) -> None:
    reply = manager.event("command_response", {"result": f"You say: {text}"}, player_id=name)
    await ws.send_text(reply)
    chat = {
        "sender_id": name,
        "player_name": name,
        "channel": "say",
        "message": f"{name} says: {text}",
        "message_id": str(uuid.uuid4()),
        "timestamp": utc_now(),
        "original_content": text,
    }
    event = manager.event("chat_message", chat, START_ROOM, name)
    await manager.broadcast(START_ROOM, event, exclude=ws)


async def handle_command(
    manager: ConnectionManager, ws: WebSocket, name: str, data: dict[str, object]
) -> None:
    command = str(data.get("command", "")).lower()
    args = data.get("args") or []
    text = " ".join(str(arg) for arg in args) if isinstance(args, list) else ""
    if command == "say":
        await say(manager, ws, name, text)
    elif command == "ping":
        await ws.send_text(manager.event("command_response", {"result": "pong"}, player_id=name))
    else:
        result = {"result": f"Unknown command: {command}"}
        await ws.send_text(manager.event("command_response", result, player_id=name))


async def handle_frame(manager: ConnectionManager, ws: WebSocket, name: str, text: str) -> None:
    frame = json.loads(text)
    if isinstance(frame.get("message"), str):
        frame = json.loads(frame["message"])
    kind = frame.get("type")
    if kind == "ping":
        await ws.send_text(manager.event("pong", {}, player_id=name))
    elif kind in ("command", "game_command"):
        await handle_command(manager, ws, name, frame.get("data") or {})
    else:
        error = {"type": "error", "error_type": "invalid_command", "message": f"Unknown: {kind}"}
        await ws.send_text(json.dumps(error))


async def serve_player(manager: ConnectionManager, ws: WebSocket, name: str) -> None:
    await manager.connect(ws, name, START_ROOM)
    try:
        await send_burst(manager, ws, name, START_ROOM)
        await announce(manager, ws, name, "player_entered_game")
        while True:
            await handle_frame(manager, ws, name, await ws.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        manager.disconnect(ws, START_ROOM)
        with contextlib.suppress(Exception):
            await announce(manager, ws, name, "player_left_game")


def create_app() -> FastAPI:
    """The uvicorn factory (``--factory bench_baseline_fastapi:create_app``)."""
    app = FastAPI()
    manager = ConnectionManager()

    async def endpoint(websocket: WebSocket, token: str = "") -> None:
        await serve_player(manager, websocket, token or "anonymous")

    app.add_api_websocket_route("/v1/api/ws", endpoint)
    app.add_api_websocket_route("/api/ws", endpoint)
    return app


# --- the benchmark driver ---


def uvicorn_command(port: int, ws: str, loop: str) -> list[str]:
    app = [sys.executable, "-m", "uvicorn", "bench_baseline_fastapi:create_app", "--factory"]
    where = ["--app-dir", str(SCRIPTS_DIR), "--host", bench.HOST, "--port", str(port)]
    quiet = ["--log-level", "warning", "--no-access-log", "--lifespan", "off"]
    return [*app, *where, "--ws", ws, "--loop", loop, *quiet]


def uvicorn_starter(ws: str, loop: str) -> bench.StartServer:
    def start() -> AbstractAsyncContextManager[bench.Server]:
        port = bench.free_port()
        return bench.running_server(uvicorn_command(port, ws, loop), port, banner=None)

    return start


def run_variant(ws: str, loop: str, args: bench.BenchArgs, deflate: bool) -> int:
    tokens = bench.player_names(args.players)
    compression = "deflate" if deflate else None
    start = uvicorn_starter(ws, loop)
    results = asyncio.run(bench.run_all(start, tokens, args, compression))
    extra = ", client offers permessage-deflate" if deflate else ""
    return bench.report(f"FastAPI/uvicorn --ws {ws} --loop {loop}{extra}", args, results)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="FastAPI/uvicorn baseline for bench_server.py")
    bench.add_common_args(parser)
    parser.add_argument("--ws", default=",".join(WS_VARIANTS), help="uvicorn --ws values")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    args = bench.bench_args(ns)
    status = 0
    for ws in (part.strip() for part in ns.ws.split(",") if part.strip()):
        try:
            status |= run_variant(ws, ns.loop, args, ns.deflate)
        except (bench.BenchError, TimeoutError) as exc:
            print(f"bench_baseline_fastapi ({ws}): {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
