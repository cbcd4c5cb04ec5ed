"""What is new, for whom, when: announcements, periods, editions and their deliveries, on both backends."""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import add_subscribers, write_post
from sqlalchemy import Engine, func, select, text

from feedsvc.cadences import CADENCES, calendars
from feedsvc.config import ConfigError, Settings
from feedsvc.digests import run_due
from feedsvc.posts import Collection
from feedsvc.store import open_engine
from feedsvc.store.schema import announcements, deliveries, digest_periods, editions

UTC_START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday


@pytest.fixture
def site(make_settings, store_url):
    """Settings on tmp folders with the store at `store_url`; an engine on it, closed afterwards."""
    engines: list[Engine] = []

    def make(**sections) -> tuple[Settings, Engine]:
        settings = make_settings(store={"url": store_url}, **sections)
        engine = open_engine(store_url)
        engines.append(engine)
        return settings, engine

    yield make
    for engine in engines:
        engine.dispose()


def scan(settings: Settings):
    return Collection(settings).scan()


def run(settings: Settings, engine: Engine, now: datetime, **options):
    return run_due(settings, engine, scan(settings), now, **options)


def delivered(engine: Engine) -> dict[int, list[tuple[str, ...]]]:
    """subscriber id -> the post ids of each edition queued for them."""
    statement = select(deliveries.c.subscriber_id, editions.c.post_ids).join(editions)
    result: dict[int, list[tuple[str, ...]]] = {}
    with engine.connect() as connection:
        for subscriber_id, post_ids in connection.execute(statement):
            result.setdefault(subscriber_id, []).append(tuple(post_ids))
    return result


def post_ids_by_title(settings: Settings) -> dict[str, str]:
    return {post.title: post.id for post in scan(settings).posts}


def titles(settings: Settings, post_ids) -> list[str]:
    by_id = {post.id: post.title for post in scan(settings).posts}
    return [by_id[post_id] for post_id in post_ids]


# --- what is new ----------------------------------------------------------------------------------------------


def test_first_run_records_the_archive_without_mailing_it(site):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "old-one.md", title="Old one", date=UTC_START - timedelta(days=30))
    write_post(posts, "old-two.md", title="Old two", date=UTC_START - timedelta(days=3))
    ids = add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=60))
    add_subscribers(engine, ["day@example.org"], frequency="daily", confirmed_at=UTC_START - timedelta(days=60))

    assert run(settings, engine, UTC_START) == []
    # A day later the daily digest has nothing: the archive is not news.
    assert run(settings, engine, UTC_START + timedelta(days=1)) == []
    with engine.connect() as connection:
        rows = connection.execute(select(announcements.c.title, announcements.c.mailable)).all()
    assert sorted(rows) == [("Old one", 0), ("Old two", 0)]
    assert delivered(engine) == {}

    write_post(posts, "new.md", title="New", date=UTC_START + timedelta(days=1, hours=1))
    summaries = run(settings, engine, UTC_START + timedelta(days=1, hours=2))
    assert [(s.frequency, titles(settings, s.post_ids), s.deliveries) for s in summaries] == [("instant", ["New"], 1)]
    assert list(delivered(engine)) == ids


def test_a_blog_that_starts_empty_mails_its_first_post(site):
    settings, engine = site()
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=1))
    assert run(settings, engine, UTC_START) == []  # the first run: an empty archive
    write_post(settings.posts.dir, "first.md", title="First", date=UTC_START + timedelta(minutes=1))
    summaries = run(settings, engine, UTC_START + timedelta(minutes=2))
    assert [titles(settings, s.post_ids) for s in summaries] == [["First"]]


def test_include_archive_mails_the_archive(site):
    settings, engine = site()
    write_post(settings.posts.dir, "old-one.md", title="Old one", date=UTC_START - timedelta(days=30))
    write_post(settings.posts.dir, "old-two.md", title="Old two", date=UTC_START - timedelta(days=3))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=1))

    summaries = run(settings, engine, UTC_START, include_archive=True)
    assert [(s.frequency, titles(settings, s.post_ids), s.deliveries) for s in summaries] == [
        ("instant", ["Old two", "Old one"], 1)
    ]
    # Asking again later changes nothing: the archive went out once.
    assert run(settings, engine, UTC_START + timedelta(hours=1), include_archive=True) == []


def test_include_archive_after_the_first_run_releases_the_archive_once(site):
    settings, engine = site()
    write_post(settings.posts.dir, "old.md", title="Old", date=UTC_START - timedelta(days=30))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=1))
    assert run(settings, engine, UTC_START) == []

    summaries = run(settings, engine, UTC_START + timedelta(hours=1), include_archive=True)
    assert [titles(settings, s.post_ids) for s in summaries] == [["Old"]]
    assert run(settings, engine, UTC_START + timedelta(hours=2), include_archive=True) == []


