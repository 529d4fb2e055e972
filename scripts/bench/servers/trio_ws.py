"""Baseline: a bare trio-websocket server (``python trio_ws.py PORT``), mythos_rt's own stack
without mythos_rt.

One task per connection reads frames; a broadcast awaits ``send_message`` for each recipient in
turn from the sender's task (the frame is encoded once).  The token is checked before the upgrade
(``request.reject(401)``); what is sent is in ``common`` (shared with the other baselines).
Benchmark only: not shipped.
"""

from __future__ import annotations

import contextlib
import os
import sys

import trio
from common import SECRET_ENV, Encoder, Rooms, admit, connect_burst, handle_frame, room_notice
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

HOST = "127.0.0.1"


class Server:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.enc = Encoder()
        self.rooms: Rooms[WebSocketConnection] = Rooms()

    async def broadcast(self, room: str, ws: WebSocketConnection, text: str) -> None:
        for other in self.rooms.others(room, ws):
            with contextlib.suppress(ConnectionClosed):
                await other.send_message(text)

    async def announce(self, room: str, ws: WebSocketConnection, name: str, kind: str) -> None:
        await self.broadcast(room, ws, room_notice(self.enc, kind, name, room))

    async def handle(self, request: WebSocketRequest) -> None:
        admission = admit(request.path, self.secret)
        if admission is None:
            await request.reject(401)
            return
        name, room = admission.name, admission.room
        ws = await request.accept()
        self.rooms.join(room, ws, name)
        try:
            for text in connect_burst(self.enc, name, room, self.rooms.names(room)):
                await ws.send_message(text)
            await self.announce(room, ws, name, "player_entered_game")
            while True:
                message = await ws.get_message()
                text = message if isinstance(message, str) else message.decode()
                outcome = handle_frame(self.enc, name, room, text)
                for reply in outcome.to_sender:
                    await ws.send_message(reply)
                if outcome.to_room is not None:
                    await self.broadcast(room, ws, outcome.to_room)
        except ConnectionClosed:
            pass
        finally:
            self.rooms.leave(room, ws)
            await self.announce(room, ws, name, "player_left_game")


async def main(port: int) -> None:
    server = Server(os.environ[SECRET_ENV])
    await serve_websocket(server.handle, HOST, port, ssl_context=None)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
