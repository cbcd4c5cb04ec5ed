"""The overview: subscribers by status and cadence, growth, the last editions' delivery progress.

Its counts scan the whole list, so they are computed at most once a minute per process (the page says how old
they are); the editions' progress is read on every view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Engine
from starlette.responses import Response
from starlette.routing import Route

from feedsvc import feed_readers
from feedsvc.store import dashboard
from feedsvc.store.editions import delivery_states
from feedsvc.vocabulary import FREQUENCIES, STATUSES
from feedsvc.web.admin.common import CACHE_SECONDS, PREFIX, Admin, MinuteCache, admin_page, now

GROWTH_RANGES = (30, 90, 365)
RECENT_EDITIONS = 10
RATE_WINDOW = timedelta(minutes=5)
CHART_WIDTH, CHART_HEIGHT = 600, 160


@dataclass(frozen=True, slots=True)
class Counts:
    by_status_and_frequency: dict[tuple[str, str], int]
    growth: dashboard.Growth  # over the longest range
    computed_at: datetime


def _counts(engine: Engine) -> Counts:
    moment = now()
    with engine.connect() as connection:
        return Counts(
            dashboard.counts_by_status_and_frequency(connection),
            dashboard.growth(connection, moment - timedelta(days=max(GROWTH_RANGES))),
            moment,
        )


_cache = MinuteCache()


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


@dataclass(frozen=True, slots=True)
class GrowthPoint:
    day: date
    confirmed: int
    left: int
    total: int


def growth_points(growth: dashboard.Growth, today: date, days: int) -> list[GrowthPoint]:
    """One point per day of the last `days`, with the running total of confirmed subscribers still there."""
    first = today - timedelta(days=days - 1)
    total = growth.confirmed_before
    for day, number in growth.confirmed.items():
        total += number if day < first else 0
    for day, number in growth.left.items():
        total -= number if day < first else 0
    points = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        confirmed, left = growth.confirmed.get(day, 0), growth.left.get(day, 0)
        total += confirmed - left
        points.append(GrowthPoint(day, confirmed, left, total))
    return points


def chart_path(points: list[GrowthPoint]) -> tuple[str, int, int]:
    """The SVG polyline of the totals, scaled into the chart, and the lowest and highest total."""
    low, high = min(point.total for point in points), max(point.total for point in points)
    span = max(high - low, 1)
    step = CHART_WIDTH / max(len(points) - 1, 1)
    coordinates = (
        f"{index * step:.1f},{CHART_HEIGHT - 10 - (point.total - low) * (CHART_HEIGHT - 20) / span:.1f}"
        for index, point in enumerate(points)
    )
    return " ".join(coordinates), low, high


@admin_page
async def overview(admin: Admin) -> Response:
    engine = admin.web.engine
    counts = await admin.run(_cache.get, id(engine), lambda: _counts(engine))
    days = int(admin.field("days", "30")) if admin.field("days", "30") in {str(d) for d in GROWTH_RANGES} else 30
    total = sum(counts.by_status_and_frequency.values())
    statuses = [
        (status, number, _percent(number, total))
        for status in STATUSES
        for number in [sum(n for (s, _), n in counts.by_status_and_frequency.items() if s == status)]
    ]
    confirmed = sum(n for (s, _), n in counts.by_status_and_frequency.items() if s == "active")
    frequencies = [
        (frequency, number, _percent(number, confirmed))
        for frequency in FREQUENCIES
        for number in [counts.by_status_and_frequency.get(("active", frequency), 0)]
    ]
    points = growth_points(counts.growth, now().date(), days)
    path, low, high = chart_path(points)

    def recent_editions():
        moment = now()
        with engine.connect() as connection:
            editions = dashboard.editions_page(connection, before_id=None, limit=RECENT_EDITIONS)
            states = delivery_states(connection, [edition.id for edition in editions])
            rates = {
                edition.id: dashboard.sent_since(connection, edition.id, moment - RATE_WINDOW)
                for edition in editions
                if any(states[edition.id].get(state) for state in ("queued", "sending", "retry"))
            }
        return editions, states, rates

    editions, states, rates = await admin.run(recent_editions)
    audiences = await admin.run(feed_readers.audiences, engine, now())
    progress = []
    for edition in editions:
        state = states[edition.id]
        waiting = sum(state.get(s, 0) for s in ("queued", "sending", "retry"))
        per_minute = rates.get(edition.id, 0) / (RATE_WINDOW.total_seconds() / 60)
        minutes_left = round(waiting / per_minute) if waiting and per_minute else None
        progress.append({"edition": edition, "total": sum(state.values()), "sent": state.get("sent", 0),
                         "waiting": waiting, "failed": state.get("failed", 0), "bounced": state.get("bounced", 0),
                         "per_minute": per_minute, "minutes_left": minutes_left})
    return admin.render(
        "overview", total=total, statuses=statuses, frequencies=frequencies, confirmed=confirmed,
        computed_at=counts.computed_at, cache_seconds=CACHE_SECONDS, days=days, ranges=GROWTH_RANGES,
        points=points, chart_path=path, chart_low=low, chart_high=high, chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT, progress=progress, audiences=audiences, reader_days=feed_readers.WINDOW_DAYS,
    )


routes = [Route(f"{PREFIX}/", overview, methods=["GET"])]