def test_a_post_is_announced_once_across_rescans_edits_renames_and_restarts(site, store_url):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "first.md", title="First", date=UTC_START - timedelta(days=1))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=2))
    assert run(settings, engine, UTC_START) == []

    path = write_post(posts, "2026-11-02-news.md", title="News", date=UTC_START + timedelta(minutes=5))
    collection = Collection(settings)
    now = UTC_START + timedelta(minutes=10)
    assert len(run_due(settings, engine, collection.scan(), now)) == 1
    # The same collection again, then an edit, then a rename that keeps the slug ("news").
    assert run_due(settings, engine, collection.scan(), now + timedelta(minutes=1)) == []
    write_post(posts, path.name, title="News (edited)", date=UTC_START + timedelta(minutes=5), body="More words.")
    assert run_due(settings, engine, collection.scan(), now + timedelta(minutes=2)) == []
    path.rename(posts / "news.md")
    assert run_due(settings, engine, collection.scan(), now + timedelta(minutes=3)) == []
    # A restart: a new engine and a new collection on the same store.
    engine.dispose()
    restarted = open_engine(store_url)
    try:
        assert run_due(settings, restarted, Collection(settings).scan(), now + timedelta(minutes=4)) == []
        assert sum(len(editions) for editions in delivered(restarted).values()) == 1
    finally:
        restarted.dispose()


def _announcement_rows(engine: Engine) -> tuple[set[tuple], set[frozenset[str]]]:
    """The announcements as rows (all but their batch names) and the posts of each batch."""
    columns = [column for column in announcements.c if column.name not in ("batch", "id")]
    batches: dict[str, set[str]] = {}
    with engine.connect() as connection:
        rows = {tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in connection.execute(select(*columns))}
        for post_id, batch in connection.execute(select(announcements.c.post_id, announcements.c.batch)):
            batches.setdefault(batch, set()).add(post_id)
    return rows, {frozenset(ids) for ids in batches.values()}


def test_announcing_after_edits_in_place_records_what_reading_every_announcement_back_does(
    site, make_settings, tmp_path
) -> None:
    """The service announces with the posts of its last committed pass (`announce`'s `since`): when only posts
    edited in place changed, it looks up only those. Random rounds of edits in place, new, removed, renamed and
    retitled posts, drafts and posts coming due leave the same announcements, batches and editions as passes that
    read every announcement back (a second store, its memory of the last pass dropped before each pass)."""
    import random

    from sqlalchemy import event

    from feedsvc.digests import editions as digest_editions
    from feedsvc.posts import Post, Scan

    settings, engine = site()
    reference_settings = make_settings(store={"url": f"sqlite:///{tmp_path / 'reference.db'}"})
    reference = open_engine(reference_settings.store.database_url)
    confirmed = UTC_START - timedelta(days=30)
    for store in (engine, reference):
        add_subscribers(store, ["now@example.org"], frequency="instant", confirmed_at=confirmed)
        add_subscribers(store, ["day@example.org"], frequency="daily", confirmed_at=confirmed)
    full_reads: list[int] = []  # per round, how many times every announcement was read back

    @event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().startswith("SELECT announcements.post_id, announcements.title") and "WHERE" not in statement:
            full_reads[-1] += 1

    rng = random.Random(5)
    serial = iter(range(10_000))

    def new_post(day: datetime, title: str | None = None) -> Post:
        number = next(serial)
        return Post(
            id=f"post-{number}", slug=f"post-{number}", title=title or f"Post {number}", date=day, updated=None,
            url=f"https://blog.example.org/post-{number}/", tags=("go",) if number % 2 else (), author="A",
            image=None, draft=rng.random() < 0.1, source=Path(f"post-{number}.md"),
            summary_html=f"<p>About {number}.</p>", content_html=f"<p>All of {number}.</p>",
        )

    posts = [new_post(UTC_START - timedelta(days=rng.randint(1, 20))) for _ in range(40)]
    now = UTC_START
    try:
        for round_number in range(40):
            now += timedelta(hours=rng.choice([1, 2, 7]))
            kind = rng.choice(["edit", "edit", "edit", "edit", "new", "later", "gone", "renamed", "draft"])
            if kind == "edit":  # new versions in the same places, title or date kept in place
                for place in rng.sample(range(len(posts)), rng.randint(1, 3)):
                    posts[place] = replace(posts[place], title=f"{posts[place].title} (r{round_number})")
            elif kind == "new":
                posts.append(new_post(now - timedelta(minutes=rng.randint(1, 50))))
            elif kind == "later":  # comes due a few rounds from now
                posts.append(new_post(now + timedelta(hours=rng.randint(2, 12))))
            elif kind == "gone":
                posts.pop(rng.randrange(len(posts)))
            elif kind == "renamed":  # the file renamed: another id, the same title and date
                place = rng.randrange(len(posts))
                number = next(serial)
                posts[place] = replace(posts[place], id=f"post-{number}", source=Path(f"post-{number}.md"))
            else:
                place = rng.randrange(len(posts))
                posts[place] = replace(posts[place], draft=not posts[place].draft)
            posts.sort(key=lambda item: (item.date.timestamp(), item.slug), reverse=True)
            held = [place for place, item in enumerate(posts) if item.draft or item.expires is not None]
            scan = Scan(list(posts), [], set(), set(), held)
            full_reads.append(0)
            mailed = run_due(settings, engine, scan, now)
            digest_editions._last_announced.pop(reference, None)  # the reference reads every announcement back
            expected = run_due(reference_settings, reference, scan, now)
            assert [summary.post_ids for summary in mailed] == [summary.post_ids for summary in expected]
            assert _announcement_rows(engine) == _announcement_rows(reference), f"round {round_number}: {kind}"
    finally:
        reference.dispose()
    assert full_reads.count(0) >= 10  # the edits in place were announced without reading everything back


