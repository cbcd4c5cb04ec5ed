# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
"""The posts page's scheduled posts through a real server: when each goes out and the edition of each cadence
it joins, in the site's timezone, from the same calendars the scheduler fires at."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from conftest import write_post
from test_admin import signed_in
from test_web import serve  # noqa: F401  (the real-server fixture)

JAKARTA = timezone(timedelta(hours=7))


def test_scheduled_posts_show_when_they_go_out_and_the_editions_they_join(serve):
    served = serve(site={"timezone": "Asia/Jakarta"}, digest={"weekly_day": "mon", "monthly_day": 1})
    folder = served.settings.posts.dir
    # A Tuesday at 10:00 in Jakarta, written in UTC: shown in the site's time.
    write_post(folder, "later.md", title="Coming soon", date=datetime(2030, 1, 15, 3, 0, tzinfo=UTC),
               tags=["python"])
    # Exactly at the daily digest's time: that digest has closed; it joins the next day's.
    write_post(folder, "at-eight.md", title="On the hour", date=datetime(2030, 1, 31, 8, 0, tzinfo=JAKARTA))
    with signed_in(served) as client:
        page = client.get("/admin/posts").text
    section = page[page.index("Scheduled (2)"):page.index("Drafts (")]
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", section, re.S)
    assert len(rows) == 2 and "Coming soon" in rows[0] and "On the hour" in rows[1]
    assert "Asia/Jakarta" in section
    first = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rows[0]))
    assert "2030-01-15 10:00" in first
    assert "instant: Tue 2030-01-15 10:00" in first
    assert "daily: Wed 2030-01-16 08:00" in first
    assert "weekly: Mon 2030-01-21 08:00" in first
    assert "monthly: Fri 2030-02-01 08:00" in first
    assert 'datetime="2030-01-16T08:00:00+07:00"' in rows[0]
    second = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rows[1]))
    assert "daily: Fri 2030-02-01 08:00" in second and "monthly: Fri 2030-02-01 08:00" in second
    assert "weekly: Mon 2030-02-04 08:00" in second
