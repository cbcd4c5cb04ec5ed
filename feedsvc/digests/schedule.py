"""When daily and weekly digests go out: local wall-clock times in the site's timezone, as data.

The service turns `schedules()` into cron triggers; `latest_run()` answers "which period has ended by now",
stepping by local calendar days so a run stays at 08:00 local across DST changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from feedsvc.config import Settings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PERIODIC = ("daily", "weekly")


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """One periodic digest: the fields of an APScheduler CronTrigger."""

    frequency: str  # "daily" | "weekly"
    hour: int
    minute: int
    second: int
    day_of_week: str | None  # "mon".."sun" for weekly, None for daily
    timezone: str  # IANA name, e.g. "Asia/Jakarta"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def at(self) -> time:
        return time(self.hour, self.minute, self.second)

    def latest_run(self, now: datetime) -> datetime:
        """The last scheduled moment at or before `now` (aware, UTC)."""
        day = now.astimezone(self.tz).date()
        for _ in range(8):
            if self._runs_on(day):
                moment = _local_moment(day, self.at, self.tz)
                if moment <= now:
                    return moment
            day -= timedelta(days=1)
        raise AssertionError("a weekly schedule runs at least once in 8 days")

    def next_run(self, now: datetime) -> datetime:
        """The first scheduled moment strictly after `now` (aware, UTC)."""
        day = now.astimezone(self.tz).date()
        for _ in range(9):
            if self._runs_on(day):
                moment = _local_moment(day, self.at, self.tz)
                if moment > now:
                    return moment
            day += timedelta(days=1)
        raise AssertionError("a weekly schedule runs at least once in 8 days")

    def period_key(self, end: datetime) -> str:
        """`daily:2026-11-23T08:00:00`: the frequency and the local time a period ends at."""
        return f"{self.frequency}:{end.astimezone(self.tz).replace(tzinfo=None).isoformat()}"

    def _runs_on(self, day: date) -> bool:
        return self.day_of_week is None or WEEKDAYS[day.weekday()] == self.day_of_week


def _local_moment(day: date, at: time, tz: ZoneInfo) -> datetime:
    # Through UTC and back: a wall time that does not exist (skipped by a DST jump) becomes the real instant
    # just after the jump, the way clocks on the wall read it.
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def schedules(settings: Settings) -> list[DigestSchedule]:
    digest, tz = settings.digest, settings.site.timezone
    return [
        DigestSchedule("daily", digest.daily_time.hour, digest.daily_time.minute, digest.daily_time.second, None, tz),
        DigestSchedule(
            "weekly",
            digest.weekly_time.hour,
            digest.weekly_time.minute,
            digest.weekly_time.second,
            digest.weekly_day,
            tz,
        ),
    ]


def schedule_for(settings: Settings, frequency: str) -> DigestSchedule:
    return next(schedule for schedule in schedules(settings) if schedule.frequency == frequency)


def next_run_times(settings: Settings, now: datetime) -> dict[str, datetime]:
    """When each periodic digest next goes out, e.g. {"daily": ..., "weekly": ...} (aware, UTC)."""
    return {schedule.frequency: schedule.next_run(now) for schedule in schedules(settings)}