def test_a_renamed_post_without_slug_or_id_is_not_announced_again(site, store_url):
    """README: renaming a post never announces it again, also when its file name is all it has for an id."""
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "first.md", title="First", date=UTC_START - timedelta(days=1))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=2))
    assert run(settings, engine, UTC_START) == []

    path = write_post(posts, "my-post.md", title="My post", date=UTC_START + timedelta(minutes=5))
    mailed = run(settings, engine, UTC_START + timedelta(minutes=10))
    assert [titles(settings, summary.post_ids) for summary in mailed] == [["My post"]]
    before = post_ids_by_title(settings)["My post"]

    path = path.rename(posts / "my-renamed-post.md")
    after = post_ids_by_title(settings)["My post"]
    assert after != before  # the id follows the file name: only the store can tell it is the same post
    assert run(settings, engine, UTC_START + timedelta(minutes=20)) == []
    # Edited later (a new title), then renamed again: still the same post.
    write_post(posts, path.name, title="My post, retitled", date=UTC_START + timedelta(minutes=5), body="Fixed.")
    assert run(settings, engine, UTC_START + timedelta(minutes=30)) == []
    path.rename(posts / "2026-11-02-final-name.md")
    assert run(settings, engine, UTC_START + timedelta(minutes=40)) == []
    # The announcement follows the post, so the daily digest still finds it.
    with engine.connect() as connection:
        recorded = connection.execute(select(announcements.c.post_id, announcements.c.slug)).all()
    assert (post_ids_by_title(settings)["My post, retitled"], "final-name") in recorded
    # A copy beside the original is another post, and news.
    write_post(posts, "copy.md", title="My post, retitled", date=UTC_START + timedelta(minutes=5), body="Fixed.")
    mailed = run(settings, engine, UTC_START + timedelta(minutes=50))
    assert [titles(settings, summary.post_ids) for summary in mailed] == [["My post, retitled"]]
    assert sum(len(editions) for editions in delivered(engine).values()) == 2


def test_a_post_whose_id_the_store_cannot_hold_does_not_stop_the_others(site, caplog):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "first.md", title="First", date=UTC_START - timedelta(days=1))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=2))
    assert run(settings, engine, UTC_START) == []

    when = (UTC_START + timedelta(minutes=5)).isoformat()
    (posts / "long.md").write_text(f"---\ntitle: Long\ndate: {when}\nid: {'x' * 600}\n---\n\nWords.\n")
    write_post(posts, "fine.md", title="Fine", date=UTC_START + timedelta(minutes=5))
    mailed = run(settings, engine, UTC_START + timedelta(minutes=10))
    assert [titles(settings, summary.post_ids) for summary in mailed] == [["Fine"]]
    [warning] = [record.feedsvc_fields for record in caplog.records if record.msg == "digest.not_announced"]
    assert warning["file"].endswith("long.md") and "longer than 512" in warning["reason"]


def test_drafts_and_future_posts_wait_until_they_are_due(site):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "first.md", title="First", date=UTC_START - timedelta(days=1))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=2))
    assert run(settings, engine, UTC_START) == []

    draft = write_post(posts, "draft.md", title="Draft", date=UTC_START + timedelta(minutes=1), draft=True)
    write_post(posts, "later.md", title="Later", date=UTC_START + timedelta(hours=3))
    assert run(settings, engine, UTC_START + timedelta(hours=1)) == []
    summaries = run(settings, engine, UTC_START + timedelta(hours=3, seconds=1))
    assert [titles(settings, s.post_ids) for s in summaries] == [["Later"]]
    # The draft published later is news when it is published, not before.
    write_post(posts, draft.name, title="Draft", date=UTC_START + timedelta(minutes=1))
    summaries = run(settings, engine, UTC_START + timedelta(hours=4))
    assert [titles(settings, s.post_ids) for s in summaries] == [["Draft"]]


