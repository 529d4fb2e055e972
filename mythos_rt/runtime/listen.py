"""Opening a listener, with the operator's mistakes (a busy port, a host this machine does not
have, a port below 1024 without the right) as one line naming the setting, not a traceback."""

from __future__ import annotations

import trio

from mythos_rt.settings import env_var


class ListenError(Exception):
    """A listener could not be opened; ``str(exc)`` is one line naming the setting."""


async def open_listeners(host: str, port: int, port_setting: str) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners``; an ``OSError`` becomes a :class:`ListenError` that names
    ``port_setting`` (and ``host``) by their environment variables."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ListenError(
            f"cannot listen on {host}:{port} ({env_var(port_setting)}, {env_var('host')}): {reason}"
        ) from None
