"""The Mythos clock (PROTOCOL.md v1.1 sections 12, 18): a deterministic mapping from epoch
seconds to the Mythos calendar, in the shapes the MythosMUD client's type guard accepts."""

from __future__ import annotations

import pytest

from mythos_rt.core.mythos_clock import REAL_EPOCH_S, game_time_payload, mythos_time

REAL_HOUR_S = 3600
MYTHOS_DAY_S = 6 * REAL_HOUR_S  # 4 Mythos hours per real hour
MYTHOS_HOUR_S = REAL_HOUR_S / 4
HALLOWS_EVE_1920 = REAL_EPOCH_S + 304 * MYTHOS_DAY_S  # 1920 is a leap year: Oct 31 is day 305
NEW_YEARS_EVE_1920 = REAL_EPOCH_S + 365 * MYTHOS_DAY_S


def at_mythos_hour(hour: float, day_start: float = REAL_EPOCH_S) -> dict[str, object]:
    return mythos_time(day_start + hour * MYTHOS_HOUR_S)


def ids(entries: object) -> list[str]:
    assert isinstance(entries, list)
    return [entry["id"] for entry in entries]


def test_the_anchor_is_midnight_january_first_1920() -> None:
    clock = mythos_time(REAL_EPOCH_S)
    assert {k: v for k, v in clock.items() if not k.endswith("_holidays")} == {
        "mythos_datetime": "1920-01-01T00:00:00Z",
        "mythos_clock": "00:00 Mythos",
        "month_name": "January",
        "day_of_month": 1,
        "day_name": "Thursday",
        "week_of_month": 1,
        "season": "winter",
        "daypart": "witching",
        "is_daytime": False,
        "is_witching_hour": True,
    }


@pytest.mark.parametrize(
    ("real_seconds_after_anchor", "mythos_datetime"),
    [
        (1, "1920-01-01T00:00:04Z"),  # four Mythos seconds per real second
        (REAL_HOUR_S, "1920-01-01T04:00:00Z"),
        (MYTHOS_DAY_S, "1920-01-02T00:00:00Z"),  # a Mythos day every six real hours
        (91 * 24 * REAL_HOUR_S + 12 * REAL_HOUR_S, "1921-01-01T00:00:00Z"),  # 366 days of 1920
        (-MYTHOS_DAY_S, "1919-12-31T00:00:00Z"),
        (0.3, "1920-01-01T00:00:01Z"),  # whole Mythos seconds, rounded down
    ],
)
def test_the_rate_is_four_mythos_hours_per_real_hour(
    real_seconds_after_anchor: float, mythos_datetime: str
) -> None:
    assert mythos_time(REAL_EPOCH_S + real_seconds_after_anchor)["mythos_datetime"] == (
        mythos_datetime
    )


@pytest.mark.parametrize(
    ("hour", "clock", "daypart", "is_daytime", "is_witching_hour"),
    [
        (0.5, "00:30 Mythos", "witching", False, True),
        (1, "01:00 Mythos", "night", False, False),
        (4, "04:00 Mythos", "pre-dawn", False, False),
        (5.99, "05:59 Mythos", "pre-dawn", False, False),
        (6, "06:00 Mythos", "morning", True, False),
        (11, "11:00 Mythos", "midday", True, False),
        (14, "14:00 Mythos", "afternoon", True, False),
        (17.99, "17:59 Mythos", "afternoon", True, False),
        (18, "18:00 Mythos", "dusk", False, False),
        (20, "20:00 Mythos", "night", False, False),
        (23, "23:00 Mythos", "witching", False, True),
    ],
)
def test_dayparts_day_night_and_the_witching_hour(
    hour: float, clock: str, daypart: str, is_daytime: bool, is_witching_hour: bool
) -> None:
    moment = at_mythos_hour(hour)
    assert (moment["mythos_clock"], moment["daypart"]) == (clock, daypart)
    assert (moment["is_daytime"], moment["is_witching_hour"]) == (is_daytime, is_witching_hour)


def test_calendar_fields_on_hallows_eve() -> None:
    clock = mythos_time(HALLOWS_EVE_1920 + 12 * MYTHOS_HOUR_S)
    assert clock["mythos_datetime"] == "1920-10-31T12:00:00Z"
    assert (clock["month_name"], clock["day_of_month"], clock["day_name"]) == (
        "October",
        31,
        "Sunday",
    )
    assert (clock["week_of_month"], clock["season"]) == (5, "autumn")  # Oct 1 was a Friday


@pytest.mark.parametrize(
    ("mythos_hours_after_hallows_eve", "active", "upcoming"),
    [
        (-0.01, [], ["hallows_eve", "all_souls", "yule"]),
        (0, ["hallows_eve"], ["all_souls", "yule", "candlemas"]),
        (47.99, ["hallows_eve"], ["all_souls", "yule", "candlemas"]),  # a 48-hour holiday
        (48, ["all_souls"], ["yule", "candlemas", "walpurgis_night"]),
    ],
)
def test_active_and_upcoming_holidays(
    mythos_hours_after_hallows_eve: float, active: list[str], upcoming: list[str]
) -> None:
    clock = at_mythos_hour(mythos_hours_after_hallows_eve, HALLOWS_EVE_1920)
    assert (ids(clock["active_holidays"]), ids(clock["upcoming_holidays"])) == (active, upcoming)


def test_upcoming_holidays_wrap_into_the_next_year() -> None:
    clock = mythos_time(NEW_YEARS_EVE_1920)
    assert clock["mythos_datetime"] == "1920-12-31T00:00:00Z"
    assert ids(clock["upcoming_holidays"]) == ["candlemas", "walpurgis_night", "beltane"]


def test_holiday_entries_have_the_clients_shape() -> None:
    (entry,) = at_mythos_hour(1, HALLOWS_EVE_1920)["active_holidays"]  # type: ignore[misc]
    assert entry == {
        "id": "hallows_eve",
        "name": "All Hallows' Eve",
        "tradition": "neo_pagan",
        "month": 10,
        "day": 31,
        "duration_hours": 48,
        "season": "autumn",
        "bonus_tags": ["occult", "witching"],
        "notes": "The veil is thin until the second midnight.",
    }


def test_game_time_payload_passes_the_clients_type_guard() -> None:
    """The MythosMUD client's ``isMythosTimePayload``: these strings, numbers, booleans, lists."""
    payload = game_time_payload(1_795_635_202.9)
    strings = ["mythos_datetime", "mythos_clock", "month_name", "day_name", "season", "daypart"]
    assert all(type(payload[key]) is str for key in [*strings, "server_timestamp"])
    assert all(type(payload[key]) is int for key in ("day_of_month", "week_of_month"))
    assert all(type(payload[key]) is bool for key in ("is_daytime", "is_witching_hour"))
    assert all(type(payload[k]) is list for k in ("active_holidays", "upcoming_holidays"))
    assert payload["server_timestamp"] == "2026-11-25T19:33:22Z"
    assert {k: v for k, v in payload.items() if k != "server_timestamp"} == mythos_time(
        1_795_635_202.9
    )


@pytest.mark.parametrize("wall_s", [1e12, -1e12])
def test_a_wild_wall_clock_stays_inside_the_calendar(wall_s: float) -> None:
    assert mythos_time(wall_s)["mythos_datetime"] in (
        "9998-12-31T00:00:00Z",
        "0002-01-01T00:00:00Z",
    )
