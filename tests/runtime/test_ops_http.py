"""The ops port's web client files (runtime/ops_http.route): a fixed table of files with their
content types, the page told where the game is, nothing else reachable."""

from __future__ import annotations

import pytest

from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.ops_http import OpsState, route


def state(public_url: str | None = None) -> OpsState:
    return OpsState(
        Metrics(), ready=lambda: True, ws_port=lambda: 54768, public_url=public_url, ops_port=54769
    )


@pytest.mark.parametrize(
    ("path", "content_type", "contains"),
    [
        ("/", "text/html; charset=utf-8", b'name="viewport"'),
        ("/index.html?x=1", "text/html; charset=utf-8", b'src="client.js"'),
        ("/client.js", "text/javascript; charset=utf-8", b"textContent"),
        ("/client.css", "text/css; charset=utf-8", b".chan-whisper"),
    ],
)
def test_the_client_files_are_served_with_their_types(
    path: str, content_type: str, contains: bytes
) -> None:
    response = route(state(), "GET", path)
    assert (response.status, response.content_type) == (200, content_type)
    assert contains in response.body
    headers = dict(response.headers)
    assert headers["x-content-type-options"] == "nosniff"
    assert "script-src" not in headers["content-security-policy"]  # default-src 'self' covers it


def test_the_page_is_told_the_ports_and_the_public_url_escaped() -> None:
    page = route(state('https://play.example.org/"><script>'), "GET", "/").body.decode()
    assert 'name="mythos-game-port" content="54768"' in page
    assert 'name="mythos-ops-port" content="54769"' in page
    assert 'content="https://play.example.org/&quot;&gt;&lt;script&gt;"' in page
    assert not [p for p in ("__GAME_PORT__", "__OPS_PORT__", "__PUBLIC_URL__") if p in page]


def test_without_a_public_url_the_placeholder_is_empty() -> None:
    page = route(state(), "GET", "/").body.decode()
    assert 'name="mythos-public-url" content=""' in page


@pytest.mark.parametrize(
    "path",
    ["/client.py", "/../settings.py", "/web/client.js", "/%2e%2e/settings.py", "/__init__.py"],
)
def test_nothing_else_is_reachable(path: str) -> None:
    assert route(state(), "GET", path).status == 404
