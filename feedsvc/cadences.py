"""How often a subscriber gets mail: the one definition of each cadence.

`CADENCES` is the registry. Everything that names or schedules a cadence reads it: the domain's vocabulary
(`vocabulary.FREQUENCIES`), the forms, the admin API, CSV import and `subscribers add` (which names they accept), the
scheduler (when to fire), the digests (which window a period covers), the preview and the mails' strings (keys
derived from the name). A new cadence is one entry here plus its words in every catalog of `feedsvc/locale`
(`cadence_<name>` and `heading_<name>` for mails, `frequency_<name>` for pages), and its settings in
`[digest]` when it has any.

A periodic cadence goes out at a local wall-clock time in the site's timezone on the days its calendar picks.
`latest_run` answers "which period has ended by now" and `next_run` "when does it fire next", both stepping by
local calendar days, so a run stays at 08:00 local across DST changes and a wall time a DST jump skips happens
at the jump. The scheduler fires at `next_run` (see `scheduler.CalendarTrigger`): there is no second definition.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from feedsvc.config import Settings

# The one cadence that is not on a calendar: a mail per batch of posts announced together.
INSTANT = "instant"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Calendar:
    """When a periodic cadence goes out: `at` local time on the days `runs_on` picks, in `timezone`."""

    name: str  # the cadence's name, the first part of its period keys
    at: time
    runs_on: Callable[[date], bool]
    timezone: str  # IANA name, e.g. "Asia/Jakarta"
    longest_gap_days: int  # no two runs are further apart than this many local days

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def latest_run(self, now: datetime) -> datetime:
        """The last scheduled moment at or before `now` (aware, UTC)."""
        day = now.astimezone(self.tz).date()
        for _ in range(self.longest_gap_days + 1):
            if self.runs_on(day):
                moment = _local_moment(day, self.at, self.tz)
                if moment <= now:
                    return moment
            day -= timedelta(days=1)
        raise AssertionError(f"a {self.name} calendar runs at least once in {self.longest_gap_days + 1} days")

    def next_run(self, now: datetime) -> datetime:
        """The first scheduled moment strictly after `now` (aware, UTC)."""
        day = now.astimezone(self.tz).date()
        for _ in range(self.longest_gap_days + 2):
            if self.runs_on(day):
                moment = _local_moment(day, self.at, self.tz)
                if moment > now:
                    return moment
            day += timedelta(days=1)
        raise AssertionError(f"a {self.name} calendar runs at least once in {self.longest_gap_days + 1} days")

    def period_key(self, end: datetime) -> str:
        """`daily:2026-11-23T08:00:00`: the cadence and the local time a period ends at."""
        return f"{self.name}:{end.astimezone(self.tz).replace(tzinfo=None).isoformat()}"


def _local_moment(day: date, at: time, tz: ZoneInfo) -> datetime:
    # Through UTC and back: a wall time that does not exist (skipped by a DST jump) becomes the real instant
    # just after the jump, the way clocks on the wall read it.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def _every_day(day: date) -> bool:
    return True


def _on_weekday(weekday: str) -> Callable[[date], bool]:
    return lambda day: WEEKDAYS[day.weekday()] == weekday


def _on_day_of_month(wanted: int) -> Callable[[date], bool]:
    """`wanted` of each month, or the month's last day when it is shorter (31: the last day of every month)."""
    return lambda day: day.day == min(wanted, calendar.monthrange(day.year, day.month)[1])


@dataclass(frozen=True, slots=True)
class Cadence:
    name: str
    # The calendar from the settings; None: a mail per batch of new posts, as soon as they are announced.
    calendar_of: Callable[[Settings], Calendar] | None = None

    @property
    def periodic(self) -> bool:
        return self.calendar_of is not None

    # The keys of its words in the catalogs (feedsvc/locale; `choice_key` among the "web" strings, the others "mail").
    @property
    def choice_key(self) -> str:
        """The choice in forms: "Daily digest"."""
        return f"frequency_{self.name}"

    @property
    def subject_key(self) -> str:
        """In a periodic digest's subject: "daily digest"."""
        return f"cadence_{self.name}"

    @property
    def heading_key(self) -> str:
        """The mail's heading: "Your daily digest from {site}"."""
        return f"heading_{self.name}"

    def calendar(self, settings: Settings) -> Calendar:
        if self.calendar_of is None:
            raise ValueError(f"{self.name} mail goes out per batch of posts, not on a calendar")
        return self.calendar_of(settings)


CADENCES: dict[str, Cadence] = {
    cadence.name: cadence
    for cadence in (
        Cadence(INSTANT),
        Cadence(
            "daily",
            lambda s: Calendar("daily", s.digest.daily_time, _every_day, s.site.timezone, 1),
        ),
        Cadence(
            "weekly",
            lambda s: Calendar("weekly", s.digest.weekly_time, _on_weekday(s.digest.weekly_day), s.site.timezone, 7),
        ),
        Cadence(
            "monthly",
            lambda s: Calendar(
                "monthly", s.digest.monthly_time, _on_day_of_month(s.digest.monthly_day), s.site.timezone, 31
            ),
        ),
    )
}

PERIODIC = tuple(name for name, cadence in CADENCES.items() if cadence.periodic)


def calendars(settings: Settings) -> list[Calendar]:
    """The calendars of the periodic cadences, in registry order."""
    return [cadence.calendar(settings) for cadence in CADENCES.values() if cadence.periodic]


def edition_times(settings: Settings, announced_at: datetime) -> dict[str, datetime]:
    """When a post announced at `announced_at` goes out in each cadence: at once in an instant mail, and in the
    digest of the period it falls in, which goes out at that period's end (the first run after it)."""
    return {
        name: cadence.calendar(settings).next_run(announced_at) if cadence.periodic else announced_at
        for name, cadence in CADENCES.items()
    }
