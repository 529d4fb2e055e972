"""Baseline: FastAPI + uvicorn + websockets, the usual Python stack, with a naive broadcast.

Started by the benchmark as::

    python -m uvicorn fastapi_app:create_app --factory --app-dir scripts/bench/servers \
        --ws websockets --log-level warning --no-access-log --lifespan off --port PORT

One ``await websocket.receive_text()`` loop per connection, in the style of the original MythosMUD
FastAPI server; a broadcast awaits ``send_text`` for each recipient in turn (the frame is encoded
once).  The token is checked before ``accept`` (401 through uvicorn's denial response); what is
sent is in ``common`` (shared with the other baselines).  Benchmark only: not shipped.
"""

from __future__ import annotations

import contextlib
import os

from common import (
    SECRET_ENV,
    WS_PATHS,
    Encoder,
    Rooms,
    admit,
    connect_burst,
    handle_frame,
    room_notice,
)
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.responses import Response


class Server:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.enc = Encoder()
        self.rooms: Rooms[WebSocket] = Rooms()

    async def broadcast(self, room: str, ws: WebSocket, text: str) -> None:
        for other in self.rooms.others(room, ws):
            with contextlib.suppress(Exception):  # a dead socket is its own reader's business
                await other.send_text(text)

    async def announce(self, room: str, ws: WebSocket, name: str, kind: str) -> None:
        await self.broadcast(room, ws, room_notice(self.enc, kind, name, room))

    async def serve(self, ws: WebSocket) -> None:
        target = ws.scope["path"] + "?" + ws.scope["query_string"].decode()
        admission = admit(target, self.secret)
        if admission is None:
            await ws.send_denial_response(Response(status_code=401))
            return
        name, room = admission.name, admission.room
        await ws.accept()
        self.rooms.join(room, ws, name)
        try:
            for text in connect_burst(self.enc, name, room, self.rooms.names(room)):
                await ws.send_text(text)
            await self.announce(room, ws, name, "player_entered_game")
            while True:
                outcome = handle_frame(self.enc, name, room, await ws.receive_text())
                for text in outcome.to_sender:
                    await ws.send_text(text)
                if outcome.to_room is not None:
                    await self.broadcast(room, ws, outcome.to_room)
        except WebSocketDisconnect:
            pass
        finally:
            self.rooms.leave(room, ws)
            with contextlib.suppress(Exception):
                await self.announce(room, ws, name, "player_left_game")


def create_app() -> FastAPI:
    """The uvicorn factory."""
    app = FastAPI()
    server = Server(os.environ[SECRET_ENV])
    for path in WS_PATHS:
        app.add_api_websocket_route(path, server.serve)
    return app
