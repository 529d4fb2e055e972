"""What an operator sees of a real server process: its stderr log lines (text and JSON) and
``/metrics`` over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import (
    FRAME_TIMEOUT_S,
    ServerProcess,
    StartServer,
    close_of,
    ping_pong,
    read_burst,
    run_cli,
    send_command,
    wrapped,
    ws_connect,
)

FORGED = "boom\n2026-11-29 12:00:00,000 ERROR mythos_rt: the database is gone\nTraceback (most"
# A line the server writes in the text format: "<date> <time>,<ms> <LEVEL> <logger>: ..."
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) [\w.]+: ")


async def play_a_session(server: ServerProcess) -> None:
    """Log in, report a forged 'error', log out; then a handshake with a forged token."""
    token = server.token("Carter")
    async with ws_connect(server.url(token=token, session_id="ops-1")) as ws:
        await read_burst(ws)
        report = {"type": "client_error_report", "data": {"message": FORGED, "error_type": "x"}}
        await ws.send(wrapped(report, token))
        await ping_pong(ws, token)
        await send_command(ws, token, "logout")
        assert await close_of(ws) == (1000, "Goodbye")
    try:
        async with ws_connect(server.url(token="forged.token.here")):
            raise AssertionError("a forged token was admitted")
    except InvalidStatus as exc:
        assert exc.response.status_code == 401


def stopped_log(server: ServerProcess) -> list[str]:
    assert server.stop() == 0
    return server.log_path.read_text().splitlines()


def test_text_log_lines_and_no_forged_line(start_server: StartServer) -> None:
    server = start_server()
    asyncio.run(play_a_session(server))
    lines = stopped_log(server)
    levels = [match.group("level") for line in lines if (match := TEXT_LINE.match(line))]
    assert len(levels) == len(lines), "every line is a log line:\n" + "\n".join(lines)
    assert "ERROR" not in levels
    [report] = [line for line in lines if "client_error_report" in line]
    assert "boom\\n2026-11-29 12:00:00,000 ERROR mythos_rt" in report
    for event in ("login", "logout", "disconnect", "handshake_refused"):
        assert any(" INFO mythos_rt.runtime." in line and f": {event} " in line for line in lines)
    [login] = [line for line in lines if ": login " in line]
    assert "player=Carter" in login and "session=ops-1" in login and "peer=127.0.0.1" in login


def test_json_log_lines_are_one_object_each(start_server: StartServer) -> None:
    server = start_server("--log-format", "json")
    asyncio.run(play_a_session(server))
    entries: list[dict[str, Any]] = [json.loads(line) for line in stopped_log(server)]
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    by_event = {entry.get("event"): entry for entry in entries}
    login = by_event["login"]
    assert (login["player"], login["session"], login["peer"]) == ("Carter", "ops-1", "127.0.0.1")
    assert login["level"] == "INFO" and login["logger"] == "mythos_rt.runtime.gate"
    assert (by_event["logout"]["code"], by_event["logout"]["reason"]) == (1000, "Goodbye")
    assert (by_event["disconnect"]["code"], by_event["disconnect"]["by"]) == (1000, "server")
    assert by_event["handshake_refused"]["status"] == 401
    assert by_event["client_error_report"]["error_message"] == FORGED
    assert not any(entry["level"] == "ERROR" for entry in entries)


def test_an_unknown_log_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--log-format", "xml", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown log format 'xml' (use text or json)"
    ]


def test_metrics_over_http_have_the_prometheus_content_type(server: ServerProcess) -> None:
    asyncio.run(play_a_session(server))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{server.ops_url}/metrics", timeout=FRAME_TIMEOUT_S) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    refused = families["mythos_rt_handshakes_refused"]
    assert [(s.labels, s.value) for s in refused.samples] == [({"status": "401"}, 1.0)]
    closes = families["mythos_rt_socket_closes"]
    assert [(s.labels, s.value) for s in closes.samples] == [({"code": "1000"}, 1.0)]
