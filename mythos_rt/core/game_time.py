"""The payload of ``GET /v1/game/time`` (PROTOCOL.md sections 12 and 18).

STAND-IN.  The Mythos calendar is being written in ``core/mythos_clock.py`` in parallel; until
it lands, :func:`game_time_payload` returns the real ``server_timestamp`` and fixed placeholder
values for every calendar field, typed as the MythosMUD client's ``isMythosTimePayload`` guard
expects, so the client accepts the answer.  At the merge, replace the body of this function (or
this module) with the real clock; the route calls it in one line.
"""

from __future__ import annotations

from mythos_rt.core.http_api import iso_utc

Payload = dict[str, object]

# PLACEHOLDER values: not derived from the clock.  Delete with the stand-in.
_PLACEHOLDER_CALENDAR: Payload = {
    "mythos_datetime": "1930-01-01T00:00:00Z",
    "mythos_clock": "00:00",
    "month_name": "January",
    "day_of_month": 1,
    "day_name": "Primus",
    "week_of_month": 1,
    "season": "winter",
    "daypart": "midnight",
    "is_daytime": False,
    "is_witching_hour": False,
    "active_holidays": [],
    "upcoming_holidays": [],
}


def game_time_payload(now: float) -> Payload:
    """The clock payload at wall-clock ``now`` (epoch seconds), with ``server_timestamp``."""
    return {**_PLACEHOLDER_CALENDAR, "server_timestamp": iso_utc(now)}
