"""The service's build child (a real spawned process): its results, which name the posts the service already holds
by a token and carry only the others, give the same scan as a build in this process."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from conftest import write_post

from feedsvc import feeds
from feedsvc.build_process import BuildProcess
from feedsvc.posts import Collection


def test_results_hold_the_posts_of_an_in_process_scan_and_reuse_the_unchanged_ones(make_settings) -> None:
    settings = make_settings(feeds={"items": 5})
    posts_dir = settings.posts.dir
    now = datetime.now(UTC)
    for number in range(12):
        write_post(
            posts_dir,
            f"post-{number:02d}.md",
            title=f"Post {number}",
            date=now - timedelta(days=number),
            tags=["even" if number % 2 == 0 else "odd"],
        )
    write_post(posts_dir, "later.md", title="Later", date=now + timedelta(days=3))  # scanned, not published
    builds = BuildProcess(settings, timeout=60)

    async def rebuilds() -> tuple[feeds.BuildResult, feeds.BuildResult, feeds.BuildResult]:
        try:
            first = await builds.build(now, None)
            edited = write_post(
                posts_dir, "post-03.md", title="Post 3, edited", date=now - timedelta(days=3), tags=["odd"]
            )
            second = await builds.build(now, {edited})
            added = write_post(
                posts_dir, "post-new.md", title="New", date=now - timedelta(hours=1), tags=["even"]
            )
            third = await builds.build(now, {added})
            return first, second, third
        finally:
            builds.kill()

    first, second, third = asyncio.run(rebuilds())

    expected = feeds.build(settings, Collection(settings), feeds.FeedWriter(settings), now)
    assert third.scan.posts == expected.scan.posts
    assert third.published == expected.published
    assert [post.title for post in third.published][:2] == ["Post 0", "New"]
    assert "Later" in [post.title for post in third.scan.posts]
    assert "Later" not in [post.title for post in third.published]
    # The posts no edit touched are the very objects the service received with the first result; the edited and
    # the new post came over whole.
    first_by_id = {post.id: post for post in first.scan.posts}
    for result in (second, third):
        for post in result.scan.posts:
            if post.title in ("Post 3, edited", "New"):
                assert post is not first_by_id.get(post.id)
            else:
                assert post is first_by_id[post.id]
    assert {post.id for post in third.published} <= {post.id for post in third.scan.posts}
    published_ids = {id(post) for post in third.scan.posts}
    assert all(id(post) in published_ids for post in third.published)
