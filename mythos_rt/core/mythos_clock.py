"""The Mythos clock (PROTOCOL.md v1.1 sections 12, 18): game time derived from the wall clock.

Pure: the caller passes epoch seconds in.  The mapping is MythosMUD's own, so a player who moves
between servers sees the same date:

- 1 real hour = 4 Mythos hours (1 Mythos day = 6 real hours; a Mythos year = about 91 days);
- anchored at 2025-01-01T00:00:00Z (real) = 1920-01-01T00:00:00 (Mythos);
- the Mythos calendar is the Gregorian one (months, weekdays, leap years), in UTC.

Day parts use the names the MythosMUD web client has messages for.  Holidays are a fixed table
keyed by Mythos month and day; each is active from midnight of its day for its duration.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import attrs

from mythos_rt.core.protocol import format_timestamp

RATE = 4  # Mythos seconds per real second
REAL_EPOCH_S = 1_735_689_600  # 2025-01-01T00:00:00Z
MYTHOS_EPOCH = datetime(1920, 1, 1, tzinfo=UTC)
# datetime ends at year 9999; a wall clock past ~2089 (or before the year 1) would raise on
# every tick, so the mapping stops a year inside the calendar's ends instead.
_MIN_OFFSET_S = int((datetime(2, 1, 1, tzinfo=UTC) - MYTHOS_EPOCH).total_seconds())
_MAX_OFFSET_S = int((datetime(9998, 12, 31, tzinfo=UTC) - MYTHOS_EPOCH).total_seconds())

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Northern meteorological seasons, by month number.
SEASONS = ("winter",) * 2 + ("spring",) * 3 + ("summer",) * 3 + ("autumn",) * 3 + ("winter",)
# (first hour, day part), in order; each part lasts until the next one's first hour.
DAYPARTS = (
    (0, "witching"),
    (1, "night"),
    (4, "pre-dawn"),
    (6, "morning"),
    (11, "midday"),
    (14, "afternoon"),
    (18, "dusk"),
    (20, "night"),
    (23, "witching"),
)
UPCOMING_COUNT = 3


@attrs.frozen
class Holiday:
    id: str
    name: str
    tradition: str  # MythosMUD's: catholic, islamic, jewish, neo_pagan, mythos
    month: int
    day: int
    duration_hours: int  # Mythos hours, at most 48
    bonus_tags: tuple[str, ...] = ()
    notes: str | None = None

    @property
    def season(self) -> str:
        return SEASONS[self.month - 1]

    def starts(self, year: int) -> datetime:
        return datetime(year, self.month, self.day, tzinfo=UTC)

    def payload(self) -> dict[str, object]:
        """The entry shape of MythosMUD's ``active_holidays`` / ``upcoming_holidays``."""
        return {
            "id": self.id,
            "name": self.name,
            "tradition": self.tradition,
            "month": self.month,
            "day": self.day,
            "duration_hours": self.duration_hours,
            "season": self.season,
            "bonus_tags": list(self.bonus_tags),
            "notes": self.notes,
        }


HOLIDAYS = (
    Holiday("candlemas", "Candlemas", "catholic", 2, 2, 24, ("warding",)),
    Holiday(
        "walpurgis_night",
        "Walpurgis Night",
        "neo_pagan",
        4,
        30,
        24,
        ("occult",),
        "Old women on French Hill bolt their shutters before dusk.",
    ),
    Holiday("beltane", "Beltane", "neo_pagan", 5, 1, 24, ("vigor",)),
    Holiday("midsummer_eve", "Midsummer Eve", "neo_pagan", 6, 23, 24, ("dreams",)),
    Holiday(
        "founders_day",
        "Miskatonic Founders' Day",
        "mythos",
        9,
        14,
        24,
        ("scholarship",),
        "The Orne Library opens its restricted stacks to visiting scholars, under guard.",
    ),
    Holiday(
        "hallows_eve",
        "All Hallows' Eve",
        "neo_pagan",
        10,
        31,
        48,
        ("occult", "witching"),
        "The veil is thin until the second midnight.",
    ),
    Holiday("all_souls", "All Souls' Day", "catholic", 11, 2, 24, ("remembrance",)),
    Holiday("yule", "Yule", "neo_pagan", 12, 21, 24, ("hearth",)),
)


def mythos_datetime(wall_s: float) -> datetime:
    """The Mythos date and time at ``wall_s`` epoch seconds, to the second."""
    offset_s = math.floor((wall_s - REAL_EPOCH_S) * RATE)
    offset_s = min(max(offset_s, _MIN_OFFSET_S), _MAX_OFFSET_S)
    return MYTHOS_EPOCH + timedelta(seconds=offset_s)


def daypart(hour: int) -> str:
    return next(name for first, name in reversed(DAYPARTS) if hour >= first)


def week_of_month(moment: datetime) -> int:
    """Calendar rows, Monday first: the 1st is in week 1, the next Monday starts week 2."""
    first_weekday = moment.replace(day=1).weekday()
    return (moment.day - 1 + first_weekday) // 7 + 1


def active_holidays(moment: datetime) -> list[Holiday]:
    # Last year's entries too: a 48-hour holiday on December 31 runs into January.
    return [
        holiday
        for holiday in HOLIDAYS
        for year in (moment.year - 1, moment.year)
        if holiday.starts(year) <= moment < holiday.starts(year) + _duration(holiday)
    ]


def upcoming_holidays(moment: datetime, count: int = UPCOMING_COUNT) -> list[Holiday]:
    """The next ``count`` holidays to begin after ``moment``, wrapping into next year."""
    starts = [
        (holiday.starts(year), holiday.id, holiday)
        for holiday in HOLIDAYS
        for year in (moment.year, moment.year + 1)
        if holiday.starts(year) > moment
    ]
    return [holiday for _, _, holiday in sorted(starts)[:count]]


def _duration(holiday: Holiday) -> timedelta:
    return timedelta(hours=holiday.duration_hours)


def mythos_time(wall_s: float) -> dict[str, object]:
    """The Mythos clock fields ``game_tick`` carries (section 12)."""
    moment = mythos_datetime(wall_s)
    return {
        # Written out: strftime's %Y does not pad years before 1000 on every platform.
        "mythos_datetime": f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z",
        "mythos_clock": f"{moment:%H:%M} Mythos",
        "month_name": MONTHS[moment.month - 1],
        "day_of_month": moment.day,
        "day_name": WEEKDAYS[moment.weekday()],
        "week_of_month": week_of_month(moment),
        "season": SEASONS[moment.month - 1],
        "daypart": daypart(moment.hour),
        "is_daytime": 6 <= moment.hour < 18,
        "is_witching_hour": moment.hour in (23, 0),
        "active_holidays": [holiday.payload() for holiday in active_holidays(moment)],
        "upcoming_holidays": [holiday.payload() for holiday in upcoming_holidays(moment)],
    }


def describe(wall_s: float) -> str:
    """The Mythos time as a player reads it (the ``time`` command)."""
    moment = mythos_datetime(wall_s)
    date = f"{WEEKDAYS[moment.weekday()]}, {MONTHS[moment.month - 1]} {moment.day}, {moment.year}"
    return f"In the Mythos it is {moment:%H:%M} on {date} ({daypart(moment.hour)})."


def game_time_payload(wall_s: float) -> dict[str, object]:
    """The body of ``GET /v1/game/time`` (section 18): the clock plus ``server_timestamp``."""
    return {**mythos_time(wall_s), "server_timestamp": format_timestamp(wall_s)}