def test_posts_found_in_one_scan_go_out_in_one_instant_mail(site):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "first.md", title="First", date=UTC_START - timedelta(days=1))
    ids = add_subscribers(
        engine, ["a@example.org", "b@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=2)
    )
    run(settings, engine, UTC_START)

    write_post(posts, "one.md", title="One", date=UTC_START + timedelta(minutes=1))
    write_post(posts, "two.md", title="Two", date=UTC_START + timedelta(minutes=2))
    summaries = run(settings, engine, UTC_START + timedelta(minutes=3))
    assert len(summaries) == 1
    assert sorted(titles(settings, summaries[0].post_ids)) == ["One", "Two"]
    assert summaries[0].deliveries == 2
    assert {subscriber: len(sent) for subscriber, sent in delivered(engine).items()} == {ids[0]: 1, ids[1]: 1}


# --- when -----------------------------------------------------------------------------------------------------


def test_schedule_is_local_wall_clock_time_across_dst(make_settings):
    settings = make_settings(site={"timezone": "Europe/Berlin"}, digest={"daily_time": time(8, 0), "weekly_day": "sun"})
    daily = CADENCES["daily"].calendar(settings)
    # 08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer; the switch night of 2026-03-29 is short.
    assert daily.latest_run(datetime(2026, 3, 28, 12, 0, tzinfo=UTC)) == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    assert daily.latest_run(datetime(2026, 3, 29, 12, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert daily.next_run(datetime(2026, 10, 24, 12, 0, tzinfo=UTC)) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)
    assert {c.name: c.next_run(datetime(2026, 3, 25, 12, 0, tzinfo=UTC)) for c in calendars(settings)} == {
        "daily": datetime(2026, 3, 26, 7, 0, tzinfo=UTC),
        "weekly": datetime(2026, 3, 29, 6, 0, tzinfo=UTC),
        "monthly": datetime(2026, 4, 1, 6, 0, tzinfo=UTC),
    }
    # A wall time the DST jump skips (02:30 on 2026-03-29) happens at the jump: 03:30 CEST, 01:30 UTC.
    settings = make_settings(site={"timezone": "Europe/Berlin"}, digest={"daily_time": time(2, 30)})
    assert CADENCES["daily"].calendar(settings).next_run(datetime(2026, 3, 29, 0, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )
    # The wall time happens once when the clocks go back (02:30 on 2026-10-25 comes twice): at the first.
    assert CADENCES["daily"].calendar(settings).next_run(datetime(2026, 10, 24, 12, 0, tzinfo=UTC)) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )
    assert CADENCES["daily"].calendar(settings).next_run(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_the_monthly_day_is_the_last_day_of_shorter_months(make_settings):
    settings = make_settings(site={"timezone": "Asia/Jakarta"}, digest={"monthly_day": 31, "monthly_time": time(7, 15, 30)})
    monthly = CADENCES["monthly"].calendar(settings)
    jakarta = ZoneInfo("Asia/Jakarta")
    runs = [datetime(2026, 1, 1, tzinfo=jakarta)]
    for _ in range(5):
        runs.append(monthly.next_run(runs[-1]))
    assert [run.astimezone(jakarta).replace(tzinfo=None) for run in runs[1:]] == [
        datetime(2026, 1, 31, 7, 15, 30),
        datetime(2026, 2, 28, 7, 15, 30),
        datetime(2026, 3, 31, 7, 15, 30),
        datetime(2026, 4, 30, 7, 15, 30),
        datetime(2026, 5, 31, 7, 15, 30),
    ]
    assert monthly.latest_run(datetime(2026, 3, 30, tzinfo=jakarta)) == runs[2]
    assert monthly.period_key(runs[2]) == "monthly:2026-02-28T07:15:30"


def test_a_monthly_day_outside_1_to_31_is_refused(make_settings):
    with pytest.raises(ConfigError, match="monthly_day"):
        make_settings(digest={"monthly_day": 32})


def test_daily_windows_follow_local_time_through_a_dst_change(site):
    settings, engine = site(site={"timezone": "Europe/Berlin"}, digest={"daily_time": time(8, 0)})
    berlin = ZoneInfo("Europe/Berlin")
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=datetime(2026, 3, 20, 9, 0, tzinfo=berlin))
    ids = add_subscribers(engine, ["day@example.org"], confirmed_at=datetime(2026, 3, 1, tzinfo=UTC))
    run(settings, engine, datetime(2026, 3, 27, 12, 0, tzinfo=berlin))

    write_post(posts, "a.md", title="A", date=datetime(2026, 3, 28, 7, 30, tzinfo=berlin))
    summaries = run(settings, engine, datetime(2026, 3, 28, 8, 0, 30, tzinfo=berlin))
    assert [(s.period_key, titles(settings, s.post_ids)) for s in summaries] == [("daily:2026-03-28T08:00:00", ["A"])]

    # The night to 2026-03-29 is 23 hours long: 07:30 local is before the 08:00 digest, 08:30 local after it,
    # although both are less than 24 hours after the previous digest.
    write_post(posts, "b.md", title="B", date=datetime(2026, 3, 29, 7, 30, tzinfo=berlin))
    write_post(posts, "c.md", title="C", date=datetime(2026, 3, 29, 8, 30, tzinfo=berlin))
    summaries = run(settings, engine, datetime(2026, 3, 29, 8, 45, tzinfo=berlin))
    assert [(s.period_key, titles(settings, s.post_ids)) for s in summaries] == [("daily:2026-03-29T08:00:00", ["B"])]
    with engine.connect() as connection:
        window = connection.execute(
            select(digest_periods.c.period_start, digest_periods.c.period_end).where(
                digest_periods.c.key == "daily:2026-03-29T08:00:00"
            )
        ).one()
    assert window == (datetime(2026, 3, 28, 7, 0, tzinfo=UTC), datetime(2026, 3, 29, 6, 0, tzinfo=UTC))

    summaries = run(settings, engine, datetime(2026, 3, 30, 8, 0, 1, tzinfo=berlin))
    assert [titles(settings, s.post_ids) for s in summaries] == [["C"]]
    assert [len(sent) for sent in delivered(engine).values()] == [3]
    assert list(delivered(engine)) == ids


def test_weekly_digest_in_a_timezone_without_dst(site):
    settings, engine = site(
        site={"timezone": "Asia/Jakarta"}, digest={"weekly_day": "mon", "weekly_time": time(8, 0)}
    )
    jakarta = ZoneInfo("Asia/Jakarta")
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=datetime(2026, 11, 1, 9, 0, tzinfo=jakarta))
    add_subscribers(engine, ["week@example.org"], frequency="weekly", confirmed_at=datetime(2026, 10, 1, tzinfo=UTC))
    run(settings, engine, datetime(2026, 11, 4, 10, 0, tzinfo=jakarta))  # a Wednesday: the first run

    write_post(posts, "thu.md", title="Thursday", date=datetime(2026, 11, 5, 9, 0, tzinfo=jakarta))
    write_post(posts, "mon.md", title="Monday late", date=datetime(2026, 11, 9, 8, 30, tzinfo=jakarta))
    assert run(settings, engine, datetime(2026, 11, 9, 7, 59, tzinfo=jakarta)) == []
    summaries = run(settings, engine, datetime(2026, 11, 9, 9, 0, tzinfo=jakarta))
    assert [(s.frequency, s.period_key, titles(settings, s.post_ids)) for s in summaries] == [
        ("weekly", "weekly:2026-11-09T08:00:00", ["Thursday"])
    ]
    with engine.connect() as connection:
        end = connection.execute(
            select(digest_periods.c.period_end).where(digest_periods.c.key == "weekly:2026-11-09T08:00:00")
        ).scalar_one()
    assert end == datetime(2026, 11, 9, 1, 0, tzinfo=UTC)  # 08:00 in Jakarta, UTC+7 all year
    summaries = run(settings, engine, datetime(2026, 11, 16, 8, 0, tzinfo=jakarta))
    assert [titles(settings, s.post_ids) for s in summaries] == [["Monday late"]]


def test_a_monthly_digest_holds_the_months_posts_and_not_the_archive(site):
    settings, engine = site(site={"timezone": "Asia/Jakarta"}, digest={"monthly_day": 1, "monthly_time": time(9, 0)})
    jakarta = ZoneInfo("Asia/Jakarta")
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Archive", date=datetime(2026, 9, 20, 9, 0, tzinfo=jakarta))
    ids = add_subscribers(engine, ["month@example.org"], frequency="monthly", confirmed_at=datetime(2026, 9, 1, tzinfo=UTC))
    add_subscribers(engine, ["day@example.org"], frequency="daily", confirmed_at=datetime(2026, 9, 1, tzinfo=UTC))
    assert run(settings, engine, datetime(2026, 10, 3, 10, 0, tzinfo=jakarta)) == []  # the first run: the archive

    write_post(posts, "oct.md", title="October", date=datetime(2026, 10, 10, 9, 0, tzinfo=jakarta))
    write_post(posts, "late.md", title="Just after", date=datetime(2026, 11, 1, 9, 30, tzinfo=jakarta))
    before = run(settings, engine, datetime(2026, 11, 1, 8, 59, tzinfo=jakarta))
    assert [s.frequency for s in before] == ["daily"]  # the daily ones went out every day; no monthly yet
    summaries = [s for s in run(settings, engine, datetime(2026, 11, 1, 9, 45, tzinfo=jakarta)) if s.frequency == "monthly"]
    assert [(s.period_key, titles(settings, s.post_ids)) for s in summaries] == [("monthly:2026-11-01T09:00:00", ["October"])]
    assert delivered(engine)[ids[0]] == [summaries[0].post_ids]
    # The same moment again, and the days after: nothing more until 1 December.
    assert [s for s in run(settings, engine, datetime(2026, 11, 20, tzinfo=jakarta)) if s.frequency == "monthly"] == []
    summaries = [s for s in run(settings, engine, datetime(2026, 12, 1, 9, 0, tzinfo=jakarta)) if s.frequency == "monthly"]
    assert [titles(settings, s.post_ids) for s in summaries] == [["Just after"]]
    assert len(delivered(engine)[ids[0]]) == 2


def test_a_service_down_for_days_catches_up_with_one_digest(site):
    settings, engine = site(digest={"daily_time": time(8, 0)})
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    ids = add_subscribers(engine, ["day@example.org"], confirmed_at=UTC_START - timedelta(days=10))
    run(settings, engine, UTC_START)  # Monday 12:00
    # Down from Monday noon to Thursday 09:00; posts appeared on Tuesday and Wednesday.
    write_post(posts, "tue.md", title="Tuesday", date=UTC_START + timedelta(days=1))
    write_post(posts, "wed.md", title="Wednesday", date=UTC_START + timedelta(days=2))
    summaries = run(settings, engine, UTC_START + timedelta(days=2, hours=21))
    assert [(s.period_key, titles(settings, s.post_ids)) for s in summaries] == [
        ("daily:2026-11-05T08:00:00", ["Wednesday", "Tuesday"])
    ]
    assert delivered(engine) == {ids[0]: [summaries[0].post_ids]}


def test_posts_seen_late_go_into_the_period_they_were_published_in_unless_it_is_over(site):
    settings, engine = site(digest={"daily_time": time(8, 0)})
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    add_subscribers(engine, ["day@example.org"], confirmed_at=UTC_START - timedelta(days=10))
    run(settings, engine, UTC_START)  # Monday 12:00
    tuesday_8 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
    # Published at 07:00, first seen by the 08:00 run itself (cron + `digest send`): still in Tuesday's digest.
    write_post(posts, "early.md", title="Early", date=tuesday_8 - timedelta(hours=1))
    summaries = run(settings, engine, tuesday_8 + timedelta(seconds=5))
    assert [(s.period_key, titles(settings, s.post_ids)) for s in summaries] == [("daily:2026-11-03T08:00:00", ["Early"])]
    # Back-dated to Monday but written on Tuesday after the digest: news for Wednesday, not lost.
    write_post(posts, "backdated.md", title="Back-dated", date=UTC_START + timedelta(hours=2))
    assert run(settings, engine, tuesday_8 + timedelta(hours=3)) == []
    summaries = run(settings, engine, tuesday_8 + timedelta(days=1))
    assert [(s.period_key, titles(settings, s.post_ids)) for s in summaries] == [
        ("daily:2026-11-04T08:00:00", ["Back-dated"])
    ]


def test_posts_of_the_same_time_come_by_title_then_by_the_numbers_in_their_slugs(site):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    add_subscribers(engine, ["day@example.org"], confirmed_at=UTC_START - timedelta(days=10))
    run(settings, engine, UTC_START)
    same_time = UTC_START + timedelta(hours=1)
    for number in (9, 2, 10, 1, 3, 4, 5, 6, 7, 8):  # written in no particular order
        write_post(posts, f"part-{number}.md", title="Seri belajar SQL", slug=f"seri-sql-{number}", date=same_time)
    write_post(posts, "zeta.md", title="Zeta", date=same_time)
    write_post(posts, "alpha.md", title="Alpha", date=same_time)
    write_post(posts, "newest.md", title="Newest", date=same_time + timedelta(minutes=1))

    summaries = run(settings, engine, UTC_START + timedelta(days=1))
    slugs = {post.id: post.slug for post in scan(settings).posts}
    assert [slugs[post_id] for post_id in summaries[0].post_ids] == [
        "newest",
        "alpha",
        *(f"seri-sql-{number}" for number in range(1, 11)),
        "zeta",
    ]
    # The mail shows them in that order too (its list of contents and its posts).
    with engine.connect() as connection:
        html = connection.execute(select(editions.c.html)).scalar_one()
    positions = [html.index(f'/seri-sql-{number}/"') for number in range(1, 11)]
    assert positions == sorted(positions)


# --- for whom -------------------------------------------------------------------------------------------------


def test_tag_filters_narrow_posts_and_equal_selections_share_an_edition(site):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    confirmed = UTC_START - timedelta(days=10)
    go = add_subscribers(engine, ["go@example.org"], tags=["go"], confirmed_at=confirmed)[0]
    python = add_subscribers(engine, ["py@example.org"], tags=["python"], confirmed_at=confirmed)[0]
    everything = add_subscribers(engine, ["all@example.org", "all2@example.org"], confirmed_at=confirmed)
    rust = add_subscribers(engine, ["rust@example.org"], tags=["rust"], confirmed_at=confirmed)[0]
    run(settings, engine, UTC_START)

    write_post(posts, "go.md", title="Go news", date=UTC_START + timedelta(hours=1), tags=["Go"])
    write_post(posts, "both.md", title="Both", date=UTC_START + timedelta(hours=2), tags=["Python", "Go"])
    summaries = run(settings, engine, UTC_START + timedelta(days=1))
    assert sorted((titles(settings, s.post_ids), s.deliveries) for s in summaries) == [
        (["Both"], 1),
        (["Both", "Go news"], 3),
    ]
    sent = delivered(engine)
    assert {subscriber: [titles(settings, ids) for ids in editions] for subscriber, editions in sent.items()} == {
        go: [["Both", "Go news"]],
        python: [["Both"]],
        everything[0]: [["Both", "Go news"]],
        everything[1]: [["Both", "Go news"]],
    }
    assert rust not in sent  # nothing matches: no mail at all


def test_no_news_means_no_edition_and_no_delivery(site):
    settings, engine = site()
    write_post(settings.posts.dir, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    add_subscribers(engine, ["day@example.org"], confirmed_at=UTC_START - timedelta(days=10))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=10))
    for day in range(3):
        assert run(settings, engine, UTC_START + timedelta(days=day, hours=1)) == []
    with engine.connect() as connection:
        assert connection.execute(select(editions.c.id)).all() == []
        assert connection.execute(select(deliveries.c.id)).all() == []
        # The periods still happened: the next one starts where they ended.
        keys = connection.execute(select(digest_periods.c.key).where(digest_periods.c.frequency == "daily")).scalars()
        assert sorted(keys) == ["daily:2026-11-03T08:00:00", "daily:2026-11-04T08:00:00"]


