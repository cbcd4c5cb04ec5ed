"""Site generator conventions read from real folders (no generator needed): which files are posts, their dates,
URLs, tags and summaries, shortcodes and Liquid; embeds; `feedsvc init --from`."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_generators import write_tree

from feedsvc import feeds
from feedsvc.config import Settings
from feedsvc.feeds.items import plain_text
from feedsvc.posts import Collection, Post, Scan
from feedsvc.posts.lint import lint
from feedsvc.posts.render import rendered
from tests.support import run_feedsvc

NOW = datetime.now(UTC)
HUGO_CONFIG = 'baseURL = "https://example.org/"\ntitle = "H"\ntimeZone = "Asia/Jakarta"\n[permalinks]\nposts = "/:year/:slug/"\n'
JEKYLL_CONFIG = "title: J\nurl: https://example.com\ntimezone: Europe/Berlin\nauthor: {name: Ana}\n"


def site_settings(make_settings, tmp_path: Path, files: dict[str, str], url: str = "https://example.org") -> Settings:
    settings = make_settings(site={"url": url}, posts={"dir": "site"})
    write_tree(tmp_path / "site", files)
    return settings


def by_title(scan: Scan) -> dict[str, Post]:
    return {post.title: post for post in scan.posts}


def messages(scan: Scan) -> list[str]:
    return [str(problem) for problem in scan.problems]


def test_hugo_bundles_sections_resources_and_dates(make_settings, tmp_path: Path) -> None:
    settings = site_settings(
        make_settings,
        tmp_path,
        {
            "hugo.toml": HUGO_CONFIG,
            "content/_index.md": "---\ntitle: Home\n---\n",
            "content/posts/_index.md": "---\ntitle: Section\n---\nList page.\n",
            "content/travel/my-trip/index.md": "---\ntitle: Trip\ndate: 2021-10-01 8:30:00+00:00\n---\nBody.\n",
            "content/travel/my-trip/day-two.md": "Resource of the bundle.\n",
            "content/posts/other/index.md": "---\ntitle: Other\ndate: 2022-01-01\ntags: C#\ncategories: [C, C++]\n---\nx\n",
            "content/posts/later.md": f"---\ntitle: Later\ndate: 2020-01-01\npublishDate: {(NOW + timedelta(days=2)).isoformat()}\n---\nx\n",
            "content/posts/gone.md": "---\ntitle: Gone\ndate: 2020-01-01\nexpiryDate: 2020-06-01\n---\nx\n",
            "content/posts/draft.md": "---\ntitle: Draft\ndate: 2020-01-01\ndraft: true\n---\nx\n",
            "content/posts/lastmod.md": "---\ntitle: Mod\ndate: 2020-01-01\nLastMod: 2020-02-02\nurl: /elsewhere/\n---\nx\n",
            "themes/t/content/posts/theme-post.md": "---\ntitle: Theme's\n---\nNot the site's.\n",
            "README.md": "Not content.\n",
        },
    )
    scan = Collection(settings).scan()
    posts = by_title(scan)
    assert set(posts) == {"Trip", "Other", "Later", "Gone", "Draft", "Mod"}
    assert posts["Trip"].url == "https://example.org/travel/my-trip/"  # the bundle's folder names it, not "index"
    assert posts["Trip"].date == datetime(2021, 10, 1, 8, 30, tzinfo=UTC)  # a one-digit hour, as Hugo reads it
    assert posts["Other"].date == datetime(2022, 1, 1, tzinfo=ZoneInfo("Asia/Jakarta"))  # the site's timeZone
    assert posts["Other"].tags == ("C#", "C", "C++")
    assert (posts["Mod"].url, posts["Mod"].updated) == (
        "https://example.org/elsewhere/",
        datetime(2020, 2, 2, tzinfo=ZoneInfo("Asia/Jakarta")),
    )
    assert {post.title for post in scan.published(NOW)} == {"Trip", "Other", "Mod"}
    assert scan.next_publication(datetime(2020, 5, 1, tzinfo=UTC)) == datetime(2020, 6, 1, tzinfo=ZoneInfo("Asia/Jakarta"))
    assert {post.title for post in scan.published(NOW + timedelta(days=3))} == {"Trip", "Other", "Mod", "Later"}
    assert scan.problems == []


def test_two_posts_may_share_a_slug_but_not_a_url(make_settings, tmp_path: Path) -> None:
    settings = site_settings(
        make_settings,
        tmp_path,
        {
            "hugo.toml": HUGO_CONFIG,
            "content/posts/a.md": "---\ntitle: A\ndate: 2020-01-01\nslug: twin\n---\nx\n",
            "content/posts/b.md": "---\ntitle: B\ndate: 2021-01-01\nslug: twin\n---\nx\n",
            "content/posts/c.md": "---\ntitle: C\ndate: 2021-05-05\nurl: /2021/twin/\n---\nx\n",
        },
    )
    scan = Collection(settings).scan()
    assert {post.url for post in scan.posts} == {"https://example.org/2020/twin/", "https://example.org/2021/twin/"}
    assert messages(scan) == [
        (
            "site/content/posts/c.md: duplicate URL 'https://example.org/2021/twin/': "
            "site/content/posts/b.md already uses it; skipped"
        )
    ]


def test_hugo_shortcodes_render_or_are_removed_with_a_warning(make_settings, tmp_path: Path) -> None:
    body = (
        'A {{< figure src="/img/a.png" alt="An A" caption="Caption" >}}\n\n'
        "{{< highlight python >}}\nprint(1)\n{{< /highlight >}}\n\n"
        '{{< youtube id="abc123" >}} {{< vimeo 42 >}} {{< gist jo 99 >}} {{< x user="jo" id="7" >}}\n\n'
        'See [b]({{< relref "b.md" >}}) and {{< param colour >}}.\n\n'
        "{{% notice warning %}}Kept text{{% /notice %}} {{< unknown-thing >}} {{</* figure */>}}\n"
    )
    settings = site_settings(
        make_settings,
        tmp_path,
        {
            "hugo.toml": HUGO_CONFIG + "[params]\ncolour = 'blue'\n",
            "content/posts/a.md": f"---\ntitle: A\ndate: 2020-01-01\n---\n{body}",
            "content/posts/b.md": "---\ntitle: B\ndate: 2020-01-02\n---\nb\n",
        },
    )
    scan = Collection(settings).scan()
    html = rendered(by_title(scan)["A"]).content_html
    assert '<figure><img src="https://example.org/img/a.png" alt="An A"><figcaption><p>Caption</p></figcaption></figure>' in html
    assert "<pre><code>print(1)\n</code></pre>" in html
    assert '<a href="https://www.youtube.com/watch?v=abc123"><img src="https://i.ytimg.com/vi/abc123/hqdefault.jpg"' in html
    assert '<a href="https://vimeo.com/42">' in html and '<a href="https://gist.github.com/jo/99">' in html
    assert '<a href="https://x.com/jo/status/7">' in html
    assert '<a href="https://example.org/2020/b/">b</a> and blue.' in html
    assert "Kept text" in html and "{{" not in html.replace("{{&lt; figure &gt;}}", "")
    assert "{{&lt; figure &gt;}}" in html  # a shortcode written to be shown stays text
    assert messages(scan) == [
        "site/content/posts/a.md:15: unknown shortcode {{< notice >}}: removed (its inner text is kept)",
        "site/content/posts/a.md:15: unknown shortcode {{< unknown-thing >}}: removed",
    ]
    assert [str(problem) for problem in lint(settings, scan)] == messages(scan)  # what `feedsvc check` lists


def test_a_generator_s_posts_are_not_kept_rendered_on_disk(make_settings, tmp_path: Path) -> None:
    # A's HTML holds B's URL (relref): it depends on a file its own version does not cover, so a new process
    # renders it again rather than take it from the store of rendered posts.
    files = {
        "hugo.toml": HUGO_CONFIG,
        "content/posts/a.md": '---\ntitle: A\ndate: 2020-01-01\n---\nSee [b]({{< relref "b.md" >}}).\n',
        "content/posts/b.md": "---\ntitle: B\ndate: 2020-01-02\nslug: bee\n---\nb\n",
    }
    settings = site_settings(make_settings, tmp_path, files)
    feeds.build(settings)
    assert "https://example.org/2020/bee/" in (settings.feeds.output_dir / feeds.RSS_FILE).read_text()
    store = settings.store.dir / "rendered-posts.jsonl"
    assert len(store.read_text().splitlines()) == 1  # its header alone


def test_jekyll_posts_dates_urls_and_liquid(make_settings, tmp_path: Path) -> None:
    settings = site_settings(
        make_settings,
        tmp_path,
        {
            "_config.yml": JEKYLL_CONFIG + "permalink: pretty\nexcerpt_separator: <!--cut-->\n",
            "_posts/2016-03-02-old-post.md": "---\nlayout: post\n---\nFirst part.<!--cut-->Rest. {{ site.title }} {{ page.layout }}\n",
            "_posts/2017-01-05-with-date.md": (
                "---\ntitle: Dated\ndate: 2017-01-05 8:30:00 +0200\ncategories: Big Tech\ntags: a b\n---\n"
                "{% raw %}{{ kept }}{% endraw %} {% post_url 2016-03-02-old-post %} {% include missing.html %}\n"
            ),
            "_posts/2018-01-01-hidden.md": "---\ntitle: Hidden\npublished: false\n---\nx\n",
            "_posts/no-date-in-name.md": "---\ntitle: Ignored\n---\nx\n",
            "_drafts/draft.md": "---\ntitle: Draft\n---\nx\n",
            "blog/_posts/2019-02-03-in-blog.md": "---\ncategory: Single One\n---\n{% if x %}y{% endif %}\n",
            "about.md": "---\ntitle: About\n---\nA page.\n",
        },
        url="https://example.com",
    )
    scan = Collection(settings).scan()
    posts = by_title(scan)
    assert set(posts) == {"Old Post", "Dated", "Hidden", "In Blog"}
    old = posts["Old Post"]
    # The file name's date, at midnight in the site's time zone, not the file's modification time.
    assert old.date == datetime(2016, 3, 2, tzinfo=ZoneInfo("Europe/Berlin"))
    assert old.url == "https://example.com/2016/03/02/old-post/"
    assert (old.author, rendered(old).summary_html) == ("Ana", "<p>First part.</p>\n")
    assert "Rest. J post" in rendered(old).content_html
    dated = posts["Dated"]
    assert dated.date == datetime(2017, 1, 5, 6, 30, tzinfo=UTC)
    assert dated.url == "https://example.com/big/tech/2017/01/05/with-date/"
    assert dated.tags == ("Big", "Tech", "a", "b")
    assert rendered(dated).content_html == "<p>{{ kept }} https://example.com/2016/03/02/old-post/</p>\n"
    assert posts["In Blog"].url == "https://example.com/blog/single%20one/2019/02/03/in-blog/"
    assert {post.title for post in scan.published(NOW)} == {"Old Post", "Dated", "In Blog"}
    assert messages(scan) == [
        "site/_posts/2017-01-05-with-date.md:7: {% include missing.html %}: no such file in _includes; removed",
        "site/blog/_posts/2019-02-03-in-blog.md:4: unknown Liquid tag {% if %}: removed",
        "site/blog/_posts/2019-02-03-in-blog.md:4: unknown Liquid tag {% endif %}: removed",
    ]


def test_embeds_become_links_and_protocol_relative_links_get_https(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    (settings.posts.dir / "embeds.md").write_text(
        "---\ntitle: Embeds\ndate: 2020-01-01\n---\n"
        '<iframe src="https://www.youtube.com/embed/xyz"></iframe>\n\n'
        '<video src="/media/clip.mp4" poster="/media/clip.jpg" controls></video>\n\n'
        '<audio><source src="//cdn.example.net/a.mp3"></audio>\n\n'
        "[cdn](//cdn.example.net/x.png)\n"
    )
    html = rendered(Collection(settings).scan().posts[0]).content_html
    assert '<a href="https://www.youtube.com/watch?v=xyz"><img src="https://i.ytimg.com/vi/xyz/hqdefault.jpg"' in html
    assert '<a href="https://blog.example.org/media/clip.mp4"><img src="https://blog.example.org/media/clip.jpg" alt="Video"></a>' in html
    assert '<a href="https://cdn.example.net/a.mp3">Audio: //cdn.example.net/a.mp3</a>' in html
    assert '<a href="https://cdn.example.net/x.png">cdn</a>' in html


def test_distinct_tags_get_distinct_percent_encoded_feeds(make_settings) -> None:
    settings = make_settings()
    (settings.posts.dir / "tags.md").write_text("---\ntitle: T\ndate: 2020-01-01\ntags: [C, 'C#', C++, Ελληνικά]\n---\nx\n")
    feeds.build(settings)
    tags = settings.feeds.output_dir / "tags"
    assert sorted(path.name for path in tags.iterdir()) == ["c", "c-plus-plus", "c-sharp", "ελληνικα"]
    document = json.loads((tags / "ελληνικα" / feeds.JSON_FILE).read_text())
    assert document["feed_url"] == "https://blog.example.org/tags/%CE%B5%CE%BB%CE%BB%CE%B7%CE%BD%CE%B9%CE%BA%CE%B1/feed.json"


def test_a_summary_keeps_the_spacing_of_its_text() -> None:
    assert plain_text('<p>Read <em>this</em>, <a href="x">here</a>.</p><p>Next</p>') == "Read this, here. Next"


def test_init_from_a_hugo_site_writes_its_settings(tmp_path: Path) -> None:
    site = write_tree(
        tmp_path / "blog",
        {
            "hugo.toml": HUGO_CONFIG.replace('title = "H"', 'title = "Hugo blog"\nlanguageCode = "id-ID"'),
            "content/posts/a.md": "---\ntitle: A\ndate: 2020-01-01\n---\nx\n",
        },
    )
    result = run_feedsvc("init", "feedsvc", "--from", str(site), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Found a hugo site" in result.stdout
    config = tomllib.loads((tmp_path / "feedsvc" / "feedsvc.toml").read_text())
    assert config["site"] | config["posts"] == config["site"] | {
        "url": "https://example.org",
        "title": "Hugo blog",
        "language": "id",
        "timezone": "Asia/Jakarta",
        **config["posts"],
        "dir": "../blog",
        "convention": "hugo",
    }
    assert not (tmp_path / "feedsvc" / "posts").exists()
    refused = run_feedsvc("init", "other", "--from", str(tmp_path / "feedsvc"), cwd=tmp_path, timeout=60)
    assert refused.returncode == 1
    assert "is not a site folder feedsvc knows (Hugo, Jekyll, Pelican, Eleventy)" in refused.stderr


@pytest.mark.parametrize(
    ("files", "note"),
    [
        ({"pelicanconf.py": "SITEURL = 'https://example.net'\nPLUGINS = ['section_urls', 'readtime']\n"}, "section_urls, readtime"),
        ({"_config.yml": "url: https://example.com\nplugins: [jekyll-feed, jekyll-archives]\n", "_posts/.keep": ""}, "jekyll-archives"),
        ({"_config.yml": "url: https://example.com\nplugins: [jekyll-feed, jekyll-seo-tag]\n", "_posts/.keep": ""}, None),
    ],
    ids=["pelican", "jekyll", "jekyll-harmless"],
)
def test_init_from_names_the_plugins_feedsvc_does_not_run(tmp_path: Path, files: dict[str, str], note: str | None) -> None:
    site = write_tree(tmp_path / "blog", files)
    result = run_feedsvc("init", "feedsvc", "--from", str(site), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stdout.split())
    if note is None:
        assert "plugins feedsvc does not" not in said
    else:
        assert f"note: the site runs plugins feedsvc does not ({note})" in said


def test_includes_and_links_never_read_outside_the_site(make_settings, tmp_path: Path) -> None:
    (tmp_path / "secret.html").write_text("SECRET")
    settings = site_settings(
        make_settings,
        tmp_path,
        {
            "_config.yml": JEKYLL_CONFIG,
            "_posts/2020-01-01-sneaky.md": (
                "---\ntitle: Sneaky\n---\n{% include ../../secret.html %} {% include ../../../secret.html %}\n"
            ),
        },
    )
    scan = Collection(settings).scan()
    assert "SECRET" not in rendered(scan.posts[0]).content_html
    assert [problem.message for problem in scan.problems] == [
        "{% include ../../secret.html %}: no such file in _includes; removed",
        "{% include ../../../secret.html %}: no such file in _includes; removed",
    ]
