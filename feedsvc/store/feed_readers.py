"""Feed-reader rows: counts written in batches by `feedsvc.feed_readers`, read back for the dashboard."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, func, select

from feedsvc.store.dialects import insert_ignoring_conflicts, upsert
from feedsvc.store.schema import feed_fetchers, feed_reader_counts


def record_counts(connection: Connection, rows: Iterable[dict]) -> None:
    """Rows of day, feed, reader, reader_feed_id, subscribers, seen_at: the later sighting wins."""
    rows = list(rows)
    if not rows:
        return
    table = upsert(connection, feed_reader_counts)
    statement = table.on_conflict_do_update(
        index_elements=["day", "feed", "reader", "reader_feed_id"],
        set_={"subscribers": table.excluded.subscribers, "seen_at": table.excluded.seen_at},
        where=feed_reader_counts.c.seen_at <= table.excluded.seen_at,
    )
    connection.execute(statement, rows)


def record_fetchers(connection: Connection, rows: Iterable[dict]) -> None:
    """Rows of day, feed, client; one already there is left alone."""
    rows = list(rows)
    if rows:
        connection.execute(insert_ignoring_conflicts(connection, feed_fetchers, ["day", "feed", "client"]), rows)


def latest_counts(connection: Connection, since_day: str) -> list[tuple[str, str, int]]:
    """(feed, reader, subscribers) since that day: for each reader's feed id its latest count, summed."""
    c = feed_reader_counts.c
    latest = (
        select(c.feed, c.reader, c.reader_feed_id, func.max(c.seen_at).label("seen_at"))
        .where(c.day >= since_day)
        .group_by(c.feed, c.reader, c.reader_feed_id)
        .subquery()
    )
    statement = (
        select(c.feed, c.reader, func.sum(c.subscribers))
        .join(latest, (c.feed == latest.c.feed) & (c.reader == latest.c.reader)
              & (c.reader_feed_id == latest.c.reader_feed_id) & (c.seen_at == latest.c.seen_at))
        .where(c.day >= since_day)
        .group_by(c.feed, c.reader)
        .order_by(c.feed, c.reader)
    )
    return [(feed, reader, int(number)) for feed, reader, number in connection.execute(statement)]


def distinct_fetchers(connection: Connection, since_day: str) -> dict[str, int]:
    c = feed_fetchers.c
    statement = select(c.feed, func.count(func.distinct(c.client))).where(c.day >= since_day).group_by(c.feed)
    return {feed: number for feed, number in connection.execute(statement)}


def forget_before(connection: Connection, day: str) -> None:
    connection.execute(delete(feed_reader_counts).where(feed_reader_counts.c.day < day))
    connection.execute(delete(feed_fetchers).where(feed_fetchers.c.day < day))