def test_subscribers_never_get_posts_from_before_they_confirmed(site):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    early = add_subscribers(engine, ["early@example.org"], confirmed_at=UTC_START - timedelta(days=1))[0]
    run(settings, engine, UTC_START)
    write_post(posts, "news.md", title="News", date=UTC_START + timedelta(hours=2))
    run(settings, engine, UTC_START + timedelta(hours=3))  # announced at 14:00
    late = add_subscribers(engine, ["late@example.org"], confirmed_at=UTC_START + timedelta(hours=4))[0]
    write_post(posts, "later.md", title="Later", date=UTC_START + timedelta(hours=5))

    run(settings, engine, UTC_START + timedelta(days=1))
    sent = delivered(engine)
    assert [titles(settings, ids) for ids in sent[early]] == [["Later", "News"]]
    assert [titles(settings, ids) for ids in sent[late]] == [["Later"]]


def test_a_post_dated_before_someone_confirmed_but_first_seen_after_is_mailed_to_them(site):
    """A post dated this morning (`date: 2026-11-02` is midnight) and saved after someone subscribed at noon
    is news to them too: what counts is when feedsvc first saw it, not the date the post carries."""
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    run(settings, engine, UTC_START - timedelta(hours=1))
    instant = add_subscribers(engine, ["now@example.org"], frequency="instant", confirmed_at=UTC_START)[0]
    daily = add_subscribers(engine, ["day@example.org"], confirmed_at=UTC_START)[0]
    write_post(posts, "today.md", title="Today", date=UTC_START.replace(hour=0))
    run(settings, engine, UTC_START + timedelta(minutes=10))
    run(settings, engine, UTC_START + timedelta(days=1))
    sent = delivered(engine)
    assert [titles(settings, ids) for ids in sent[instant]] == [["Today"]]
    assert [titles(settings, ids) for ids in sent[daily]] == [["Today"]]


