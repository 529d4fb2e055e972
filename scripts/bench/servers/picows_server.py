"""Baseline and ceiling: picows, the fastest asyncio WebSocket library (``python picows_server.py
PORT``).

picows calls ``on_ws_frame`` for every frame and ``WSTransport.send`` writes to the asyncio
transport at once (no task per socket, no task switch per recipient); a broadcast encodes the
frame to bytes once and calls ``send`` for each recipient.  The token is checked in the listener
factory, before the upgrade (401); what is sent is in ``common`` (shared with the other
baselines).  Benchmark only: not shipped.
"""

from __future__ import annotations

import asyncio
import os
import sys

from common import SECRET_ENV, Encoder, Rooms, admit, connect_burst, handle_frame, room_notice
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

HOST = "127.0.0.1"
BACKLOG = 2048  # asyncio's default (100) drops SYNs in a storm of 200 concurrent connects


class Server:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.enc = Encoder()
        self.rooms: Rooms[WSTransport] = Rooms()

    def broadcast(self, room: str, transport: WSTransport, text: str) -> None:
        data = text.encode()
        for other in self.rooms.others(room, transport):
            other.send(WSMsgType.TEXT, data)

    def announce(self, room: str, transport: WSTransport, name: str, kind: str) -> None:
        self.broadcast(room, transport, room_notice(self.enc, kind, name, room))

    def listener(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        admission = admit(request.path.decode(), self.secret)
        if admission is None:
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(401), None)
        return Player(self, admission.name, admission.room)


class Player(WSListener):  # type: ignore[misc]
    def __init__(self, server: Server, name: str, room: str) -> None:
        self.server, self.name, self.room = server, name, room

    def on_ws_connected(self, transport: WSTransport) -> None:
        server = self.server
        server.rooms.join(self.room, transport, self.name)
        for text in connect_burst(server.enc, self.name, self.room, server.rooms.names(self.room)):
            transport.send(WSMsgType.TEXT, text.encode())
        server.announce(self.room, transport, self.name, "player_entered_game")

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        outcome = handle_frame(
            self.server.enc, self.name, self.room, frame.get_payload_as_utf8_text()
        )
        for reply in outcome.to_sender:
            transport.send(WSMsgType.TEXT, reply.encode())
        if outcome.to_room is not None:
            self.server.broadcast(self.room, transport, outcome.to_room)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.rooms.leave(self.room, transport)
        self.server.announce(self.room, transport, self.name, "player_left_game")


async def main(port: int) -> None:
    server = Server(os.environ[SECRET_ENV])
    listening = await ws_create_server(server.listener, HOST, port, backlog=BACKLOG)
    await listening.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