def test_inactive_and_unconfirmed_subscribers_get_nothing(site):
    settings, engine = site()
    write_post(settings.posts.dir, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    confirmed = UTC_START - timedelta(days=10)
    active = add_subscribers(engine, ["on@example.org"], frequency="instant", confirmed_at=confirmed)
    for status in ("pending", "unsubscribed", "bounced", "complained"):
        add_subscribers(engine, [f"{status}@example.org"], frequency="instant", confirmed_at=confirmed, status=status)
    run(settings, engine, UTC_START)
    write_post(settings.posts.dir, "news.md", title="News", date=UTC_START + timedelta(minutes=1))
    run(settings, engine, UTC_START + timedelta(minutes=2))
    assert list(delivered(engine)) == active


# --- exactly once ---------------------------------------------------------------------------------------------


def _race(config: str, store_url: str, now: datetime, start, results) -> None:
    from feedsvc.config import load_settings

    settings = load_settings(config)
    engine = open_engine(store_url)
    start.wait()
    summaries = run_due(settings, engine, Collection(settings, cache_path=Path(config).parent / f"cache-{now.second}").scan(), now)
    results.put(sum(summary.deliveries for summary in summaries))
    engine.dispose()


def test_two_schedulers_at_once_create_each_delivery_once(site, store_url):
    settings, engine = site()
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    confirmed = UTC_START - timedelta(days=10)
    daily = add_subscribers(engine, [f"d{n}@example.org" for n in range(150)], confirmed_at=confirmed)
    add_subscribers(engine, [f"g{n}@example.org" for n in range(50)], tags=["go"], confirmed_at=confirmed)
    run(settings, engine, UTC_START)
    write_post(posts, "news.md", title="News", date=UTC_START + timedelta(hours=1))
    write_post(posts, "go.md", title="Go", date=UTC_START + timedelta(hours=2), tags=["go"])

    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    now = UTC_START + timedelta(days=1)
    workers = [
        context.Process(target=_race, args=(str(settings.config_path), store_url, now + timedelta(seconds=n), start, results))
        for n in range(2)
    ]
    for worker in workers:
        worker.start()
    start.set()
    created = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert sum(created) == 200
    sent = delivered(engine)
    assert len(sent) == 200 and all(len(editions) == 1 for editions in sent.values())
    assert titles(settings, sent[daily[0]][0]) == ["Go", "News"]
    with engine.connect() as connection:
        assert len(connection.execute(select(editions.c.id)).all()) == 2
    # And once more, later, in this process: nothing new.
    assert run(settings, engine, now + timedelta(minutes=1)) == []


@pytest.mark.postgres
def test_queueing_a_period_on_postgresql_leaves_the_planner_knowing_what_is_queued(make_settings, postgres_url):
    """Stale statistics (few rows queued) made each wave's UPDATEs scan every queued row through the `state`
    index instead of looking their 8 rows up by id; the queueing refreshes them."""
    settings = make_settings(store={"url": postgres_url})
    engine = open_engine(postgres_url)
    try:
        write_post(settings.posts.dir, "old.md", title="Old", date=UTC_START - timedelta(days=5))
        add_subscribers(engine, [f"r{n}@example.org" for n in range(300)], confirmed_at=UTC_START - timedelta(days=10))
        run(settings, engine, UTC_START)
        write_post(settings.posts.dir, "news.md", title="News", date=UTC_START + timedelta(hours=1))
        run(settings, engine, UTC_START + timedelta(days=1))
        with engine.connect() as connection:
            queued = connection.execute(select(func.count()).where(deliveries.c.state == "queued")).scalar_one()
            known = connection.execute(
                text("SELECT reltuples, most_common_vals::text FROM pg_class JOIN pg_stats ON relname = tablename"
                     " AND relnamespace::regnamespace::text = schemaname"
                     " WHERE relname = 'deliveries' AND schemaname = current_schema() AND attname = 'state'")
            ).one()
    finally:
        engine.dispose()
    assert queued == 300
    assert known == (300, "{queued}")


def test_dry_run_stores_nothing(site):
    settings, engine = site()
    write_post(settings.posts.dir, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    add_subscribers(engine, ["inst@example.org"], frequency="instant", confirmed_at=UTC_START - timedelta(days=10))
    run(settings, engine, UTC_START)
    write_post(settings.posts.dir, "news.md", title="News", date=UTC_START + timedelta(minutes=1))
    summaries = run(settings, engine, UTC_START + timedelta(minutes=2), dry_run=True)
    assert [(titles(settings, s.post_ids), s.deliveries) for s in summaries] == [(["News"], 1)]
    assert delivered(engine) == {}
    with engine.connect() as connection:
        assert connection.execute(select(announcements.c.title)).scalars().all() == ["Old"]
    # The real run afterwards does it all.
    assert [s.deliveries for s in run(settings, engine, UTC_START + timedelta(minutes=3))] == [1]


# --- end to end -----------------------------------------------------------------------------------------------


def test_a_digest_reaches_every_subscriber_exactly_once_over_smtp(site, smtp_server):
    from feedsvc.mail.queue import drain
    from feedsvc.mail.transport import transport_from_settings

    settings, engine = site(mail={"from_address": "news@blog.example.org", "smtp_url": smtp_server.url, "connections": 3})
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Old", date=UTC_START - timedelta(days=5))
    addresses = [f"reader{n}@example.org" for n in range(40)]
    add_subscribers(engine, addresses, confirmed_at=UTC_START - timedelta(days=10))
    run(settings, engine, UTC_START)
    write_post(posts, "news.md", title="Kabar baru 🎉", date=UTC_START + timedelta(hours=1))
    write_post(posts, "more.md", title="More", date=UTC_START + timedelta(hours=2))
    summaries = run(settings, engine, UTC_START + timedelta(days=1))
    assert [s.deliveries for s in summaries] == [40]

    async def send() -> None:
        transport = transport_from_settings(settings)
        try:
            await drain(settings, engine, transport, worker_id="test", now=lambda: UTC_START + timedelta(days=1, minutes=1))
        finally:
            await transport.aclose()

    asyncio.run(send())
    for address in addresses:
        mails = smtp_server.messages_to(address)
        assert len(mails) == 1, address
        assert mails[0].message["To"].addresses[0].addr_spec == address
        body = mails[0].message.get_body(("plain",)).get_content()
        assert "Kabar baru 🎉" in body and "More" in body
    assert len(smtp_server.received) == 40
